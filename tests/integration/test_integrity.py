"""Integrity through the CLI on the tiny config: reruns of every stage, corrupted, misplaced
and re-saved artifacts, mixed code and config (issue 16)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import copy_workflow, fork, job_counts, snakemake, tiny_config

pytestmark = pytest.mark.integration

# stage → the rules `widthlab rerun STAGE` must run (the tiny config's rule names)
STAGES = {
    "activations": {"activations_0", "activations_1"},
    "similarity": {
        "similarity_models_0",
        "similarity_models_1",
        "similarity_cross",
        "similarity_summary",
    },
    "units": {"units_model_0", "units_model_1", "units_summary"},
    "clones": {"clones_model_0", "clones_model_1", "clones_summary"},
    "transfer": {
        "transfer_model_0",
        "transfer_model_1",
        "transfer_atlas_0",
        "transfer_atlas_1",
        "transfer_summary",
    },
    "bottleneck": {"bottleneck_study", "bottleneck_linear", "bottleneck_summary"},
    "report": {"headline", "joint_summary", "joint_prune_clone"},
    "training": {"training_summary"},
}


def widthlab_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "widthlab.cli", *args], cwd=cwd, capture_output=True, text=True
    )


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_rerun_plans_exactly_the_jobs_of_each_stage(tiny_run, stage):
    result = widthlab_cli("rerun", stage, "--", "-n", cwd=tiny_run)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BUG" not in result.stdout + result.stderr
    assert set(job_counts(result.stdout)) == STAGES[stage]


def test_rerun_of_two_stages_runs_them_and_nothing_else(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    table = workdir / "results/summary/units_headline.parquet"
    before = table.stat().st_mtime_ns
    result = widthlab_cli("rerun", "activations", "units", "--", "--cores", "2", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert table.stat().st_mtime_ns > before
    assert "now run again with the next plain `snakemake`" in result.stdout
    counts = job_counts(snakemake(workdir, "-n").stdout)
    assert "activations_0" not in counts and "units_summary" not in counts
    assert "headline" in counts  # downstream of units: out of date, as the message says


def _dump(config) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def _edit(change):
    """A config.yaml text: the tiny config changed by ``change`` (which edits it in place)."""

    def edited(config):
        change(config)
        return _dump(config)

    return edited


def _grid(name, **values):
    return _edit(lambda c: c["grids"][name].update(values))


BAD_CONFIGS = {
    "grid train lr fast": (
        _grid("clones_early", train={"lr": "fast"}),
        "invalid configuration: config key grids.clones_early.train.lr: 'fast' is not of type "
        "'number'",
    ),
    "grid train lr negative": (
        _grid("clones_early", train={"lr": -5}),
        "invalid configuration: config key grids.clones_early.train.lr: -5 is less than or equal "
        "to the minimum of 0",
    ),
    "lr inf": (
        _edit(lambda c: c["train"].update(lr=float("inf"))),
        "invalid configuration: config key train.lr: inf is not a finite number",
    ),
    "weight decay nan": (
        _grid("main", weight_decay=[float("nan")]),
        "invalid configuration: config key grids.main.weight_decay[0]: nan is not a finite number",
    ),
    "duplicate key": (
        lambda c: _dump(c).replace("  main:\n", "  main:\n    width: [8]\n", 1),
        "config.yaml: config key grids.main.width appears twice (lines 12 and 16)",
    ),
    "train size": (
        _grid("main", train_size=[5000]),
        "invalid configuration: config key grids.main.train_size: 5000 is more than the 1437 "
        "training examples of digits",
    ),
    "huge width": (
        _grid("main", width=[10**9]),
        "invalid configuration: config key grids.main: model digits-mlp-w1000000000-d1",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_stops_before_any_job_with_one_line_naming_the_key(tmp_path, case):
    edit, message = BAD_CONFIGS[case]
    workdir = copy_workflow(tmp_path)
    text = edit(tiny_config())
    assert text != _dump(tiny_config()), "the edit did not apply"
    (workdir / "config.yaml").write_text(text)
    result = snakemake(workdir, check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in out, out
    assert "Traceback" not in out
    assert not (workdir / "results").exists()


# ------------------------------------------------------------- corrupted and misplaced artifacts

W16 = "digits-mlp-w16-d1-nall-wd0-s0"
W32 = "digits-mlp-w32-d1-nall-wd0-s0"


def flip_a_data_bit(path: Path) -> None:
    """One bit just before a Parquet file's footer (inside its last column page)."""
    data = bytearray(path.read_bytes())
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    data[footer - 3] ^= 1
    path.write_bytes(bytes(data))


def test_a_flipped_bit_in_the_headline_is_refused_and_rebuilt_by_the_named_command(
    tiny_run, tmp_path
):
    workdir = fork(tiny_run, tmp_path)
    headline = "results/summary/headline.parquet"
    flip_a_data_bit(workdir / headline)
    summary = widthlab_cli("summary", cwd=workdir)
    assert summary.returncode == 2
    assert f"{headline}: content changed since it was written" in summary.stderr
    audit = widthlab_cli("audit", cwd=workdir)
    assert audit.returncode == 1 and f"{headline}: content changed" in audit.stdout
    snakemake(workdir, "--force", headline)  # the command the message names
    assert widthlab_cli("summary", cwd=workdir).returncode == 0
    assert widthlab_cli("audit", cwd=workdir).returncode == 0


def test_a_flipped_bit_in_an_intermediate_stops_its_consumers(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    predictions = f"results/activations/{W16}/predictions.parquet"
    flip_a_data_bit(workdir / predictions)
    failed = widthlab_cli("rerun", "similarity", "--", "--cores", "2", cwd=workdir)
    assert failed.returncode != 0
    out = failed.stdout + failed.stderr
    assert f"{predictions}: content changed since it was written" in out
    assert f"snakemake --force {predictions}" in out
    snakemake(workdir, "--force", predictions)
    snakemake(workdir)
    audit = widthlab_cli("audit", cwd=workdir)
    assert audit.returncode == 0, audit.stdout


def test_a_corrupt_or_misplaced_model_is_refused(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    models = workdir / "results/models"
    for name in ("model.pt", "model.pt.prov.json"):  # w32's file and sidecar under w16
        (models / W16 / name).write_bytes((models / W32 / name).read_bytes())
    result = widthlab_cli("rerun", "activations", "--", "--cores", "2", cwd=workdir)
    assert result.returncode != 0
    assert f"holds model {W32}, not the {W16} its folder names" in result.stdout + result.stderr
    shutil.copy2(tiny_run / f"results/models/{W16}/model.pt.prov.json", models / W16)
    data = bytearray((models / W16 / "model.pt").read_bytes())
    data[len(data) // 2] ^= 0x10
    (models / W16 / "model.pt").write_bytes(bytes(data))
    result = widthlab_cli("rerun", "activations", "--", "--cores", "2", cwd=workdir)
    assert result.returncode != 0
    assert f"{W16}/model.pt: content changed since it was written" in result.stdout + result.stderr


def test_a_table_re_saved_without_provenance_is_reported(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    table = workdir / "results/summary/units_headline.parquet"
    pd.read_parquet(table).assign(value=42).to_parquet(table)
    audit = widthlab_cli("audit", cwd=workdir)
    assert audit.returncode == 1
    assert "results/summary/units_headline.parquet: carries no provenance record" in audit.stdout


def test_a_config_edit_is_reported_until_rerun_then_as_mixed_configs(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    config = tiny_config()
    config["analyses"]["units"] = {"threshold": 0.85}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    audit = widthlab_cli("audit", cwd=workdir)
    assert audit.returncode == 1
    assert "rule units_summary (params changed): 12 output(s) out of date" in audit.stdout
    snakemake(workdir)
    audit = widthlab_cli("audit", cwd=workdir)
    assert audit.returncode == 1 and "artifacts from 2 configs: " in audit.stdout
    assert widthlab_cli("audit", "--allow-mixed", cwd=workdir).returncode == 0


def test_a_deleted_metrics_json_is_named_with_the_command_that_rebuilds_it(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    metrics = f"results/models/{W32}/metrics.json"
    (workdir / metrics).unlink()
    assert "Nothing to be done" in snakemake(workdir, "-n").stdout  # Snakemake does not notice
    audit = widthlab_cli("audit", cwd=workdir)
    assert audit.returncode == 1
    assert f"{metrics}: missing, but its sidecar" in audit.stdout
    assert f"`snakemake --force {metrics}`" in audit.stdout
    snakemake(workdir, "--force", metrics)
    assert (workdir / metrics).exists()
