"""Statistics every claim goes through: intervals over training seeds and the one verdict rule.

The unit of replication is the independently trained seed. A stage reduces its measurements to
**one value per seed** (averaging the seed's series first: two depths or two weight decays of one
seed are not two draws) and hands them to :class:`SeedValues` (a Student-t interval over seeds),
or hands a whole table to :class:`SeedBootstrap` when the statistic is not a mean of per-seed
values (a rank correlation across models, a fitted exponent): seeds are then resampled with
replacement, all of a seed's rows together, so nothing is counted twice.

:func:`decide` is the one verdict rule. A claim states a direction with respect to a null value:
``direction=+1`` "the quantity is above ``null``", ``-1`` "below", ``0`` "differs from". Then

- ``yes``: the interval excludes the null on the claimed side;
- ``contradicted``: it excludes the null on the other side;
- ``inconclusive``: it contains the null;
- ``n/a`` (with a reason): fewer than :data:`MIN_SEEDS` seeds, no finite interval, or a reason
  the stage gives (confounded comparison, ceiling or floor, not measured).

Every verdict can be re-derived from a headline row's ``value, ci_low, ci_high, null,
direction, n`` (:func:`verdict_of_row`). A verdict is ``robust`` when it survives leaving out
any one seed and every alternative threshold the stage declares.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

VERDICTS = ("yes", "contradicted", "inconclusive", "n/a")
MIN_SEEDS = 3  # below this no interval is trusted: t with 1 df has t = 12.7
LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 2000
NUMERICAL_TOLERANCE = 1e-9  # relative: differences below this are rounding, not evidence
BOOTSTRAP_SEED = 0  # fixed: the same tables give the same interval, run after run


# ----------------------------------------------------------------------------------------------
# Intervals
# ----------------------------------------------------------------------------------------------


def finite(values: Iterable[float]) -> np.ndarray:
    """The finite entries of ``values`` as float64."""
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, float)
    return array[np.isfinite(array)]


def t_interval(values: Iterable[float], level: float = LEVEL) -> tuple[float, float]:
    """Two-sided ``level`` Student-t interval for the mean of the finite ``values`` (NaN with
    fewer than two)."""
    values = finite(values)
    if len(values) < 2:
        return math.nan, math.nan
    half = scipy_stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1)
    half /= math.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


@dataclass(frozen=True)
class Estimate:
    """A value, its interval and ``n``, the number of independent units (seeds) behind it."""

    value: float
    ci_low: float
    ci_high: float
    n: int


NOTHING = Estimate(math.nan, math.nan, math.nan, 0)


class SeedValues:
    """One value per training seed; the estimate is their mean with a t-interval.

    ``transform`` (monotone increasing, e.g. ``lambda s: 2**s`` for a growth rate measured as a
    log₂ slope) maps the mean and both ends of the interval to the reported scale; the null of
    the claim is then given on that scale."""

    def __init__(
        self,
        values: Mapping[Hashable, float] | pd.Series,
        transform: Callable[[float], float] | None = None,
        level: float = LEVEL,
    ):
        series = pd.Series(values, dtype=float)
        self.values = series[np.isfinite(series.to_numpy())]
        if not self.values.index.is_unique:
            raise ValueError(
                "one value per seed: seeds "
                f"{sorted(set(self.values.index[self.values.index.duplicated()]))} appear twice"
            )
        self.transform = transform
        self.level = level

    @property
    def seeds(self) -> list:
        return list(self.values.index)

    def estimate(self, drop: Hashable | None = None) -> Estimate:
        values = self.values if drop is None else self.values.drop(drop)
        if not len(values):
            return NOTHING
        low, high = t_interval(values.to_numpy(), self.level)
        mean = float(values.mean())
        if self.transform is not None:
            mean, low, high = (
                self.transform(v) if np.isfinite(v) else math.nan for v in (mean, low, high)
            )
        return Estimate(float(mean), float(low), float(high), len(values))


class SeedBootstrap:
    """A statistic of a whole table (rows of several seeds) with a seed-level bootstrap
    percentile interval: resample the seeds with replacement, keep every row of a drawn seed
    (a seed drawn twice contributes its rows twice), recompute the statistic.

    ``statistic(frame) -> float`` must accept any subset of the seeds; resamples where it is
    not finite are discarded (and counted in :attr:`failed`)."""

    def __init__(
        self,
        frame: pd.DataFrame,
        statistic: Callable[[pd.DataFrame], float],
        seed: str = "seed",
        resamples: int = BOOTSTRAP_RESAMPLES,
        level: float = LEVEL,
        rng_seed: int = BOOTSTRAP_SEED,
    ):
        self.frame = frame
        self.statistic = statistic
        self.seed_column = seed
        self.resamples = resamples
        self.level = level
        self.rng_seed = rng_seed
        self.failed = 0

    @property
    def seeds(self) -> list:
        return sorted(self.frame[self.seed_column].dropna().unique().tolist())

    def estimate(self, drop: Hashable | None = None) -> Estimate:
        seeds = [s for s in self.seeds if s != drop]
        if not seeds:
            return NOTHING
        frame = self.frame[self.frame[self.seed_column].isin(seeds)]
        value = float(self.statistic(frame))
        if len(seeds) < 2 or not np.isfinite(value):
            return Estimate(value, math.nan, math.nan, len(seeds))
        column = frame[self.seed_column].to_numpy()
        rows = [np.flatnonzero(column == s) for s in seeds]
        rng = np.random.default_rng(self.rng_seed)
        draws = []
        for _ in range(self.resamples):
            picked = rng.choice(len(seeds), size=len(seeds), replace=True)
            sample = frame.iloc[np.concatenate([rows[i] for i in picked])]
            draws.append(float(self.statistic(sample.reset_index(drop=True))))
        draws = finite(draws)
        self.failed = self.resamples - len(draws)
        if len(draws) < self.resamples / 2:
            return Estimate(value, math.nan, math.nan, len(seeds))
        tail = 50 * (1 - self.level)
        low, high = np.percentile(draws, [tail, 100 - tail])
        return Estimate(value, float(low), float(high), len(seeds))


# ----------------------------------------------------------------------------------------------
# The verdict rule
# ----------------------------------------------------------------------------------------------


def decide(
    ci_low: float, ci_high: float, null: float, direction: int, n: int, min_n: int = MIN_SEEDS
) -> tuple[str, str]:
    """(verdict, reason): the one rule (module docstring). ``reason`` is empty unless n/a."""
    if direction not in (-1, 0, 1):
        raise ValueError(f"direction must be +1, -1 or 0, got {direction!r}")
    if n < min_n:
        return "n/a", f"too few seeds: n = {n} < {min_n}"
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "n/a", "no finite interval"
    # an interval that reaches the null up to rounding contains it: a count exactly ∝ W has
    # per-seed slopes 1 ± 1e-16, and that must not read as "faster than the width"
    tolerance = NUMERICAL_TOLERANCE * max(1.0, abs(null))
    above, below = ci_low > null + tolerance, ci_high < null - tolerance
    if direction == 0:
        return ("yes", "") if above or below else ("inconclusive", "")
    claimed, other = (above, below) if direction > 0 else (below, above)
    if claimed:
        return "yes", ""
    return ("contradicted", "") if other else ("inconclusive", "")


def verdict_of_row(row: Mapping) -> str:
    """Re-derive a headline row's verdict from its own numbers (n/a rows keep their reason)."""
    if row["holds"] == "n/a" and row.get("reason") and not row["reason"].startswith("too few"):
        return "n/a"
    return decide(row["ci_low"], row["ci_high"], row["null"], int(row["direction"]), row["n"])[0]


Evidence = SeedValues | SeedBootstrap


def judge(
    evidence: Evidence,
    null: float,
    direction: int,
    alternatives: Sequence[Evidence] = (),
    na_reason: str | None = None,
) -> dict:
    """Estimate, verdict, reason and robustness of a claim from its ``evidence``.

    ``alternatives``: the same claim measured under the stage's other declared thresholds
    (sensitivity); ``na_reason`` forces ``n/a`` (confounded, ceiling, …) while the numbers are
    still reported. ``robust``: ``yes`` when every leave-one-seed-out estimate and every
    alternative gives the same verdict, ``no`` otherwise (the detail names the first that
    differs), ``n/a`` for an n/a verdict."""
    est = evidence.estimate()
    holds, reason = decide(est.ci_low, est.ci_high, null, direction, est.n)
    if na_reason:
        holds, reason = "n/a", na_reason
    robust, why = "n/a", ""
    if holds != "n/a":
        robust = "yes"
        checks = [(f"without seed {s}", evidence.estimate(drop=s)) for s in evidence.seeds]
        checks += [(f"alternative {i + 1}", alt.estimate()) for i, alt in enumerate(alternatives)]
        for label, other in checks:
            changed = decide(other.ci_low, other.ci_high, null, direction, other.n, min_n=2)[0]
            if changed != holds:
                robust, why = "no", f"{label}: {changed}"
                break
    return {
        "value": est.value,
        "ci_low": est.ci_low,
        "ci_high": est.ci_high,
        "n": est.n,
        "null": float(null),
        "direction": int(direction),
        "holds": holds,
        "reason": reason,
        "robust": robust,
        "robust_detail": why,
    }


# ----------------------------------------------------------------------------------------------
# Per-seed reductions, slopes, growth
# ----------------------------------------------------------------------------------------------


def per_seed(frame: pd.DataFrame, value: str, seed: str = "seed") -> pd.Series:
    """One value per seed: the mean of the seed's finite ``value`` entries (its series, pairs or
    models), indexed by seed in ascending order. Seeds with no finite value are left out."""
    if not len(frame):
        return pd.Series(dtype=float)
    values = frame[[seed, value]].astype({value: float})
    values = values[np.isfinite(values[value].to_numpy())]
    return values.groupby(seed, sort=True)[value].mean()


def ols_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """OLS slope of ``y`` on ``x`` over the pairs where both are finite (NaN with fewer than two
    distinct ``x``)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(np.unique(x)) < 2:
        return math.nan
    return float(np.polyfit(x, y, 1)[0])


def log2_growth_slope(widths: Sequence[float], counts: Sequence[float]) -> float:
    """Slope of log₂ count on log₂ width over the widths with a positive count (a count of 0
    has no logarithm; those widths are left out). 1 means ∝ width."""
    w, c = np.asarray(widths, dtype=float), np.asarray(counts, dtype=float)
    keep = np.isfinite(w) & np.isfinite(c) & (c > 0) & (w > 0)
    return ols_slope(np.log2(w[keep]), np.log2(c[keep]))


def growth_g(widths: Sequence[float], counts: Sequence[float]) -> float:
    """Casper et al.'s growth statistic as a geometric mean: the count's factor per doubling of
    width, 2^(slope of log₂ count on log₂ width). A count ∝ W gives exactly 2."""
    return 2.0 ** log2_growth_slope(widths, counts)


def rank_correlation(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's ρ over the pairs where both are finite (NaN with fewer than three or a
    constant side)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return math.nan
    return float(scipy_stats.spearmanr(a[ok], b[ok]).statistic)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1…n, ties sharing their mean rank (scipy's ``rankdata``): by pairwise comparison
    for the few rows of a group (a bootstrap calls this thousands of times), else scipy."""
    if len(values) > 64:
        return scipy_stats.rankdata(values)
    below = (values[None, :] < values[:, None]).sum(axis=1)
    equal = (values[None, :] == values[:, None]).sum(axis=1)
    return below + (equal + 1) / 2.0


def within_group_rank_correlation(frame: pd.DataFrame, a: str, b: str, group: str) -> float:
    """Spearman's ρ of ``a`` and ``b`` after ranking within each ``group`` (e.g. width): the
    association that remains once the group's common effect on both is removed. Ranks are
    centred within their group (ties share their mean rank) and pooled; groups with fewer than
    two rows carry no information and are left out."""
    x, y = frame[a].to_numpy(dtype=float), frame[b].to_numpy(dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    codes = pd.factorize(frame[group])[0][ok]
    x, y = x[ok], y[ok]
    sum_xy = sum_xx = sum_yy = 0.0
    for code in np.unique(codes):
        members = codes == code
        if members.sum() < 2:
            continue
        rx, ry = average_ranks(x[members]), average_ranks(y[members])
        rx, ry = rx - rx.mean(), ry - ry.mean()
        sum_xy += float(rx @ ry)
        sum_xx += float(rx @ rx)
        sum_yy += float(ry @ ry)
    denominator = math.sqrt(sum_xx * sum_yy)
    return sum_xy / denominator if denominator > 0 else math.nan


# ----------------------------------------------------------------------------------------------
# Matched comparisons
# ----------------------------------------------------------------------------------------------


def confounder(frame: pd.DataFrame, factor: str, held: Sequence[str]) -> str | None:
    """Why a comparison across the levels of ``factor`` is not a clean one, or None.

    The compared levels must not differ in any column of ``held`` (e.g. ``recipe``, the training
    recipe key of :func:`widthlab.recipe.recipe_key`): if the set of ``held`` values seen at one
    level differs from another level's, the comparison mixes ``factor`` with that column.
    For ``recipe`` the reason names the settings that differ."""
    from widthlab.recipe import recipe_differences

    if factor not in frame or frame[factor].nunique(dropna=False) < 2:
        return None
    for column in held:
        if column not in frame:
            continue
        seen = frame.groupby(factor, dropna=False)[column].agg(
            lambda s: tuple(sorted(s.dropna().astype(str).unique()))
        )
        if seen.nunique() > 1:
            if column == "recipe":
                keys = recipe_differences([r for level in seen for r in level])
                what = ", ".join(keys) if keys else "recipe"
                return f"confounded: {what} differs between the {factor} levels"
            return f"confounded: {column} differs between the {factor} levels"
    return None
