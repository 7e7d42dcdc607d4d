"""The workflow through the real snakemake CLI, on the tiny config, in a temporary folder."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import (
    copy_workflow,
    fork,
    job_counts,
    snakemake,
    stage_jobs,
    tiny_config,
    trainings,
)

from widthlab.model_jobs import job_of, split_into_jobs

pytestmark = pytest.mark.integration

# the tiny config's models: main's two widths and the clones stage's early-stopped variant
TINY_MODELS = [
    "digits-mlp-w16-d1-nall-wd0-s0",
    "digits-mlp-w32-d1-nall-wd0-s0",
    "digits-mlp-w16-d1-nall-wd0-s0-vearly",
]


def provenance(path: Path) -> dict:
    return json.loads(Path(f"{path}.prov.json").read_text())


def test_every_stage_wrote_its_artifacts(tiny_run):
    mid = "digits-mlp-w32-d1-nall-wd0-s0"
    results = tiny_run / "results"
    for path in [
        "data/digits.npz",
        f"models/{mid}/model.pt",
        f"models/{mid}/history.parquet",
        f"models/{mid}/metrics.json",
        f"activations/{mid}/layers.npz",
        f"activations/{mid}/predictions.parquet",
        "summary/training.parquet",
        "figures/training/accuracy_vs_width.png",
    ]:
        assert (results / path).stat().st_size > 0, path
    assert not (results / f"models/{mid}/checkpoint.pt").exists()
    predictions = pd.read_parquet(results / f"activations/{mid}/predictions.parquet")
    assert len(predictions) == 120
    training = pd.read_parquet(results / "summary/training.parquet")
    assert sorted(training["model"]) == sorted(TINY_MODELS)


def test_main_grids_two_widths_train_as_one_pack(tiny_run, tmp_path):
    results = tiny_run / "results"
    sizes = {
        m: json.loads((results / f"models/{m}/metrics.json").read_text())["pack_size"]
        for m in TINY_MODELS
    }
    assert sizes == dict(zip(TINY_MODELS, [2, 2, 1], strict=True))  # early variant: own recipe
    (pack_log,) = (results / "logs/train").glob("pack2-*.log")
    log = pack_log.read_text()
    assert all(f"{m}: epoch 4/4" in log for m in TINY_MODELS[:2])
    rule = provenance(results / f"models/{TINY_MODELS[0]}/model.pt")["rule"]
    assert rule == f"train_{pack_log.stem.replace('-', '_')}"
    config = tiny_config()
    config["train_packs"] = {"max_models": 1}
    counts = job_counts(snakemake(copy_workflow(tmp_path, config), "-n").stdout)
    assert counts["train"] == 3 and not any(rule.startswith("train_pack") for rule in counts)


def test_every_rule_left_a_log_and_a_benchmark(tiny_run):
    for kind in ("logs", "benchmarks"):
        rules = {p.name for p in (tiny_run / "results" / kind).iterdir()}
        assert {"dataset", "train", "activations", "training_summary"} <= rules, kind


def test_a_complete_run_leaves_nothing_to_do(tiny_run):
    result = snakemake(tiny_run, "-n")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_adding_a_width_retrains_only_the_pack_it_joins(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    config = tiny_config()
    config["grids"]["main"]["width"].append(64)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(workdir, "-n").stdout)
    # with mix_widths (tiny.yaml) the launch-bound w64 joins main's pack, which trains again
    assert trainings(counts) == 3 and "train" not in counts and "train_pack3" in " ".join(counts)
    mains = [m for m in TINY_MODELS if "early" not in m] + ["digits-mlp-w64-d1-nall-wd0-s0"]
    assert stage_jobs(counts, "activations") == len({job_of(m, 4) for m in mains})
    assert "dataset" not in counts
    assert counts["training_summary"] == 1


def test_widthlab_rerun_reruns_one_stage(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    result = widthlab_cli("rerun", "activations", "--", "-n", cwd=workdir)
    assert result.returncode == 0, result.stderr
    shards = split_into_jobs(TINY_MODELS, 4)
    assert job_counts(result.stdout) == {f"activations_{k}": 1 for k in shards}
    assert widthlab_cli("rerun", "activation", cwd=workdir).returncode == 2  # no such stage


def widthlab_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "widthlab.cli", *args], cwd=cwd, capture_output=True, text=True
    )


def test_provenance_chain_reaches_the_raw_data(tiny_run):
    mid = "digits-mlp-w16-d1-nall-wd0-s0"
    result = widthlab_cli("provenance", f"results/activations/{mid}/layers.npz", cwd=tiny_run)
    assert result.returncode == 0, result.stderr
    for rule in ("activations", "train", "dataset"):
        assert rule in result.stdout
    assert "digits.csv" in result.stdout  # the raw file shipped inside scikit-learn


def test_audit_names_the_artifact_whose_input_changed(tiny_run, tmp_path):
    assert widthlab_cli("audit", "results", cwd=tiny_run).returncode == 0
    workdir = fork(tiny_run, tmp_path)
    history = workdir / "results/models/digits-mlp-w16-d1-nall-wd0-s0/history.parquet"
    history.write_bytes(history.read_bytes() + b"\0")
    result = widthlab_cli("audit", "results", cwd=workdir)
    assert result.returncode != 0
    assert "summary/training.parquet" in result.stdout + result.stderr


def test_audit_compares_the_workflow_under_the_studys_own_config_file(tiny_run, tmp_path):
    """A study run with its own config file (found by its results folder) audits clean without
    naming it, and an edit to that file is reported; the workflow under another study's config
    does not make the run's files."""
    workdir = fork(tiny_run, tmp_path)
    study = yaml.safe_load((workdir / "config.yaml").read_text())
    (workdir / "configs").mkdir()
    (workdir / "configs/study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    other = {**study, "results": "other_results"}  # the default file is another study
    (workdir / "config.yaml").write_text(yaml.safe_dump(other, sort_keys=False))

    result = widthlab_cli("audit", "results", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the workflow agrees under configs/study.yaml" in result.stdout

    elsewhere = widthlab_cli("audit", "results", "--", "--configfile", "config.yaml", cwd=workdir)
    assert elsewhere.returncode != 0
    assert "no rule of the current workflow makes it" in elsewhere.stdout

    study["analyses"]["units"] = {**study["analyses"].get("units", {}), "threshold": 0.85}
    (workdir / "configs/study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    edited = widthlab_cli("audit", "results", cwd=workdir)
    assert edited.returncode != 0
    assert "rule units_summary (params changed)" in edited.stdout


def test_audit_names_why_the_workflow_could_not_be_compared(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["analyses"]["similarity"] = {"pairs": "nonsense"}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = widthlab_cli("audit", "results", cwd=workdir)
    assert result.returncode != 0
    line = next(x for x in result.stdout.splitlines() if "could not compare" in x)
    assert "under config.yaml" in line and "analyses.similarity.pairs" in line, line


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda c: c.update(epochs=3), "epochs"),
        (lambda c: c["train"].update(lr="fast"), "train.lr"),
        (lambda c: c["grids"]["main"].update(width=[0]), "grids.main.width[0]"),
        (lambda c: c["grids"]["main"].update(depth=[]), "grids.main.depth"),
        (
            lambda c: c["grids"].update(early={**c["grids"]["main"], "train": {"max_epochs": 1}}),
            "grids.main and grids.early both hold model",
        ),
    ],
)
def test_invalid_config_stops_before_anything_runs(tmp_path, change, key):
    config = tiny_config()
    change(config)
    workdir = copy_workflow(tmp_path, config)
    result = snakemake(workdir, check=False)
    assert result.returncode != 0
    assert key in result.stdout + result.stderr
    assert not (workdir / "results").exists()
