"""The one verdict rule and the seed-level statistics, against closed forms and slow references."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from widthlab import stats
from widthlab.headline import HEADLINE_COLUMNS, claim, headline_table, not_measured
from widthlab.recipe import parse_recipe, recipe_differences, recipe_key


def test_t_interval_is_scipys():
    values = [0.3, 0.1, 0.45, 0.2, 0.33]
    expected = scipy_stats.t.interval(
        0.95, len(values) - 1, loc=np.mean(values), scale=scipy_stats.sem(values)
    )
    assert stats.t_interval(values) == pytest.approx(expected, abs=1e-12)
    assert all(math.isnan(v) for v in stats.t_interval([1.0]))


@pytest.mark.parametrize(
    "low, high, null, direction, expected",
    [
        (0.1, 0.5, 0.0, 1, "yes"),
        (-3.93, 5.14, 0.0, 1, "inconclusive"),  # the NTK row: a CI spanning zero
        (-0.5, -0.1, 0.0, 1, "contradicted"),
        (-0.5, -0.1, 0.0, -1, "yes"),
        (0.1, 0.5, 0.0, -1, "contradicted"),
        (1.2, 1.9, 2.0, -1, "yes"),  # g below 2: grows slower than width
        (-0.2, 0.3, 0.0, 0, "inconclusive"),
        (-0.5, -0.2, 0.0, 0, "yes"),
        (0.0, 0.5, 0.0, 1, "inconclusive"),  # touching the null is not excluding it
    ],
)
def test_decide(low, high, null, direction, expected):
    assert stats.decide(low, high, null, direction, n=5) == (expected, "")


def test_decide_needs_three_seeds_and_a_finite_interval():
    assert stats.decide(0.1, 0.5, 0.0, 1, n=2) == ("n/a", "too few seeds: n = 2 < 3")
    # the atlas row: one fit gives no interval at all
    assert stats.decide(math.nan, math.nan, 0.0, 1, n=1)[0] == "n/a"
    assert stats.decide(math.nan, math.nan, 0.0, 1, n=4) == ("n/a", "no finite interval")
    with pytest.raises(ValueError, match="direction"):
        stats.decide(0.1, 0.2, 0.0, 2, n=5)


def test_seed_values_refuse_a_seed_counted_twice():
    with pytest.raises(ValueError, match="seeds \\[1\\] appear twice"):
        stats.SeedValues(pd.Series([0.1, 0.2, 0.3], index=[0, 1, 1]))


def test_per_seed_averages_a_seeds_series_before_the_interval():
    # two series (depths) of each of three seeds: the interval is over 3 seed means, not 6 values
    frame = pd.DataFrame(
        {"seed": [0, 0, 1, 1, 2, 2], "depth": [2, 4] * 3, "slope": [1.0, 3.0, 2.0, 2.0, 0.0, 4.0]}
    )
    per_seed = stats.per_seed(frame, "slope")
    assert per_seed.to_dict() == {0: 2.0, 1: 2.0, 2: 2.0}
    est = stats.SeedValues(per_seed).estimate()
    assert (est.value, est.n) == (2.0, 3) and est.ci_low == est.ci_high == 2.0


def test_growth_g_is_two_for_a_count_proportional_to_width():
    widths = [16, 32, 64, 128, 256, 512]
    assert stats.growth_g(widths, [3 * w for w in widths]) == pytest.approx(2.0, abs=1e-12)
    assert stats.growth_g(widths, [w**1.5 for w in widths]) == pytest.approx(2**1.5)
    # the counter-example: ∝ W with multiplicative noise; the arithmetic mean of the
    # doubling ratios is biased above 2, the geometric statistic is not (on average)
    rng = np.random.default_rng(0)
    arithmetic, geometric = [], []
    for _ in range(400):
        counts = np.asarray(widths) * np.exp(rng.normal(0, 0.35, len(widths)))
        arithmetic.append(np.mean(counts[1:] / counts[:-1]))
        geometric.append(math.log2(stats.growth_g(widths, counts)))
    assert np.mean(arithmetic) > 2.1
    assert 2 ** np.mean(geometric) == pytest.approx(2.0, abs=0.03)


def test_growth_g_leaves_out_zero_counts():
    assert stats.growth_g([16, 32, 64, 128], [0, 4, 8, 16]) == pytest.approx(2.0)
    assert math.isnan(stats.growth_g([16, 32], [0, 4]))


def _judge(values, null=0.0, direction=1, **kwargs):
    return stats.judge(stats.SeedValues(values), null, direction, **kwargs)


def test_judge_reports_robustness_leaving_out_each_seed():
    steady = _judge({s: 1.0 + 0.1 * s for s in range(6)})
    assert (steady["holds"], steady["robust"]) == ("yes", "yes")
    # one seed carries the effect: without it the interval reaches 0
    fragile = _judge({0: 0.02, 1: 0.03, 2: 0.02, 3: 0.025, 4: 0.9})
    assert fragile["holds"] in ("yes", "inconclusive")
    fragile = _judge({0: 0.20, 1: 0.21, 2: 0.19, 3: 0.22, 4: -0.15})
    assert fragile["holds"] == "inconclusive" and fragile["robust"] == "no"
    assert fragile["robust_detail"].startswith("without seed 4")


def test_judge_alternative_thresholds_enter_robustness():
    main = stats.SeedValues({s: 1.0 + 0.1 * s for s in range(5)})
    other = stats.SeedValues({s: -1.0 + 0.1 * s for s in range(5)})
    judged = stats.judge(main, 0.0, 1, alternatives=[other])
    assert judged["holds"] == "yes" and judged["robust"] == "no"
    assert judged["robust_detail"] == "alternative 1: contradicted"


def test_judge_na_reason_keeps_the_numbers():
    judged = _judge({0: 1.0, 1: 2.0, 2: 3.0}, na_reason="confounded: optimizer differs")
    assert judged["holds"] == "n/a" and judged["reason"] == "confounded: optimizer differs"
    assert judged["value"] == 2.0 and judged["robust"] == "n/a"


def test_transformed_estimate_maps_the_interval():
    slopes = {0: 0.9, 1: 1.1, 2: 1.0, 3: 1.05}
    est = stats.SeedValues(slopes, transform=lambda s: 2.0**s).estimate()
    low, high = stats.t_interval(list(slopes.values()))
    assert est.value == pytest.approx(2.0 ** np.mean(list(slopes.values())))
    assert (est.ci_low, est.ci_high) == pytest.approx((2.0**low, 2.0**high))


def _slow_seed_bootstrap(frame, statistic, resamples, rng_seed, level=0.95):
    """Reference: draw seeds with the same generator, rebuild each sample row by row."""
    seeds = sorted(frame["seed"].unique())
    rng = np.random.default_rng(rng_seed)
    draws = []
    for _ in range(resamples):
        picked = rng.choice(len(seeds), size=len(seeds), replace=True)
        rows = [row for i in picked for _, row in frame[frame.seed == seeds[i]].iterrows()]
        draws.append(statistic(pd.DataFrame(rows)))
    tail = 50 * (1 - level)
    return np.percentile(draws, [tail, 100 - tail])


def test_seed_bootstrap_resamples_whole_seeds():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "seed": np.repeat(np.arange(5), 4),
            "width": np.tile([16, 32, 64, 128], 5),
        }
    )
    frame["y"] = np.log2(frame["width"]) + rng.normal(0, 0.5, len(frame))

    def statistic(f):
        return stats.rank_correlation(f["width"], f["y"])

    boot = stats.SeedBootstrap(frame, statistic, resamples=200, rng_seed=7)
    est = boot.estimate()
    assert est.n == 5 and est.value == pytest.approx(statistic(frame))
    reference = _slow_seed_bootstrap(frame, statistic, 200, 7)
    assert (est.ci_low, est.ci_high) == pytest.approx(tuple(reference))
    # reproducible
    assert stats.SeedBootstrap(frame, statistic, resamples=200, rng_seed=7).estimate() == est


def test_rank_correlations():
    a = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert stats.rank_correlation(a, [2.0, 4.0, 5.0, 4.5, 10.0]) == pytest.approx(
        scipy_stats.spearmanr(a, [2.0, 4.0, 5.0, 4.5, 10.0]).statistic
    )
    assert math.isnan(stats.rank_correlation([1, 2], [3, 4]))
    # width drives both: pooled ρ is high, within width there is no association left
    frame = pd.DataFrame(
        {
            "width": [16, 16, 16, 64, 64, 64, 256, 256, 256],
            "clones": [1, 2, 3, 11, 12, 13, 21, 22, 23],
            "transfer": [0.5, 0.3, 0.4, 0.8, 0.6, 0.7, 0.95, 0.9, 0.85],
        }
    )
    assert stats.rank_correlation(frame["clones"], frame["transfer"]) > 0.8
    within = stats.within_group_rank_correlation(frame, "clones", "transfer", "width")
    # reference: Pearson correlation of within-width centred ranks, written out
    ra = frame.groupby("width")["clones"].rank()
    rb = frame.groupby("width")["transfer"].rank()
    ra, rb = (
        ra - ra.groupby(frame.width).transform("mean"),
        rb - rb.groupby(frame.width).transform("mean"),
    )
    assert within == pytest.approx(float((ra * rb).sum() / np.sqrt((ra**2).sum() * (rb**2).sum())))
    assert within == pytest.approx(-2 / 3)  # (−1 − 1 − 2) / 6 over the three widths


def test_recipe_key_round_trip_and_differences():
    sgd = {"optimizer": "sgd", "lr": 0.05, "batch_size": 128, "device": "cpu", "compile": False}
    adam = {**sgd, "optimizer": "adam", "lr": 0.001, "device": "cuda"}
    key = recipe_key(sgd)
    assert key == 'batch_size=128;lr=0.05;optimizer="sgd"'
    assert parse_recipe(key) == {"batch_size": 128, "lr": 0.05, "optimizer": "sgd"}
    assert recipe_key({**sgd, "device": "cuda"}) == key  # execution-only settings don't count
    assert recipe_differences([key, recipe_key(adam), key]) == ["lr", "optimizer"]


def test_confounder_names_the_setting_that_differs():
    sgd, adam = recipe_key({"optimizer": "sgd", "lr": 0.05}), recipe_key({"optimizer": "adam"})
    frame = pd.DataFrame({"depth": [4, 4, 10, 10], "seed": [0, 1, 0, 1]})
    assert stats.confounder(frame.assign(recipe=[sgd, sgd, adam, adam]), "depth", ["recipe"]) == (
        "confounded: lr, optimizer differs between the depth levels"
    )
    assert stats.confounder(frame.assign(recipe=sgd), "depth", ["recipe"]) is None
    assert stats.confounder(
        frame.assign(recipe=sgd, grid=["a", "a", "b", "b"]),
        "depth",
        [
            "recipe",
            "grid",
        ],
    ) == ("confounded: grid differs between the depth levels")


def test_claim_rows_follow_the_contract_and_re_derive():
    rows = [
        claim("P", "c1", "q", "e", stats.SeedValues({0: 0.2, 1: 0.3, 2: 0.25}), 0.0, 1, "d"),
        claim("P", "c2", "q", "e", stats.SeedValues({0: -0.2, 1: 0.3}), 0.0, 1, "d"),
        claim("P", "c3", "q", "e", stats.SeedValues({0: 1.0, 1: 1.1, 2: 1.3}), 2.0, 1, "d"),
        not_measured("P", "c4", "q", "not measured: no transfer grid"),
    ]
    table = headline_table(rows)
    assert list(table.columns) == HEADLINE_COLUMNS
    assert table["holds"].tolist() == ["yes", "n/a", "contradicted", "n/a"]
    assert table["reason"].tolist()[1] == "too few seeds: n = 2 < 3"
    for _, row in table.iterrows():
        assert stats.verdict_of_row(row) == row["holds"]
        if row["holds"] != "n/a":
            assert row["reason"] == "" and np.isfinite([row["ci_low"], row["ci_high"]]).all()


def test_an_interval_at_the_null_up_to_rounding_contains_it():
    # per-seed log2 slopes of an exact ∝ W count differ from 1 only by rounding
    slopes = [1.0 + 2.2e-16, 1.0 + 4.4e-16, 1.0 + 2.2e-16]
    estimate = stats.SeedValues(dict(enumerate(slopes)), transform=lambda s: 2.0**s).estimate()
    assert stats.decide(estimate.ci_low, estimate.ci_high, 2.0, 1, estimate.n)[0] == "inconclusive"
    assert stats.decide(2.0 + 1e-6, 2.0 + 2e-6, 2.0, 1, 3)[0] == "yes"  # a real difference


def test_average_ranks_are_scipys_rankdata_ties_included():
    from scipy.stats import rankdata

    rng = np.random.default_rng(4)
    for n in (1, 2, 5, 9, 40, 100):
        values = rng.integers(0, 5, n).astype(float)  # many ties
        np.testing.assert_allclose(stats.average_ranks(values), rankdata(values))
