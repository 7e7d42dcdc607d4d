"""The bottleneck stage's settings and headline rows on hand-made tables whose verdicts are known
(torch-free): own-limit acceleration, the declared k, censored runs, too few seeds, the linear
theory rows; and the settings' defaults against the schema."""

from __future__ import annotations

import math
from dataclasses import asdict, fields

import numpy as np
import pandas as pd
import pytest

from widthlab.bottleneck import claims, summary
from widthlab.bottleneck.settings import SUMMARY_COLUMNS, BottleneckSettings, LinearSettings
from widthlab.config import load_schema
from widthlab.headline import HEADLINE_COLUMNS

SEEDS = (0, 1, 2)
T_975_2 = 4.302652729911275  # Student t, two-sided 95 %, 2 degrees of freedom


def _ntk_rows(steps_by_rule, seeds=SEEDS):
    return [
        dict(
            variant="ntk",
            width=pd.NA,
            k=pd.NA,
            seed=0,
            step_rule=rule,
            lr=0.1,
            stability_limit=0.2,
            steps_to_threshold=steps,
            final_test_loss=0.2,
            final_test_acc=np.nan,
            alignment_init=0.5,
            alignment_trained=0.5,
            cka_init_trained=1.0,
            kernel_change=0.0,
        )
        for rule, steps in steps_by_rule.items()
    ]


def _runs(own, common=None, ntk=100.0, variants=("limit", "bottleneck"), seeds=SEEDS, kc=0.5):
    """Runs of regime "r": per variant, k → per-seed speed-ups under the own rule (``common``:
    under the common rule, default the same); a speed-up of NaN never reached the threshold
    within 500 steps. Representation change 0.3/k, alignment gain 0.1/k, kernel change kc/k."""
    rows = _ntk_rows({"own": ntk, "common": ntk})
    for variant in variants:
        for rule, by_k in (("own", own), ("common", common or own)):
            for k, speedups in by_k.items():
                for seed, s in zip(seeds, speedups, strict=True):
                    rows.append(
                        dict(
                            variant=variant,
                            width=64 if variant != "limit" else 256,
                            k=k,
                            seed=seed,
                            step_rule=rule,
                            lr=0.05,
                            stability_limit=0.1,
                            steps_to_threshold=ntk / s if np.isfinite(s) else np.nan,
                            final_test_loss=0.1 * (1 + seed),
                            final_test_acc=np.nan,
                            alignment_init=0.2,
                            alignment_trained=0.2 + 0.1 / k + 0.01 * seed,
                            cka_init_trained=1 - 0.3 / k - 0.01 * seed,
                            kernel_change=kc / k + 0.01 * seed,
                        )
                    )
    frame = pd.DataFrame(rows).assign(regime="r", threshold=0.01, steps=500)
    return frame.reindex(columns=["regime", *SUMMARY_COLUMNS])


def _table(runs, settings=None, linear=None):
    return claims.headline(runs, settings or BottleneckSettings(regimes={"r": {}}), linear)


def _row(table, text):
    rows = table[table.claim.str.contains(text, regex=False)]
    assert len(rows) == 1, (text, list(table.claim))
    return rows.iloc[0]


LIMIT = "trains faster than the NTK limit (implicit acceleration)"  # and no "finite nets"


def _accel(table, variant="limit"):
    rows = table[table.claim.str.contains(LIMIT, regex=False)]
    finite = rows.claim.str.contains("finite nets")
    return rows[~finite].iloc[0] if variant == "limit" else rows[finite].iloc[0]


# --- settings ----------------------------------------------------------------------------------

SECTION = load_schema()["properties"]["analyses"]["properties"]["bottleneck"]["properties"]


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def test_every_schema_key_is_a_setting_with_the_schema_default():
    defaults = asdict(BottleneckSettings())
    assert set(SECTION) == {f.name for f in fields(BottleneckSettings)}
    for key, spec in SECTION.items():
        if key == "linear":
            continue
        assert _plain(defaults[key]) == spec["default"], key
    linear = SECTION["linear"]["properties"]
    assert set(linear) == {f.name for f in fields(LinearSettings)}
    for key, spec in linear.items():
        assert _plain(defaults["linear"][key]) == spec["default"], f"linear.{key}"


def test_the_default_run_is_the_paper_s_setting_with_enough_seeds():
    settings = BottleneckSettings.from_config({})
    assert settings.limit_decoder_width > 0  # the infinitely wide encoder is on
    assert len(settings.seeds) >= 3 and len(settings.linear.seeds) >= 3
    assert all(settings.primary(r) == min(settings.bottlenecks) for r in settings.regimes)


def test_primary_k_must_be_one_of_every_regime_s_declared_bottlenecks():
    regimes = {"a": {}, "b": {"bottlenecks": [2, 4]}}
    assert BottleneckSettings(primary_k=2, regimes=regimes).primary("b") == 2
    with pytest.raises(ValueError, match="primary_k = 8 is not one of regime 'b'"):
        BottleneckSettings(primary_k=8, regimes=regimes)


# --- acceleration -------------------------------------------------------------------------------


def test_acceleration_is_judged_at_each_variant_s_own_stability_limit():
    faster_own = _table(_runs({2: [2.0, 2.2, 2.4]}, common={2: [0.5, 0.6, 0.55]}))
    row = _accel(faster_own)
    assert list(faster_own.columns) == HEADLINE_COLUMNS
    assert row.holds == "yes" and row.value == pytest.approx(2.2) and row.n == 3
    half = T_975_2 * np.std([2.0, 2.2, 2.4], ddof=1) / math.sqrt(3)
    assert (row.ci_low, row.ci_high) == pytest.approx((2.2 - half, 2.2 + half))
    assert "common step" in row.detail and "0.55" in row.detail  # both are reported
    slower_own = _accel(_table(_runs({2: [0.5, 0.6, 0.55]}, common={2: [2.0, 2.2, 2.4]})))
    assert slower_own.holds == "contradicted" and slower_own.value == pytest.approx(0.55)
    finite = _accel(faster_own, "bottleneck")
    assert finite.holds == "yes" and "width 64" in finite.quantity


def test_an_interval_that_spans_one_is_inconclusive():
    row = _accel(_table(_runs({2: [0.5, 1.5, 2.5]})))
    assert row.holds == "inconclusive" and row.ci_low < 1 < row.ci_high


def test_fewer_than_three_seeds_is_not_a_verdict():
    row = _accel(_table(_runs({2: [2.0, 2.1]}, seeds=(0, 1))))
    assert row.holds == "n/a" and row.reason.startswith("too few seeds")


def test_the_declared_k_decides_and_the_others_only_test_robustness():
    runs = _runs({2: [3.0, 3.1, 3.2], 8: [0.5, 0.55, 0.6]})
    smallest = _accel(_table(runs))  # primary_k null: the smallest declared k
    assert smallest.holds == "yes" and smallest.robust == "no" and "k=2" in smallest.quantity
    declared = _accel(_table(runs, BottleneckSettings(primary_k=8, regimes={"r": {}})))
    assert declared.holds == "contradicted" and declared.value == pytest.approx(0.55)
    assert declared.robust == "no" and "Not robust" in declared.detail
    tight = _runs({2: [3.0, 3.0, 3.0], 8: [0.5, 0.5, 0.5]})
    other_k = _accel(_table(tight, BottleneckSettings(primary_k=8, regimes={"r": {}})))
    assert other_k.holds == "contradicted" and "alternative 1: yes" in other_k.detail
    same = _accel(_table(_runs({2: [3.0, 3.1, 3.2], 8: [2.0, 2.1, 2.2]})))
    assert same.holds == "yes" and same.robust == "yes"


def test_a_run_that_never_reached_the_threshold_counts_with_its_bound_only_below_one():
    # NTK 100 steps, the runs stop at 500 without reaching it: at most 100/500 = 0.2
    never = _accel(_table(_runs({2: [np.nan, np.nan, np.nan]})))
    assert never.holds == "contradicted" and never.value == pytest.approx(0.2)
    # NTK 1000 steps: the bound 2 says nothing, so those seeds are left out
    unknown = _accel(_table(_runs({2: [np.nan, np.nan, 2.0]}, ntk=1000.0)))
    assert unknown.holds == "n/a" and unknown.n == 1
    runs = summary.add_run_metrics(_runs({2: [np.nan, 4.0, 2.0]}))
    limit = runs[(runs.variant == "limit") & (runs.step_rule == "own")]
    np.testing.assert_allclose(limit.speedup, [np.nan, 4.0, 2.0])
    np.testing.assert_allclose(limit.speedup_bounded, [0.2, 4.0, 2.0])


def test_without_the_limit_variant_its_row_is_not_measured():
    table = _table(_runs({2: [2.0, 2.2, 2.4]}, variants=("bottleneck",)))
    assert _accel(table).holds == "n/a" and "no limit runs" in _accel(table).reason
    # the representation rows fall back to the finite bottleneck nets
    assert "finite bottleneck net" in _row(table, "learns features").quantity


# --- the other rows ------------------------------------------------------------------------------


def test_representation_alignment_kernel_and_generalisation_rows():
    table = _table(_runs({2: [2.0, 2.2, 2.4], 8: [1.5, 1.6, 1.7]}))
    features = _row(table, "learns features")
    assert features.holds == "yes" and features.null == 0.02  # 1 − CKA ≈ 0.16 > tolerance
    assert features.value == pytest.approx(0.15 + 0.01)
    assert _row(table, "aligns the bottleneck").holds == "yes"  # gain 0.05 + 0.01·seed > 0
    moves = _row(table, "The NTK moves during training")
    assert moves.holds == "yes" and moves.value == pytest.approx(0.25 + 0.01)
    trend = _row(table, "returns to the fixed (lazy) NTK")
    # per seed: kernel change 0.5/k + c, slope on log2 k = (0.0625 − 0.25) / 2 exactly
    assert trend.holds == "yes" and trend.value == pytest.approx(-0.09375)
    assert trend.n == 3 and trend.direction == -1
    generalises = _row(table, "generalises better")
    assert generalises.holds == "inconclusive"  # test-loss ratios 0.5, 1, 1.5 around 1
    flat = _row(_table(_runs({2: [2.0, 2.2, 2.4]})), "returns to the fixed (lazy) NTK")
    assert flat.holds == "n/a" and "fewer than two" in flat.reason


def test_the_attribution_row_pairs_seeds_with_the_same_width_without_bottleneck():
    runs = _runs({2: [2.0, 2.0, 2.0], 8: [1.5, 1.5, 1.5]})
    plain = runs[(runs.variant == "bottleneck") & (runs.k == 2)].copy()
    plain["variant"], plain["k"] = "finite", pd.NA
    plain["steps_to_threshold"] = [100.0, 80.0, np.nan] * 2  # the bottleneck takes 50
    row = _row(_table(pd.concat([runs, plain], ignore_index=True)), "same width without one")
    assert row.n == 2 and row.value == pytest.approx((2.0 + 1.6) / 2)
    assert row.holds == "n/a"  # the NaN pair is left out: two seeds are too few
    none = _row(_table(runs), "same width without one")
    assert none.holds == "n/a" and "without a bottleneck" in none.reason
    plain["steps_to_threshold"] = np.nan
    never = _row(_table(pd.concat([runs, plain], ignore_index=True)), "same width without one")
    assert never.holds == "n/a" and "no seed where both nets reached" in never.reason


def test_the_row_that_read_yes_from_two_seeds_now_needs_three():
    """Issue 15: "The NTK moves during training with a bottleneck … 0.604 [-3.93, 5.14] (n=2)
    yes". From two seeds it is n/a; from three that vary widely, inconclusive."""
    two = _row(_table(_runs({2: [1, 1]}, seeds=(0, 1), kc=1.2)), "The NTK moves")
    assert two.holds == "n/a"
    wide = _runs({2: [1.0, 1.0, 1.0]})
    own = (wide.variant == "limit") & (wide.step_rule == "own")
    wide.loc[own, "kernel_change"] = [0.01, 0.05, 1.8]
    row = _row(_table(wide), "The NTK moves")
    assert row.holds == "inconclusive" and row.ci_low < 0.02 < row.ci_high


# --- deep linear --------------------------------------------------------------------------------


def _linear(ntk, reduced, errors, width=100):
    columns = ["variant", "k", "width", "seed", "steps_to_threshold", "max_rel_error"]
    rows = []
    for seed, (n, r, e) in enumerate(zip(ntk, reduced, errors, strict=True)):
        rows += [
            ("ntk", pd.NA, pd.NA, seed, n, np.nan),
            ("reduced", 1, pd.NA, seed, r, np.nan),
            ("simulated", 1, width, seed, r, e),
        ]
    return pd.DataFrame(rows, columns=columns).assign(target="low")


def test_linear_rows():
    settings = BottleneckSettings(regimes={"r": {}}, linear=LinearSettings(bottlenecks=(1,)))
    runs = _runs({2: [2.0, 2.2, 2.4]})
    table = _table(runs, settings, _linear([400.0] * 3, [100.0, 90.0, 110.0], [0.1, 0.12, 0.11]))
    accel, theory = table.iloc[-2], table.iloc[-1]
    assert "low-variance" in accel.claim and accel.holds == "yes"
    assert accel.value == pytest.approx(np.mean([4.0, 400 / 90, 400 / 110]))
    assert theory.holds == "yes" and theory.null == pytest.approx(0.2)  # errors < 2/√100
    bad = _table(runs, settings, _linear([400.0] * 3, [100.0] * 3, [0.25, 0.3, 0.28]))
    assert bad.iloc[-1].holds == "contradicted"
    one = _table(runs, settings, _linear([400.0], [100.0], [0.1]))
    assert set(one.iloc[-2:].holds) == {"n/a"}
    # never within the 600 declared steps: slower than an NTK of 300 steps by at least 2×
    slow = _table(runs, settings, _linear([300.0] * 3, [np.nan] * 3, [0.1] * 3)).iloc[-2]
    assert slow.holds == "contradicted" and slow.value == pytest.approx(0.5)
