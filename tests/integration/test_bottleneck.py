"""The bottleneck stage (Littwin et al. 2021) on the tiny run: its own study jobs, tidy tables with
provenance, the headline contract, figures, and which jobs a settings change reruns."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import copy_workflow, fork, job_counts, snakemake, tiny_config

from widthlab.bottleneck import settings as bn
from widthlab.bottleneck.summary import EFFECT_COLUMNS, EFFECT_METRICS
from widthlab.headline import HEADLINE_COLUMNS, VERDICTS
from widthlab.provenance import read_provenance

pytestmark = pytest.mark.integration

REGIMES = ["classes", "lowpc"]
JOBS = {"ntk": {"ntk"}, "w64": {"finite", "bottleneck"}, "limit": {"limit"}}
SUMMARIES = ["bottleneck", "bottleneck_curves", "bottleneck_kernel", "bottleneck_effects"]
SUMMARIES += ["bottleneck_headline"]
FIGURES = ["loss_curves", "steps_to_threshold", "feature_learning", "final_test", "kernel_dynamics"]


def test_study_parts_are_tidy_and_carry_provenance(tiny_run):
    results = tiny_run / "results"
    for regime in REGIMES:
        for job, variants in JOBS.items():
            folder = results / "bottleneck" / regime / job
            runs = pd.read_parquet(folder / "runs.parquet")
            curves = pd.read_parquet(folder / "curves.parquet")
            kernel = pd.read_parquet(folder / "kernel.parquet")
            assert list(runs.columns) == ["regime", *bn.SUMMARY_COLUMNS]
            assert list(curves.columns) == ["regime", *bn.CURVE_COLUMNS]
            assert list(kernel.columns) == ["regime", *bn.KERNEL_COLUMNS]
            assert set(runs.variant) == variants and (runs.regime == regime).all()
            # one k, three seeds (the NTK's mean prediction: one seed-free row), two step rules
            assert len(runs) == 2 * (1 if job == "ntk" else 3 * len(variants))
            assert set(runs.step_rule) == {"common", "own"}
            own = runs[runs.step_rule == "own"]
            np.testing.assert_allclose(own.lr, 0.5 * own.stability_limit)  # lr_fraction 0.5
            # every variant is centred: f = 0 at step 0, so the train loss is ½·mean‖y‖² = ½
            # (one-hot labels, and a principal component standardised on the training split)
            start = curves[(curves.step == 0) & (curves.split == "train")]
            np.testing.assert_allclose(start.loss, 0.5, rtol=1e-5)
            assert set(curves.split) == {"train", "test"}
            for run in runs.itertuples():  # curves end at the last step, or where a run diverged
                last = curves[
                    (curves.variant == run.variant)
                    & (curves.seed == run.seed)
                    & (curves.step_rule == run.step_rule)
                ].step.max()
                assert last == 40 if np.isnan(run.diverged_at) else last <= run.diverged_at
            record = read_provenance(folder / "runs.parquet")
            assert record["rule"] == "bottleneck_study"
            assert record["wildcards"] == {"regime": regime, "job": job}
            assert any(e["path"].endswith("data/digits.npz") for e in record["inputs"])
            settings = record["params"]["settings"]
            assert settings["regime"] == regime and settings["n_train"] == 64
            assert ("width" in settings) == (job == "w64")
    ntk = pd.read_parquet(results / "bottleneck/classes/ntk/runs.parquet")
    assert (ntk.kernel_change == 0.0).all() and (ntk.cka_init_trained == 1.0).all()


def test_summary_tables_figures_and_headline(tiny_run):
    results = tiny_run / "results"
    for name in SUMMARIES:
        record = read_provenance(results / f"summary/{name}.parquet")
        assert record["rule"] == "bottleneck_summary", name
    runs = pd.read_parquet(results / "summary/bottleneck.parquet")
    assert set(runs.regime) == set(REGIMES)
    assert {"speedup", "test_loss_ratio", "alignment_gain", "representation_change"} <= set(
        runs.columns
    )
    assert (runs[runs.variant == "ntk"].speedup == 1.0).all()
    effects = pd.read_parquet(results / "summary/bottleneck_effects.parquet")
    assert list(effects.columns) == EFFECT_COLUMNS
    assert set(effects.metric) == set(EFFECT_METRICS)
    headline = pd.read_parquet(results / "summary/bottleneck_headline.parquet")
    assert list(headline.columns) == HEADLINE_COLUMNS
    assert set(headline.holds) <= set(VERDICTS) and (headline.paper == bn.PAPER).all()
    assert len(headline) == 8 * len(REGIMES) + 2 + 1  # per regime, per linear target, theory
    decided = headline[headline.holds != "n/a"]
    assert len(decided) >= 1 and (decided.n >= 3).all()  # three seeds: rows decide end to end
    assert decided.ci_low.notna().all() and decided.ci_high.notna().all()
    assert (headline[headline.holds == "n/a"].reason.str.len() > 0).all()
    assert not headline.holds.isin(["partly", "no"]).any()
    assert headline.detail.str.len().gt(20).all()
    linear = pd.read_parquet(results / "summary/bottleneck_linear.parquet")
    assert set(linear.variant) == {"ntk", "reduced", "simulated"}
    assert read_provenance(results / "summary/bottleneck_linear.parquet")["rule"] == (
        "bottleneck_linear"
    )
    paths = [results / f"figures/bottleneck/{r}_{name}.png" for r in REGIMES for name in FIGURES]
    for path in [*paths, results / "figures/bottleneck/linear_curves.png"]:
        assert path.stat().st_size > 5000, path
        assert json.loads(path.with_name(path.name + ".prov.json").read_text())["rule"]


def test_a_regime_change_reruns_only_that_regime(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    config = tiny_config()
    config["analyses"]["bottleneck"]["regimes"]["lowpc"]["component"] = 8
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(workdir, "-n").stdout)
    assert counts.get("bottleneck_study") == 3  # lowpc: ntk, w64, limit
    assert counts.get("bottleneck_summary") == 1
    assert "bottleneck_linear" not in counts and "train" not in counts


def test_an_unknown_regime_key_is_named(tmp_path):
    config = tiny_config()
    config["analyses"]["bottleneck"]["regimes"]["lowpc"]["scael"] = 2
    workdir = copy_workflow(tmp_path, config)
    result = snakemake(workdir, "-n", check=False)
    assert result.returncode != 0
    assert "analyses.bottleneck.regimes.lowpc.scael" in result.stdout + result.stderr
