"""The transfer stage through the snakemake CLI on the tiny config (2 models, one seed)."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import fork, job_counts, snakemake, tiny_config

from widthlab.grid import parse_model_id
from widthlab.headline import HEADLINE_COLUMNS, VERDICTS
from widthlab.io import read_parquet_metadata
from widthlab.transfer.settings import TABLE_COLUMNS

pytestmark = pytest.mark.integration

MODELS = ["digits-mlp-w16-d1-nall-wd0-s0", "digits-mlp-w32-d1-nall-wd0-s0"]
FIGURES = ["target_vs_width", "gap_vs_width", "target_vs_source", "information", "atlas"]
SUMMARIES = ["", "_gaps", "_by_width", "_information", "_atlas", "_headline"]


def test_the_stage_wrote_tidy_tables_and_figures(tiny_run):
    results = tiny_run / "results"
    for mid in MODELS:
        table = pd.read_parquet(results / "transfer" / f"{mid}.parquet")
        columns = list(parse_model_id(mid).columns())
        assert list(table.columns) == columns + TABLE_COLUMNS
        assert set(table["backbone"]) == {"trained", "random"}
        assert set(table["analysis"]) == {"source", "finetune", "information"}
        fine = table[(table["analysis"] == "finetune") & (table["measure"] == "target_acc")]
        assert sorted(set(fine["shots"])) == ["10", "all"]
        assert fine["value"].between(0, 1).all()
        assert (
            fine.groupby(["backbone", "shots"]).size()
            == pd.Series(
                {
                    ("random", "10"): 2,
                    ("random", "all"): 1,
                    ("trained", "10"): 2,
                    ("trained", "all"): 1,
                }
            )
        ).all()
    for suffix in SUMMARIES:
        assert (results / "summary" / f"transfer{suffix}.parquet").stat().st_size > 0
    for name in FIGURES:
        assert (results / "figures" / "transfer" / f"{name}.png").stat().st_size > 0
    for rule in ("transfer_model", "transfer_atlas", "transfer_summary"):
        assert any((results / "benchmarks" / rule).iterdir()), rule
        assert any((results / "logs" / rule).iterdir()), rule


def test_trained_backbones_beat_chance_and_random_ones_are_at_chance_on_the_source(tiny_run):
    summary = pd.read_parquet(tiny_run / "results" / "summary" / "transfer.parquet")
    trained = summary[summary["backbone"] == "trained"]
    random = summary[summary["backbone"] == "random"]
    assert (trained["source_acc"] > 0.5).all()  # 10 digit classes, 4 epochs
    assert (random["source_acc"] < 0.3).all()
    assert (summary["target_acc"] > 0.5).all()  # 5 target classes: chance is 0.2


def test_every_target_test_example_lies_in_exactly_one_atlas_cell(tiny_run):
    atlas = pd.read_parquet(tiny_run / "results" / "summary" / "transfer_atlas.parquet")
    assert sorted(set(atlas["model"])) == MODELS  # the atlas seeds default to [0]
    assert set(atlas["images"]) == {"target"}
    with np.load(tiny_run / "results" / "data" / "digits-c56789.npz") as target:
        n_test = len(target["y_test"])
    assert set(atlas["backbone"]) == {"trained", "random"}  # the random control
    for _, cells in atlas.groupby(["model", "backbone"]):
        assert cells["count"].sum() == n_test
        assert not cells.duplicated(["cell_x", "cell_y"]).any()
        assert cells["purity"].between(0, 1).all()
        assert all(len(image) == 64 for image in cells["image"])


def test_outputs_carry_provenance(tiny_run):
    mid = MODELS[0]
    record = json.loads(
        read_parquet_metadata(tiny_run / "results" / "transfer" / f"{mid}.parquet")[
            "widthlab.provenance"
        ]
    )
    assert record["rule"].startswith("transfer_model_")  # one of the per-model jobs
    atlas = json.loads(
        read_parquet_metadata(tiny_run / "results" / "transfer_atlas" / f"{mid}.parquet")[
            "widthlab.provenance"
        ]
    )
    assert atlas["rule"].startswith("transfer_atlas_")
    assert any(entry["path"].endswith(f"{mid}/model.pt") for entry in atlas["inputs"])
    inputs = {entry["path"] for entry in record["inputs"]}
    assert any(path.endswith("digits-c56789.npz") for path in inputs)
    assert any(path.endswith(f"{mid}/model.pt") for path in inputs)
    summary = json.loads(
        read_parquet_metadata(tiny_run / "results" / "summary" / "transfer_headline.parquet")[
            "widthlab.provenance"
        ]
    )
    assert summary["rule"] == "transfer_summary"


def test_the_headline_follows_the_contract(tiny_run):
    headline = pd.read_parquet(tiny_run / "results" / "summary" / "transfer_headline.parquet")
    assert list(headline.columns) == HEADLINE_COLUMNS
    assert set(headline["holds"]) <= set(VERDICTS)
    assert (headline["paper"] == "Gilboa & Gur-Ari 2019").all()
    assert len(headline) >= 8
    assert headline["detail"].str.len().gt(10).all()
    # one seed measures the slope rows but decides nothing, and prints no interval beside them
    measured = headline[headline["n"] > 0]
    assert len(measured) >= 5 and np.isfinite(measured["value"]).all()
    assert (measured["holds"] == "n/a").all() and measured["ci_low"].isna().all()
    assert measured["reason"].str.contains("too few seeds").all()
    # the tiny config has no grid stopped at a declared source accuracy: those rows say so
    unmeasured = headline[headline["n"] == 0]
    assert len(unmeasured) >= 1 and unmeasured["reason"].str.contains("declared source").all()


def test_a_source_atlas_reads_the_probe_activations(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    config = tiny_config()
    config["analyses"]["transfer"]["atlas"] = {"images": "source", "grid": 4}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "--until", "transfer_summary")
    atlas = pd.read_parquet(workdir / "results" / "summary" / "transfer_atlas.parquet")
    assert set(atlas["images"]) == {"source"} and atlas["grid"].eq(4).all()
    assert (atlas.groupby(["model", "backbone"])["count"].sum() == 120).all()  # the probe set


def test_an_atlas_setting_reruns_only_the_atlases(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    config = tiny_config()
    config["analyses"]["transfer"]["atlas"] = {"grid": 5}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(workdir, "-n", "--until", "transfer_summary").stdout)
    atlas_jobs = {rule for rule in counts if rule.startswith("transfer_atlas_")}
    assert atlas_jobs and set(counts) == {*atlas_jobs, "transfer_summary"}
    assert counts["transfer_summary"] == 1


def test_an_invalid_setting_stops_the_run_naming_its_key(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    config = tiny_config()
    config["analyses"]["transfer"]["shots"] = [0, "all"]
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "-n", check=False)
    assert result.returncode != 0
    assert "analyses.transfer.shots[0]" in result.stdout + result.stderr
