"""The clones stage (Doimo et al. 2022) on the tiny run: per-model tables on the train and test
splits, summaries with grids and conditions, provenance, the headline contract, and which jobs a
setting reruns."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import fork, job_counts, snakemake

from widthlab.clones.measure import TABLE_COLUMNS
from widthlab.data.npz import load_dataset
from widthlab.grid import parse_model_id
from widthlab.headline import HEADLINE_COLUMNS, VERDICTS
from widthlab.model_jobs import job_of, split_into_jobs
from widthlab.provenance import read_provenance
from widthlab.stats import verdict_of_row

pytestmark = pytest.mark.integration

MAIN = ["digits-mlp-w16-d1-nall-wd0-s0", "digits-mlp-w32-d1-nall-wd0-s0"]
EARLY = ["digits-mlp-w16-d1-nall-wd0-s0-vearly"]
SUMMARIES = ["clones", "clones_growth", "clones_conditions", "clones_ensembles", "clones_gap"]
SUMMARIES += ["clones_headline"]
FIGURES = ["chunk_accuracy", "chunk_similarity", "clone_growth", "conditions", "ensembles"]
FIGURES += ["ensemble_gap"]


def test_per_model_tables_are_tidy_and_carry_provenance(tiny_run):
    results = tiny_run / "results"
    dataset = load_dataset(results / "data/digits.npz")
    for mid in MAIN + EARLY:
        spec = parse_model_id(mid)
        columns = list(spec.columns())
        table = pd.read_parquet(results / f"clones/{mid}.parquet")
        assert list(table.columns[: len(columns)]) == columns and (table["model"] == mid).all()
        assert set(TABLE_COLUMNS) <= set(table.columns)
        sizes = sorted(table["chunk_size"].unique())
        assert sizes == [1, 2, 4, 8, 16, 32][: sizes.index(spec.width) + 1]
        assert (table["layer_width"] == spec.width).all()
        head = table[(table["metric"] == "accuracy") & (table["method"] == "head")]
        assert set(head["split"]) == {"train", "test"}
        assert (head[head["chunk_size"] == 1]["n_chunks"] == min(20, spec.width)).all()
        assert table.loc[table["metric"] == "accuracy", "mean"].between(0, 1).all()
        r2 = table[table["metric"] == "r2"].set_index("chunk_size")["mean"]
        assert r2[spec.width] == pytest.approx(1.0, abs=1e-9)  # the full layer predicts itself
        assert (table[table["metric"] == "r2"]["n_chunks"] <= 10).all()  # the tiny setting
        logits = pd.read_parquet(results / f"clones/logits/{mid}.parquet")
        assert list(logits.columns[: len(columns)]) == columns
        assert len(logits) == len(dataset.y_test)  # the whole test split, not the probe set
        assert np.array_equal(logits["label"], dataset.y_test)
        record = read_provenance(results / f"clones/{mid}.parquet")
        assert record["rule"] == f"clones_model_{job_of(mid, 4)}"
        assert record["wildcards"] == {"model": mid}
        inputs = " ".join(entry["path"] for entry in record["inputs"])
        assert f"models/{mid}/model.pt" in inputs and "data/digits.npz" in inputs
        assert record["params"]["settings"]["n_accuracy_chunks"] == 20
        assert "thresholds" not in record["params"]["settings"]  # a summary key


def test_summary_tables_figures_and_headline(tiny_run):
    results = tiny_run / "results"
    for name in SUMMARIES:
        assert read_provenance(results / f"summary/{name}.parquet")["rule"] == "clones_summary"
    for name in FIGURES:
        path = results / f"figures/clones/{name}.png"
        # one seed: no error_∞, so the gap figure says why it is empty
        assert path.stat().st_size > (1000 if name == "ensemble_gap" else 5000), name
        assert json.loads(path.with_name(path.name + ".prov.json").read_text())["rule"]
    summary = pd.read_parquet(results / "summary/clones.parquet").set_index("model")
    assert set(summary.index) == set(MAIN + EARLY)
    assert summary.loc[EARLY[0], "grid"] == "clones_early"
    assert (summary.loc[MAIN, "grid"] == "main").all()
    assert (summary["n_clones"] == summary["width"] / summary["clone_size"]).all()
    assert summary["clone_size"].isin([1, 2, 4, 8, 16, 32]).all()
    # the network's own train error: the early model (1 epoch) fits worse than the main ones
    assert summary.loc[EARLY[0], "train_error"] > summary.loc[MAIN, "train_error"].max()
    conditions = pd.read_parquet(results / "summary/clones_conditions.parquet")
    assert set(conditions["grid"]) == {"main", "clones_early"}
    # the training recipe rides along, and the declared alternatives of the clone-size rule
    assert summary["recipe"].str.contains("max_epochs=").all()
    assert {"n_clones_alt1", "n_clones_alt2", "clone_size_alt1"} <= set(summary.columns)
    ensembles = pd.read_parquet(results / "summary/clones_ensembles.parquet")
    assert (ensembles["members"] == 1).all()  # one seed: single models only
    assert ensembles["error_infinity"].isna().all()  # no ensemble of ≥ 5 seeds: no error_∞
    assert len(pd.read_parquet(results / "summary/clones_gap.parquet")) == 0
    headline = pd.read_parquet(results / "summary/clones_headline.parquet")
    assert list(headline.columns) == HEADLINE_COLUMNS and len(headline) == 5
    assert set(headline["holds"]) <= set(VERDICTS)
    assert (headline["paper"] == "Doimo et al. 2022").all()
    for _, row in headline.iterrows():
        assert verdict_of_row(row) == row["holds"]
    # one seed of each model: every row is n/a, each for its own reason
    assert (headline["holds"] == "n/a").all()
    growth, interpolation, decay, gap, wide = (headline.iloc[k] for k in range(5))
    assert growth["reason"].startswith(("too few seeds", "floor"))
    # neither grid interpolates in 4 and 1 epochs; their recipes differ only in the epochs
    assert interpolation["reason"].startswith("no contrast")
    assert decay["reason"] == "the stage's grids lack models with and without weight decay"
    assert "ensemble of ≥ 5 seeds" in gap["reason"] and "the largest has 1" in gap["reason"]
    assert wide["reason"].startswith("width 32:")


def test_a_threshold_reruns_only_the_summary_and_a_chunk_setting_every_model(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["analyses"]["clones"]["thresholds"] = {"r2_min": 0.8}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(workdir, "-n", "--until", "clones_summary").stdout)
    assert counts == {"clones_summary": 1}
    config["analyses"]["clones"]["n_ii_chunks"] = 3
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(workdir, "-n", "--until", "clones_summary").stdout)
    assert counts.pop("clones_summary") == 1
    assert set(counts) == {f"clones_model_{k}" for k in split_into_jobs(MAIN + EARLY, 4)}


def test_an_unknown_clones_key_is_refused_naming_it(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["analyses"]["clones"]["thresholds"] = {"r2": 0.8}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "-n", check=False)
    assert result.returncode != 0
    assert "analyses.clones.thresholds.r2" in result.stdout + result.stderr
