"""The similarity stage through the snakemake CLI on the tiny config (and a fork of it with two
seeds and two depths, so that seed pairs, wide-vs-deep pairs and error patterns exist)."""

import re

import pandas as pd
import pytest
import yaml
from conftest import copy_workflow, fork, snakemake, tiny_config

from widthlab.grid import parse_model_id
from widthlab.headline import HEADLINE_COLUMNS, VERDICTS
from widthlab.model_jobs import job_of
from widthlab.provenance import read_provenance

pytestmark = pytest.mark.integration

TINY = ["digits-mlp-w16-d1-nall-wd0-s0", "digits-mlp-w32-d1-nall-wd0-s0"]
SUMMARIES = ["", "_blocks", "_layers", "_agreement", "_classes", "_headline", "_cross"]
FIGURES = [
    "cka_heatmaps",
    "cka_heatmaps_pc1_removed",
    "cross_model",
    "estimator_comparison",
    "pc1_share",
    "probe_accuracy",
    "block_size",
    "agreement",
    "per_class_difference",
]


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[-1]
    rows = re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.MULTILINE)
    return {rule: int(count) for rule, count in rows if rule != "total"}


def check_headline(path):
    headline = pd.read_parquet(path)
    assert list(headline.columns) == HEADLINE_COLUMNS
    assert len(headline) == 8 and set(headline["holds"]) <= set(VERDICTS)
    measured = headline[headline["n"] > 0]
    assert measured["estimator"].str.len().gt(0).all() and headline["detail"].str.len().gt(0).all()
    assert (headline["holds"] != "n/a").all() or headline["reason"].str.len().gt(0).any()
    assert (headline["paper"] == "Nguyen, Raghu & Kornblith 2021").all()
    return headline


def test_per_model_tables_are_tidy_and_carry_provenance(tiny_run):
    results = tiny_run / "results"
    for mid in TINY:
        leading = list(parse_model_id(mid).columns())
        path = results / "similarity" / f"{mid}.parquet"
        cka = pd.read_parquet(path)
        assert list(cka.columns) == [*leading, "layer_i", "layer_j", "name_i", "name_j"] + [
            "estimator",
            "cka",
        ]
        assert set(cka["estimator"]) == {"debiased", "minibatch", "linear", "debiased_pc1_removed"}
        assert (cka.loc[cka["layer_i"] == cka["layer_j"], "cka"] - 1).abs().max() < 1e-9
        layers = pd.read_parquet(results / "similarity_layers" / f"{mid}.parquet")
        assert list(layers.columns[: len(leading)]) == leading
        assert layers["pc1_share"].between(0, 1).all()
        assert layers["probe_accuracy"].between(0, 1).all()
        record = read_provenance(path)
        assert record["rule"].startswith("similarity_models_")
        assert any(mid in entry["path"] for entry in record["inputs"])


def test_summary_tables_figures_and_headline_exist(tiny_run):
    results = tiny_run / "results"
    for suffix in SUMMARIES:
        path = results / "summary" / f"similarity{suffix}.parquet"
        assert read_provenance(path)["rule"].startswith("similarity_"), path
    summary = pd.read_parquet(results / "summary" / "similarity.parquet")
    assert set(summary["model"]) == set(TINY)
    assert "estimator" in summary and summary["estimator"].notna().all()
    assert (summary["block_size"] == 0).all()  # one layer: no block, and no failure
    for name in FIGURES:
        figure = results / "figures" / "similarity" / f"{name}.png"
        assert figure.stat().st_size > 0 and read_provenance(figure) is not None, name
    # the tiny config's explicit pair: cross-model CKA and agreement, but one seed only
    cross = pd.read_parquet(results / "summary" / "similarity_cross.parquet")
    assert set(cross["kind"]) == {"explicit"}
    agreement = pd.read_parquet(results / "summary" / "similarity_agreement.parquet")
    assert agreement["agreement"].between(0, 1).all()
    headline = check_headline(results / "summary" / "similarity_headline.parquet")
    assert (headline["holds"] == "n/a").all()  # nothing to decide with one layer and one seed
    assert headline["ci_low"].isna().all()


def test_seeds_and_depths_give_pairs_and_error_patterns(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    config = tiny_config()
    config["grids"]["main"].update(depth=[1, 2], seed=[0, 1])
    config["analyses"]["similarity"] = {"jobs": 4, "errors": {"permutations": 500}}
    config["train_packs"] = {}  # the default: one pack per width, so a new width touches no other
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "--until", "similarity_summary")
    results = workdir / "results" / "summary"
    cross = pd.read_parquet(results / "similarity_cross.parquet")
    assert set(cross["kind"]) == {"seeds", "wide_vs_deep"}
    # the one wide-vs-deep match per seed: d2 w16 (64·16 + 16² = 1280 weights) vs d1 w32 (2048)
    wide_deep = cross.loc[cross["kind"] == "wide_vs_deep", ["model_a", "model_b"]]
    assert set(map(tuple, wide_deep.drop_duplicates().values)) == {
        (f"digits-mlp-w32-d1-nall-wd0-s{s}", f"digits-mlp-w16-d2-nall-wd0-s{s}") for s in (0, 1)
    }
    agreement = pd.read_parquet(results / "similarity_agreement.parquet")
    assert (agreement["kind"] == "seeds").sum() == 4
    classes = pd.read_parquet(results / "similarity_classes.parquet")
    assert set(classes["class"]) == set(range(10)) and (classes["seeds"] == 2).all()
    assert classes["q_value"].between(0, 1).all()
    headline = check_headline(results / "similarity_headline.parquet")
    errors = headline[headline["quantity"].str.startswith("prediction agreement")].iloc[0]
    # two seeds measure the row but decide nothing: the rule needs three
    assert errors["n"] == 2 and errors["holds"] == "n/a" and "seed" in errors["reason"]

    # a new width reruns only the per-model jobs its models hash into
    config["grids"]["main"]["width"].append(64)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(workdir, "-n", "--until", "similarity_summary").stdout)
    new = [f"digits-mlp-w64-d{d}-nall-wd0-s{s}" for d in (1, 2) for s in (0, 1)]
    expected = {f"similarity_models_{job_of(m, 4)}" for m in new}
    assert {k for k in counts if k.startswith("similarity_models_")} == expected
    assert len(expected) < 4 and counts["similarity_summary"] == 1


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"grid": ["main", "wide"]}, r"analyses\.similarity\.grid: .*wide"),
        ({"width_estimator": "minibatch"}, r"analyses\.similarity\.cross_estimators: must"),
        ({"pairs": {"explicit": [["digits-mlp-w64-d1-nall-wd0-s0", "x"]]}}, "pairs.explicit"),
        ({"blocks": {"threshold": 2}}, r"analyses\.similarity\.blocks\.threshold"),
    ],
)
def test_invalid_similarity_settings_stop_the_run_naming_the_key(tmp_path, setting, message):
    config = tiny_config()
    config["analyses"]["similarity"] = setting
    if "width_estimator" in setting:
        setting["estimators"] = ["minibatch"]
    result = snakemake(copy_workflow(tmp_path, config), "-n", check=False)
    assert result.returncode != 0
    assert re.search(message, result.stdout + result.stderr), result.stderr[-2000:]
