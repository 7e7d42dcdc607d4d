"""Every headline row of the clones stage on hand-made tables whose verdict is known: a yes, a
contradicted, an inconclusive and an n/a with its reason each. Expected values are computed
here from their definitions (closed-form least squares, Student-t intervals from scipy), not
taken from the stage's own output."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from widthlab.clones import claims
from widthlab.clones.settings import CloneSettings

WIDTHS = (32, 64, 128, 256, 512)
SGD = 'lr=0.05;max_epochs=150;optimizer="sgd";until_zero_train_error=true'
EARLY = 'lr=0.05;max_epochs=3;optimizer="sgd";until_zero_train_error=false'
SETTINGS = CloneSettings(grids=("main",), critical_width=None)


def t_estimate(values):
    """Mean and two-sided 95 % Student-t interval, written out."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    half = scipy_stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return values.mean(), values.mean() - half, values.mean() + half


def slope(x, y):
    """Least-squares slope, closed form."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())


def model(width, seed, n_clones, **columns):
    """One summary row with the stage's columns."""
    row = {
        "model": f"w{width}-s{seed}-{columns.get('grid', 'main')}-{columns.get('depth', 2)}"
        f"-{columns.get('weight_decay', 5e-4)}",
        "grid": "main",
        "dataset": "toy",
        "arch": "mlp",
        "width": width,
        "depth": 2,
        "weight_decay": 5e-4,
        "seed": seed,
        "variant": None,
        "n_clones": float(n_clones),
        "clone_size": width / n_clones,
        "train_error": 0.0,
        "test_error": 0.1,
        "interpolating": True,
        "recipe": SGD,
    }
    row.update(columns)
    row["model"] += f"-{row['variant']}"
    return row


def frame(rows):
    return pd.DataFrame(rows)


def row_of(table, claim):
    rows = table[table["claim"] == claim]
    assert len(rows) == 1
    return rows.iloc[0]


# ----------------------------------------------------------------------------------------------
# 1. Growth
# ----------------------------------------------------------------------------------------------


def growth_summary(exponents, depths=(2,), base=1.0):
    """#clones = base · (W / 32)^b_seed exactly: each seed's exponent is b_seed."""
    return frame(
        model(w, s, base * (w / 32) ** b, depth=d)
        for s, b in enumerate(exponents)
        for w in WIDTHS
        for d in depths
    )


@pytest.mark.parametrize(
    "exponents, verdict",
    [
        ([1.4, 1.5, 1.3, 1.45], "yes"),  # at least linear, clearly
        ([0.3, 0.35, 0.25, 0.3], "contradicted"),  # grows, but slower than the width
        ([1.0, 0.9, 1.1, 0.95], "inconclusive"),  # linear within the noise: 1 in the interval
    ],
)
def test_growth_row_tests_the_exponent_above_a_declared_critical_width(exponents, verdict):
    settings = CloneSettings(critical_width=64)
    row = claims.growth_row(growth_summary(exponents, base=16.0), settings)
    assert row["holds"] == verdict and row["null"] == 1 and row["direction"] == 1
    # the exponent over W ≥ 64 of each seed, then the t-interval over seeds
    per_seed = [
        slope(np.log2(WIDTHS[1:]), b * np.log2(np.array(WIDTHS[1:]) / 32)) for b in exponents
    ]
    mean, low, high = t_estimate(per_seed)
    assert (row["value"], row["ci_low"], row["ci_high"]) == pytest.approx((mean, low, high))
    assert row["n"] == 4 and row["unit"] == "seeds"


def test_growth_row_counts_seeds_not_conditions():
    summary = growth_summary([1.0, 0.9, 1.1], depths=(2, 4))
    row = claims.growth_row(summary, CloneSettings(critical_width=32))
    assert row["n"] == 3  # two depths of one seed are one draw
    assert row["value"] == pytest.approx(1.0)


def test_growth_row_with_two_seeds_is_na_and_at_the_floor_too():
    row = claims.growth_row(growth_summary([1.0, 0.9]), SETTINGS)
    assert row["holds"] == "n/a" and row["reason"].startswith("too few seeds")
    flat = growth_summary([0.0, 0.0, 0.0, 0.0])
    row = claims.growth_row(flat, SETTINGS)
    assert row["holds"] == "n/a" and row["reason"].startswith("floor")
    row = claims.growth_row(growth_summary([1.0])[lambda f: f["width"] == 64], SETTINGS)
    assert row["holds"] == "n/a" and "two widths" in row["reason"]


def test_the_critical_width_is_estimated_on_the_other_seeds():
    # #clones = 1 up to W = 128, then W / 128: a hinge at 128 in every seed but seed 3, whose
    # clones start at 32. Seed 3's own data would put its break at 32; held out, it is 128.
    rows = []
    for seed in range(4):
        start = 32 if seed == 3 else 128
        rows += [model(w, seed, max(1.0, w / start)) for w in WIDTHS]
    table = claims.growth_exponents(frame(rows), "main")
    crit = table.set_index("seed")["critical_width"]
    assert crit[3] == pytest.approx(128.0)  # from seeds 0-2 alone
    # seed 3 tested over W ≥ 128: log2 #clones = log2(W / 32)
    expected = slope(np.log2([128, 256, 512]), np.log2(np.array([128, 256, 512]) / 32))
    assert table.set_index("seed")["exponent"][3] == pytest.approx(expected)


def test_growth_row_is_robust_only_if_the_alternative_thresholds_agree():
    summary = growth_summary([1.0, 0.9, 1.1, 0.95])
    summary["n_clones_alt1"] = summary["n_clones"]  # the same counts: same verdict
    summary["clone_size_alt1"] = summary["clone_size"]
    summary["n_clones_alt2"] = 1.0  # no clones under the second rule: the verdict changes
    summary["clone_size_alt2"] = summary["width"]
    row = claims.growth_row(summary, CloneSettings(critical_width=64))
    assert row["holds"] == "inconclusive" and row["robust"] == "no"
    assert "alternative 2" in row["detail"]


# ----------------------------------------------------------------------------------------------
# 2.–3. Interpolation and weight decay
# ----------------------------------------------------------------------------------------------


def pairs_summary(log2_ratios, factor):
    """Primary models with W/16 clones; their matched partners (early-stopped, or without weight
    decay) with 2^-r times as many in seed s (r = log2_ratios[s])."""
    rows = []
    for seed, ratio in enumerate(log2_ratios):
        for w in (64, 128):
            rows.append(model(w, seed, w / 16))
            partner = {"n_clones": w / 16 / 2**ratio}
            if factor == "variant":
                partner |= {"grid": "early", "variant": "early", "recipe": EARLY}
                partner |= {"interpolating": False, "train_error": 0.2}
            else:
                partner |= {"weight_decay": 0.0}
            rows.append(model(w, seed, **partner))
    return frame(rows)


@pytest.mark.parametrize("factor", ["variant", "weight_decay"])
@pytest.mark.parametrize(
    "ratios, verdict",
    [
        ([1.0, 1.5, 2.0], "yes"),
        ([-1.0, -1.2, -0.8], "contradicted"),
        ([1.0, -1.0, 0.2], "inconclusive"),
    ],
)
def test_matched_rows_average_a_seeds_pairs(factor, ratios, verdict):
    summary = pairs_summary(ratios, factor)
    if factor == "variant":
        (row,) = claims.interpolation_rows(summary, SETTINGS)
    else:
        row = claims.weight_decay_row(summary, SETTINGS)
    assert row["holds"] == verdict, row["detail"]
    mean, low, high = t_estimate(ratios)  # both widths of a seed share its ratio
    assert (row["value"], row["ci_low"], row["ci_high"]) == pytest.approx((mean, low, high))
    assert row["n"] == 3


def test_the_weight_decay_row_finds_its_undecayed_twins_in_another_grid():
    summary = pairs_summary([1.0, 1.5, 2.0], "weight_decay")
    in_main = claims.weight_decay_row(summary, SETTINGS)
    summary.loc[summary["weight_decay"] == 0, "grid"] = "no_decay"  # the default config's layout
    elsewhere = claims.weight_decay_row(summary, SETTINGS)
    assert elsewhere["holds"] == in_main["holds"] == "yes"
    assert elsewhere["value"] == pytest.approx(in_main["value"])


def test_interpolation_row_allows_only_the_stopping_rule_to_differ():
    summary = pairs_summary([1.0, 1.5, 2.0], "variant")
    early = summary["grid"] == "early"
    summary.loc[early, "recipe"] = EARLY.replace("lr=0.05", "lr=0.1")
    (row,) = claims.interpolation_rows(summary, SETTINGS)
    assert row["holds"] == "n/a" and row["reason"] == (
        "confounded: lr differs between the grid levels"
    )
    assert np.isfinite(row["value"])  # the numbers are still reported


def test_interpolation_row_needs_a_contrast_and_an_early_grid():
    summary = pairs_summary([1.0, 1.5, 2.0], "variant")
    summary["interpolating"] = True
    (row,) = claims.interpolation_rows(summary, SETTINGS)
    assert row["holds"] == "n/a" and row["reason"].startswith("no contrast")
    (row,) = claims.interpolation_rows(summary[summary["grid"] == "main"], SETTINGS)
    assert row["holds"] == "n/a" and "no grid of models stopped" in row["reason"]


def test_weight_decay_row_refuses_recipes_that_differ_in_more_than_the_decay():
    summary = pairs_summary([1.0, 1.5, 2.0], "weight_decay")
    summary.loc[summary["weight_decay"] == 0, "recipe"] = SGD.replace('"sgd"', '"adam"')
    row = claims.weight_decay_row(summary, SETTINGS)
    assert row["holds"] == "n/a" and "optimizer differs" in row["reason"]
    row = claims.weight_decay_row(summary[summary["weight_decay"] > 0], SETTINGS)
    assert row["holds"] == "n/a" and "with and without weight decay" in row["reason"]


def test_matched_rows_at_the_floor_are_na():
    summary = pairs_summary([0.0, 0.0, 0.0], "weight_decay").assign(n_clones=1.0)
    row = claims.weight_decay_row(summary, SETTINGS)
    assert row["holds"] == "n/a" and row["reason"].startswith("floor")


# ----------------------------------------------------------------------------------------------
# 4. The chunk-error gap
# ----------------------------------------------------------------------------------------------


def gap_tables(exponents, width=64, floor=0.005, scale=0.3):
    """A gap table with gap = scale · w^b_seed at every chunk size below W (and the full
    layer), error_∞ = 0.05, and the summary of those models."""
    rows, summary = [], []
    for seed, b in enumerate(exponents):
        name = f"m{seed}"
        summary.append(model(width, seed, 4) | {"model": name})
        for size in [*(2**k for k in range(int(math.log2(width)))), width]:
            gap = scale * size**b if size < width else 0.0
            rows.append(
                {
                    "model": name,
                    "seed": seed,
                    "width": width,
                    "layer_width": width,
                    "chunk_size": size,
                    "method": "head",
                    "error_infinity": 0.05,
                    "gap": gap,
                    "gap_floor": floor,
                }
            )
    ensembles = frame([{"width": 16, "members": 6, "ensemble_error": 0.05}])
    return {"summary": frame(summary), "gap": frame(rows), "ensembles": ensembles}


@pytest.mark.parametrize(
    "exponents, verdict",
    [
        ([-0.5, -0.45, -0.55], "yes"),
        ([0.3, 0.2, 0.25], "contradicted"),
        ([0.2, -0.2, 0.05], "inconclusive"),
    ],
)
def test_gap_row_is_the_log_log_slope_per_seed(exponents, verdict):
    row = claims.gap_row(gap_tables(exponents), SETTINGS)
    assert row["holds"] == verdict and row["direction"] == -1 and row["null"] == 0
    assert (row["value"], row["ci_low"], row["ci_high"]) == pytest.approx(t_estimate(exponents))


def test_gap_row_fits_every_point_with_the_floor_in_place_of_smaller_gaps():
    tables = gap_tables([-0.5, -0.5, -0.5], width=16, floor=0.02)
    gaps = np.array([0.4, 0.2, 0.01, -0.03])  # sizes 1, 2, 4, 8: the last two at the floor
    below = tables["gap"]["chunk_size"] < 16
    tables["gap"].loc[below, "gap"] = np.tile(gaps, 3)
    expected = slope(np.log2([1, 2, 4, 8]), np.log2(np.maximum(gaps, 0.02)))
    slopes = claims.gap_exponents(tables["gap"], ["m0", "m1", "m2"], "head")
    assert slopes["exponent"].to_numpy() == pytest.approx([expected] * 3)
    assert (slopes["n_at_floor"] == 2).all() and (slopes["n_sizes"] == 4).all()


def test_gap_row_without_error_infinity_or_at_the_floor_is_na():
    tables = gap_tables([-0.5, -0.4, -0.6])
    empty = tables | {
        "gap": tables["gap"].iloc[:0],
        "ensembles": tables["ensembles"].assign(members=2),
    }
    row = claims.gap_row(empty, SETTINGS)
    assert row["holds"] == "n/a" and "ensemble of ≥ 5 seeds" in row["reason"]
    assert "the largest has 2" in row["reason"]
    floored = tables["gap"].assign(gap=np.where(tables["gap"]["chunk_size"] == 1, 0.3, 0.001))
    row = claims.gap_row(tables | {"gap": floored}, SETTINGS)
    assert row["holds"] == "n/a" and row["reason"].startswith("floor")


# ----------------------------------------------------------------------------------------------
# 5. One wide net against an ensemble of clone-sized narrow nets
# ----------------------------------------------------------------------------------------------


def wide_tables(wide_errors, clone_size=16, members=6, member_width=16, ensemble_error=0.1):
    rows = [model(512, s, 512 / clone_size, test_error=e) for s, e in enumerate(wide_errors)]
    rows += [model(member_width, s, 1) for s in range(members)]
    ensembles = frame(
        [
            {"dataset": "toy", "arch": "mlp", "depth": 2, "weight_decay": 5e-4, "variant": None}
            | {"width": member_width, "members": k, "ensemble_error": ensemble_error + 0.1 / k}
            for k in (1, 2, 4)
        ]
        + [
            {"dataset": "toy", "arch": "mlp", "depth": 2, "weight_decay": 5e-4, "variant": None}
            | {"width": member_width, "members": members, "ensemble_error": ensemble_error}
        ]
    )
    return {"summary": frame(rows), "ensembles": ensembles}


@pytest.mark.parametrize(
    "wide_errors, verdict",
    [
        ([0.05, 0.06, 0.04, 0.05], "yes"),
        ([0.15, 0.16, 0.14, 0.15], "contradicted"),
        ([0.09, 0.11, 0.10, 0.12], "inconclusive"),
    ],
)
def test_wide_row_compares_each_wide_seed_with_error_infinity(wide_errors, verdict):
    row = claims.wide_row(wide_tables(wide_errors), SETTINGS)
    assert row["holds"] == verdict and row["direction"] == 1 and row["null"] == 0
    expected = t_estimate(0.1 - np.array(wide_errors))  # the 6-member ensemble's error
    assert (row["value"], row["ci_low"], row["ci_high"]) == pytest.approx(expected)
    assert "against 6 nets of width 16: error_∞ 0.100" in row["detail"]


def test_wide_row_needs_enough_members_of_at_least_clone_size_and_clones():
    errors = [0.05, 0.06, 0.04, 0.05]
    row = claims.wide_row(wide_tables(errors, members=2), SETTINGS)
    assert row["holds"] == "n/a" and "ensemble of ≥ 5 seeds" in row["reason"]
    # clones of 64 units: nets of 16 are narrower than a clone and would favour the wide net
    row = claims.wide_row(wide_tables(errors, clone_size=64), SETTINGS)
    assert row["holds"] == "n/a" and "no width in [w_c* = 64, 512)" in row["reason"]
    row = claims.wide_row(wide_tables(errors, clone_size=512), SETTINGS)
    assert row["holds"] == "n/a" and "no clones" in row["reason"]


def test_wide_row_refuses_members_trained_otherwise():
    tables = wide_tables([0.05, 0.06, 0.04, 0.05])
    summary = tables["summary"]
    summary.loc[summary["width"] == 16, "recipe"] = SGD.replace("lr=0.05", "lr=0.01")
    row = claims.wide_row(tables, SETTINGS)
    assert row["holds"] == "n/a" and "lr differs between the width levels" in row["reason"]


def test_headline_has_every_row_in_order_and_each_verdict_follows_from_its_numbers():
    from widthlab.stats import verdict_of_row

    tables = gap_tables([-0.5, -0.45, -0.55])
    tables |= {
        "summary": growth_summary([1.0, 0.9, 1.1]),
        "ensembles": wide_tables([0.05])["ensembles"],
    }
    table = claims.headline(tables, SETTINGS)
    assert list(table["claim"]) == [
        claims.GROWTH,
        claims.INTERPOLATION,
        claims.WEIGHT_DECAY,
        claims.GAP,
        claims.WIDE,
    ]
    for _, row in table.iterrows():
        assert verdict_of_row(row) == row["holds"]
        assert row["holds"] != "n/a" or row["reason"]
        assert row["holds"] == "n/a" or row["n"] >= 3
