"""The units stage's headline rows (torch-free). Every verdict comes from
:func:`widthlab.headline.claim`, i.e. the one rule of :mod:`widthlab.stats`: yes when the 95 %
interval over training seeds excludes the null on the claimed side, contradicted when it
excludes it on the other side, inconclusive when it contains it, n/a (with a reason) below
three seeds or for a confounded comparison.

The unit of replication is the training seed. A seed's width series (one per depth, weight
decay, … of the grid) each give one statistic, and the series of one seed are averaged before
the interval is taken (:func:`widthlab.stats.per_seed`), so no seed counts twice. The growth
statistic g is averaged on its log₂ scale (g = 2^slope): the interval is a t-interval of the
per-seed slopes, mapped through 2^·. Rows that rest on the prunability are recomputed at every
declared alternative threshold (``threshold_alternatives``) and are robust only if none
changes the verdict. ``docs/stages/units.md`` states each claim with its rule.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from widthlab import stats
from widthlab.headline import claim, headline_table, not_measured
from widthlab.units.ablation import prunability_table
from widthlab.units.counts import unit_counts
from widthlab.units.settings import ALL, UnitsSettings
from widthlab.units.summary import factor_axes, model_columns, series_axes

PAPER = "Casper et al. 2021"
RISES = "The fraction of prunable units rises with width."
GROWTH_CLAIMS = (  # (quantity, direction against g = 2, the claim as the paper states it)
    (
        "prunable",
        1,
        "Prunable units proliferate with width: their number grows faster than the width (g > 2).",
    ),
    (
        "redundant",
        1,
        "Redundant units proliferate with width: their number grows faster than the width (g > 2).",
    ),
    (
        "non_redundant",
        -1,
        "Wider networks are not really that wide: the non-frivolous (non-redundant) units grow "
        "slower than the width (g < 2).",
    ),
)
FACTOR = "Training factors shift the split between prunable and redundant units ({axis})."
SHARE = "prunable / (prunable + redundant)"


def network_at(
    layers: pd.DataFrame, curves: pd.DataFrame, threshold: float, rule: str
) -> pd.DataFrame:
    """The whole-network row of every model with its prunability read at ``threshold`` from the
    all-layer ablation curve, and its unit counts recomputed from the per-layer redundancy
    (each layer loses the same fraction of units, as in :func:`widthlab.units.counts.
    per_model_table`)."""
    scope_all = curves[curves["scope"] == ALL]
    rows = []
    for model, taps in layers[layers["layer"] != ALL].groupby("model", sort=True):
        curve = scope_all[scope_all["model"] == model]
        p = float(prunability_table(curve, threshold)["prunability"].iloc[0])
        counts = [
            unit_counts(u, p, c, k, rule)
            for u, c, k in zip(taps["units"], taps["compressibility"], taps["n_pcs"], strict=True)
        ]
        row = taps.iloc[0][model_columns()].to_dict()
        row.update(layer=ALL, units=float(taps["units"].sum()), prunability=p)
        row.update({q: float(sum(c[q] for c in counts)) for q in counts[0]})
        rows.append(row)
    return with_shares(pd.DataFrame(rows))


def with_shares(net: pd.DataFrame) -> pd.DataFrame:
    """``prunable_share`` = prunable / (prunable + redundant), NaN for a model with neither."""
    net = net.copy()
    frivolous = net["prunable"] + net["redundant"]
    net["prunable_share"] = (net["prunable"] / frivolous.where(frivolous > 0)).astype(float)
    return net


def series_statistic(net: pd.DataFrame, statistic) -> pd.DataFrame:
    """``statistic(series rows)`` of every (series, seed): one value per width series."""
    keys = [*series_axes(), "seed"]
    rows = [
        {**dict(zip(keys, key, strict=True)), "value": float(statistic(grp))}
        for key, grp in net.groupby(keys, dropna=False, sort=True)
    ]
    return pd.DataFrame(rows, columns=[*keys, "value"])


def _slope(column: str):
    return lambda grp: stats.ols_slope(np.log2(grp["width"].astype(float)), grp[column])


def _log2_growth(quantity: str):
    return lambda grp: stats.log2_growth_slope(grp["width"], grp[quantity])


def _seeds(per_series: pd.DataFrame, transform=None) -> stats.SeedValues:
    return stats.SeedValues(stats.per_seed(per_series, "value"), transform=transform)


def _exp2(slope: float) -> float:
    return 2.0**slope


def _widths(net: pd.DataFrame) -> str:
    return f"W = {int(net['width'].min())}…{int(net['width'].max())}"


# ----------------------------------------------------------------------------------------------
# The rows
# ----------------------------------------------------------------------------------------------


def rises_row(nets: Mapping[float, pd.DataFrame], primary: float) -> dict:
    quantity = "slope of the prunable fraction (all hidden layers ablated) per width doubling"
    net = nets[primary]
    if net["width"].nunique() < 2:
        return not_measured(PAPER, RISES, quantity, "fewer than two widths")
    evidence = {t: _seeds(series_statistic(n, _slope("prunability"))) for t, n in nets.items()}
    means = net.groupby("width")["prunability"].mean()
    detail = (
        f"prunable fraction {means.iloc[0]:.2f} at W={int(means.index[0])} → "
        f"{means.iloc[-1]:.2f} at W={int(means.index[-1])} (mean over models); thresholds "
        f"{', '.join(f'{t:g}' for t in nets)} declared."
    )
    return claim(
        PAPER,
        RISES,
        quantity,
        "least-squares slope on log2 width per width series; series averaged per seed; "
        "t-interval over seeds",
        evidence[primary],
        null=0.0,
        direction=1,
        detail=detail,
        alternatives=[e for t, e in evidence.items() if t != primary],
    )


def growth_row(
    nets: Mapping[float, pd.DataFrame], primary: float, quantity: str, direction: int, text: str
) -> dict:
    what = f"growth statistic g of {quantity.replace('_', '-')} units (whole network)"
    net = nets[primary]
    if net["width"].nunique() < 2:
        return not_measured(PAPER, text, what, "fewer than two widths")
    evidence = {
        t: _seeds(series_statistic(n, _log2_growth(quantity)), _exp2) for t, n in nets.items()
    }
    counts = net.groupby("width")[quantity].mean()
    detail = (
        f"{quantity.replace('_', '-')} units by width ({_widths(net)}): "
        + ", ".join(f"{int(w)}: {c:.1f}" for w, c in counts.items())
        + " (mean over models); g = 2 grows like the width."
    )
    return claim(
        PAPER,
        text,
        what,
        "g = 2^slope of log2 count on log2 width per width series (a geometric mean of the "
        "doubling ratios); slopes averaged per seed; t-interval over seeds, mapped by 2^x",
        evidence[primary],
        null=2.0,
        direction=direction,
        detail=detail,
        alternatives=[e for t, e in evidence.items() if t != primary],
    )


def matched_pairs(net: pd.DataFrame, axis: str, level, baseline) -> pd.DataFrame:
    """Pairs of models at ``level`` and ``baseline`` of ``axis`` that agree on every other model
    column (width and seed included), with ``value`` = the difference of their prunable share
    (level − baseline) and both models' ids."""
    keys = [c for c in model_columns() if c not in ("model", axis)]

    def at(value) -> pd.DataFrame:
        rows = net[axis].isna() if value is None else net[axis] == value
        return net[rows][[*keys, "model", "prunable_share"]]

    pairs = at(level).merge(at(baseline), on=keys, suffixes=("", "_base"))
    pairs["value"] = pairs["prunable_share"] - pairs["prunable_share_base"]
    return pairs


def _levels(net: pd.DataFrame, axis: str) -> list:
    missing = net[axis].isna()
    return ([None] if missing.any() else []) + sorted(net.loc[~missing, axis].unique())


def _level_text(axis: str, value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "train size all" if axis == "train_size" else f"no {axis.replace('_', ' ')}"
    return f"{axis.replace('_', ' ')} {value:g}" if isinstance(value, float) else f"{axis} {value}"


def confounded(pairs: pd.DataFrame, recipes: Mapping[str, str] | None) -> str | None:
    """Why contrasting the pairs is not a clean comparison: their models' training recipes
    differ in something besides the named factor."""
    if not recipes:
        return None
    differing = pairs[
        [
            recipes.get(a) != recipes.get(b)
            for a, b in zip(pairs["model"], pairs["model_base"], strict=True)
        ]
    ]
    if differing.empty:
        return None
    from widthlab.recipe import recipe_differences

    keys = recipe_differences([recipes[m] for m in (*differing["model"], *differing["model_base"])])
    return f"confounded: {', '.join(keys) or 'recipe'} differs between the compared models"


def factor_rows(
    nets: Mapping[float, pd.DataFrame], primary: float, axis: str, recipes=None
) -> list[dict]:
    text = FACTOR.format(axis=axis.replace("_", " "))
    quantity = f"change of the prunable share of frivolous units, {SHARE}"
    net = nets[primary]
    levels = _levels(net, axis)
    if len(levels) < 2:
        return [not_measured(PAPER, text, quantity, f"the grid has a single {axis} level")]
    rows = []
    for level in levels[1:]:
        pairs = {t: matched_pairs(n, axis, level, levels[0]) for t, n in nets.items()}
        evidence = {t: _seeds(p) for t, p in pairs.items()}
        main = pairs[primary]
        compared = f"{_level_text(axis, level)} vs {_level_text(axis, levels[0])}"
        detail = (
            f"{compared} over {len(main)} pairs matched on width, seed and every other axis: "
            f"share {main['prunable_share_base'].mean():.2f} → {main['prunable_share'].mean():.2f}."
        )
        rows.append(
            claim(
                PAPER,
                text,
                f"{quantity}: {compared}",
                "difference per matched pair, pairs averaged per seed; t-interval over seeds "
                "(two-sided: the paper names no direction)",
                evidence[primary],
                null=0.0,
                direction=0,
                detail=detail,
                alternatives=[e for t, e in evidence.items() if t != primary],
                na_reason=confounded(main, recipes),
            )
        )
    return rows


def headline(
    tables: Mapping[str, pd.DataFrame],
    settings: UnitsSettings | None = None,
    recipes: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The stage's headline table from the summary's ``layers`` and ``curves`` tables: the
    prunable fraction rises with width; g of prunable, redundant (> 2) and non-redundant (< 2)
    units; per training factor the grid varies (weight decay always), the shift of the split."""
    settings = settings or UnitsSettings()
    layers, curves = tables["layers"], tables["curves"]
    primary = float(layers["threshold"].iloc[0])
    rule = str(layers["redundancy_rule"].iloc[0])
    net = with_shares(layers[layers["layer"] == ALL])
    nets = {primary: net}
    for threshold in settings.threshold_alternatives:
        if threshold != primary:
            nets[threshold] = network_at(layers, curves, threshold, rule)
    rows = [rises_row(nets, primary)]
    rows += [growth_row(nets, primary, q, d, text) for q, d, text in GROWTH_CLAIMS]
    for axis in factor_axes():
        if axis == "weight_decay" or net[axis].nunique(dropna=False) > 1:
            rows += factor_rows(nets, primary, axis, recipes)
    return headline_table(rows)
