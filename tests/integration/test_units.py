"""The units stage (Casper et al. 2021) on the tiny run: outputs, tidy tables, provenance, headline
contract, and which jobs a settings change reruns."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import fork, job_counts, snakemake

from widthlab.data.npz import load_dataset
from widthlab.grid import parse_model_id
from widthlab.headline import HEADLINE_COLUMNS, VERDICTS
from widthlab.model_jobs import job_of, split_into_jobs
from widthlab.provenance import read_provenance

pytestmark = pytest.mark.integration

MODELS = ["digits-mlp-w16-d1-nall-wd0-s0", "digits-mlp-w32-d1-nall-wd0-s0"]
SUMMARIES = ["units", "units_layers", "units_curves", "units_growth", "units_slopes"]
SUMMARIES += ["units_effects", "units_headline"]
FIGURES = ["ablation_curves", "unit_counts", "fractions", "split", "per_layer"]


def test_per_model_tables_are_tidy_and_carry_provenance(tiny_run):
    results = tiny_run / "results"
    test_size = len(load_dataset(results / "data/digits.npz").y_test)
    for mid in MODELS:
        columns = list(parse_model_id(mid).columns())
        table = pd.read_parquet(results / f"units/{mid}.parquet")
        assert list(table.columns[: len(columns)]) == columns and (table["model"] == mid).all()
        assert list(table["layer"]) == ["h1", "all"]  # one hidden layer, then the network
        assert (table["examples"] == test_size).all()  # the whole test split, not the probe set
        for column in ("prunability", "compressibility", "intact_accuracy"):
            assert table[column].between(0, 1).all(), column
        np.testing.assert_allclose(table["prunable"] + table["non_prunable"], table["units"])
        curves = pd.read_parquet(results / f"units/curves/{mid}.parquet")
        assert list(curves.columns[: len(columns)]) == columns
        assert sorted(curves["order"].unique()) == [0, 1, 2]
        assert np.allclose(sorted(curves["fraction"].unique()), np.linspace(0, 1, 7))
        assert (curves.loc[curves["fraction"] == 0, "agreement"] == 1.0).all()
        record = read_provenance(results / f"units/{mid}.parquet")
        assert record["rule"] == f"units_model_{job_of(mid, 4)}"
        assert record["wildcards"] == {"model": mid}
        inputs = " ".join(entry["path"] for entry in record["inputs"])
        assert f"models/{mid}/model.pt" in inputs and "data/digits.npz" in inputs
        assert record["params"]["settings"]["threshold"] == 0.8


def test_summary_tables_figures_and_headline(tiny_run):
    results = tiny_run / "results"
    for name in SUMMARIES:
        path = results / f"summary/{name}.parquet"
        assert read_provenance(path)["rule"] == "units_summary", name
    for name in FIGURES:
        path = results / f"figures/units/{name}.png"
        assert path.stat().st_size > 5000, name
        assert json.loads(path.with_name(path.name + ".prov.json").read_text())["rule"]
    summary = pd.read_parquet(results / "summary/units.parquet")
    assert set(summary["model"]) == set(MODELS)
    assert {"prunable", "redundant", "non_redundant"} <= set(summary["quantity"])
    growth = pd.read_parquet(results / "summary/units_growth.parquet")
    units = growth[(growth["quantity"] == "units") & (growth["layer"] == "all")]
    assert units["g"].tolist() == [pytest.approx(2.0)]  # 16 → 32 units
    headline = pd.read_parquet(results / "summary/units_headline.parquet")
    assert list(headline.columns) == HEADLINE_COLUMNS and len(headline) >= 5
    assert set(headline["holds"]) <= set(VERDICTS)
    assert (headline["paper"] == "Casper et al. 2021").all()
    # one seed and one weight decay: no interval, and the verdicts say so
    assert headline["ci_low"].isna().all() and (headline["holds"] == "n/a").all()
    assert headline["detail"].str.len().gt(20).all()


def test_a_units_setting_reruns_only_the_units_jobs(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["analyses"]["units"] = {"threshold": 0.9}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(workdir, "-n", "--until", "units_summary").stdout)
    assert counts.pop("units_summary") == 1
    assert set(counts) == {f"units_model_{k}" for k in split_into_jobs(MODELS, 4)}
    config["analyses"]["units"] = {"level": 0.9}  # a summary-only key
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(workdir, "-n", "--until", "units_summary").stdout)
    assert counts == {"units_summary": 1}


def test_bad_units_settings_stop_before_anything_runs(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["analyses"]["units"] = {"fractions": 1}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "-n", check=False)
    assert result.returncode != 0
    assert "analyses.units.fractions" in result.stdout + result.stderr
