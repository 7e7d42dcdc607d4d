"""The similarity stage's headline rows on hand-made summary tables whose answer is known: one
value per seed, the one rule, recipes that confound a comparison, robustness at the declared
block thresholds."""

import numpy as np
import pandas as pd
import pytest

from widthlab.grid import DataSpec, ModelSpec
from widthlab.headline import HEADLINE_COLUMNS
from widthlab.similarity import claims
from widthlab.similarity import summary as S
from widthlab.stats import verdict_of_row

DIGITS = DataSpec("digits")
SGD, ADAM = 'optimizer="sgd"', 'optimizer="adam"'


def summary_rows(fractions_by_seed, depth=10, n=None, pc1=None, cross=None):
    """Hand-made summary rows: block_fraction per width (16, 32, 64, 128) for each seed."""
    rows = []
    for seed, fractions in fractions_by_seed.items():
        for width, fraction in zip((16, 32, 64, 128), fractions, strict=False):
            spec = ModelSpec(DIGITS, "mlp", width, depth, train_size=n, seed=seed)
            rows.append(
                {
                    **spec.columns(),
                    "estimator": "debiased",
                    "n_layers": depth,
                    "n_blocks": int(fraction > 0),
                    "block_fraction": fraction,
                    "pc1_share_in_blocks": np.nan if pc1 is None else pc1[0] + 0.01 * seed,
                    "pc1_share_outside": np.nan if pc1 is None else pc1[1],
                    "cross_seed_cka_in_blocks": np.nan if cross is None else cross[0],
                    "cross_seed_cka_outside": np.nan if cross is None else cross[1] + 0.01 * seed,
                }
            )
    return pd.DataFrame(rows)


def no_errors():
    return S.agreement_table({}, []), S.class_difference_table({}, [])


def headline(summary, alternatives=(), agreement=None, recipes=None):
    summaries = {0.9: summary, **{t: s for t, s in alternatives}}
    agreement_table, classes = no_errors()
    if agreement is not None:
        agreement_table = agreement
    return claims.headline(summaries, agreement_table, classes, "debiased", 3, 0.05, recipes)


def row(table, text):
    matches = table[table["claim"].str.contains(text, regex=False)]
    assert len(matches) == 1, text
    return matches.iloc[0]


RISING = {
    0: [0.0, 0.3, 0.6, 0.9],  # slope 0.30 per doubling
    1: [0.1, 0.38, 0.66, 0.94],  # 0.28
    2: [0.05, 0.34, 0.63, 0.92],  # 0.29
}


def test_every_row_re_derives_from_its_own_numbers():
    table = headline(summary_rows(RISING, pc1=(0.7, 0.4), cross=(0.2, 0.8)))
    assert list(table.columns) == HEADLINE_COLUMNS
    for _, r in table.iterrows():
        assert r["holds"] == verdict_of_row(r)
        assert r["holds"] == "n/a" or (r["n"] >= 3 and np.isfinite(r["ci_low"]))
        assert r["holds"] != "n/a" or r["reason"]


@pytest.mark.parametrize(
    ("fractions", "verdict", "slope"),
    [
        (RISING, "yes", 0.29),
        ({s: v[::-1] for s, v in RISING.items()}, "contradicted", -0.29),
        # slopes 0.3, 0.28, −0.263 (OLS of 0.9, 0.6, 0.4, 0.09): the interval spans 0
        ({**RISING, 2: [0.9, 0.6, 0.4, 0.09]}, "inconclusive", (0.3 + 0.28 - 0.263) / 3),
        ({0: RISING[0], 1: RISING[1]}, "n/a", 0.29),  # two seeds are too few
    ],
)
def test_width_row_is_the_one_rule_over_one_slope_per_seed(fractions, verdict, slope):
    r = row(headline(summary_rows(fractions)), "Wider networks")
    assert r["holds"] == verdict and r["value"] == pytest.approx(slope, abs=1e-9)
    assert r["n"] == len(fractions) and r["unit"] == "seeds"


def test_series_of_one_seed_count_once():
    # the same seed's width series at two training-set sizes: one value per seed, not two
    both = pd.concat([summary_rows(RISING), summary_rows(RISING, n=200)])
    r = row(headline(both), "Wider networks")
    assert r["n"] == 3


def test_depth_row_contrasts_depths_inside_one_recipe_only():
    shallow = summary_rows({s: [0.0, 0.1, 0.1, 0.2] for s in range(3)}, depth=4)
    deep = summary_rows({s: [0.3 + 0.01 * s, 0.5, 0.6, 0.7] for s in range(3)}, depth=10)
    both = pd.concat([shallow, deep])
    one_recipe = {m: SGD for m in both["model"]}
    r = row(headline(both, recipes=one_recipe), "Deeper networks")
    assert r["holds"] == "yes" and r["n"] == 3
    # the depth-4 nets trained with SGD and the depth-10 nets with Adam: confounded
    mixed = {
        m: (SGD if d == 4 else ADAM) for m, d in zip(both["model"], both["depth"], strict=True)
    }
    r = row(headline(both, recipes=mixed), "Deeper networks")
    assert r["holds"] == "n/a" and r["reason"].startswith("confounded: optimizer differs")


def test_depth_row_says_when_the_shallow_nets_are_too_shallow_for_a_block():
    # depth 2 against depth 4 under one recipe: only the depth-4 nets can hold a 3-layer block
    shallow = summary_rows({s: [0.0, 0.0, 0.0, 0.0] for s in range(3)}, depth=2)
    deep = summary_rows({s: [0.3, 0.5, 0.6, 0.7] for s in range(3)}, depth=4)
    r = row(headline(pd.concat([shallow, deep])), "Deeper networks")
    assert r["holds"] == "n/a"
    assert r["reason"] == (
        "no series of models that differ only in depth among those with at least 3 layers "
        "(the least block)"
    )
    r = row(headline(deep), "Deeper networks")  # one depth: no series at all
    assert r["reason"] == "no series of models that differ only in depth"


def test_less_data_row_pairs_models_equal_in_all_else():
    small = summary_rows({0: [0.6, 0.8], 1: [0.5, 0.7], 2: [0.55, 0.75]}, n=200)
    full = summary_rows({0: [0.2, 0.3], 1: [0.1, 0.3], 2: [0.15, 0.35]})
    r = row(headline(pd.concat([small, full])), "less training data")
    assert r["value"] == pytest.approx(np.mean([0.45, 0.4, 0.4]))  # per seed: mean of 2 widths
    assert r["holds"] == "yes" and r["n"] == 3


def test_pc1_and_cross_seed_rows():
    table = headline(summary_rows(RISING, pc1=(0.7, 0.4), cross=(0.2, 0.8)))
    assert row(table, "first principal component explains")["holds"] == "yes"
    r = row(table, "dissimilar across seeds")
    assert r["value"] == pytest.approx(0.6 + 0.01) and r["holds"] == "yes"


def test_removing_pc1_must_leave_less_than_half_of_the_block():
    base = summary_rows(RISING)
    for after, verdict in ((0.2, "yes"), (0.8, "contradicted")):
        removed = base.assign(
            estimator="debiased_pc1_removed", block_fraction=base["block_fraction"] * after
        )
        jitter = removed["seed"] * 0.01
        removed["block_fraction"] = removed["block_fraction"] * (1 + jitter)
        r = row(headline(pd.concat([base, removed])), "Removing the first principal")
        assert r["null"] == 0.5 and r["direction"] == -1 and r["holds"] == verdict


def test_a_verdict_that_changes_at_a_declared_block_threshold_is_not_robust():
    flat = summary_rows({s: [0.5, 0.5, 0.5, 0.5 + 0.01 * s] for s in range(3)})
    r = row(headline(summary_rows(RISING), alternatives=[(0.95, flat)]), "Wider networks")
    assert r["holds"] == "yes" and r["robust"] == "no" and "alternative" in r["detail"]


def mids(width, depth):
    return [ModelSpec(DIGITS, "mlp", width, depth, seed=s).id for s in range(3)]


def agreement_rows(wide, deep, gaps):
    rows = []
    for i in range(3):
        j = (i + 1) % 3
        rows += [
            {"kind": "seeds", "model_a": wide[i], "model_b": wide[j], "agreement": 0.96},
            {"kind": "seeds", "model_a": deep[i], "model_b": deep[j], "agreement": 0.90},
        ]
        rows.append(
            {"kind": "wide_vs_deep", "model_a": wide[i], "model_b": deep[i], "agreement": gaps[i]}
        )
    return pd.DataFrame(rows)


def test_error_row_compares_each_pair_with_its_seed_baseline_within_one_recipe():
    wide, deep = mids(64, 2), mids(16, 4)
    agreement = agreement_rows(wide, deep, [0.85, 0.86, 0.84])
    table = headline(summary_rows(RISING), agreement=agreement)
    r = row(table, "make different errors")
    # baseline of each pair: the mean seed-pair agreement of its two architectures = 0.93
    assert r["value"] == pytest.approx(0.93 - 0.85) and r["n"] == 3 and r["holds"] == "yes"
    recipes = {**{m: SGD for m in wide}, **{m: ADAM for m in deep}}
    r = row(headline(summary_rows(RISING), agreement=agreement, recipes=recipes), "different err")
    assert r["holds"] == "n/a" and r["reason"].startswith("confounded: optimizer")


def test_per_class_row_reports_its_tests_without_a_seed_verdict():
    r = row(headline(summary_rows(RISING)), "per-class accuracy")
    assert r["holds"] == "n/a" and r["reason"]
