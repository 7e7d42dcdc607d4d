"""The units stage across models (torch-free): unit counts per model and layer, the growth
statistic g of each width series, prunability slopes and the effects of training factors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from widthlab import stats
from widthlab.stats import t_interval
from widthlab.units.settings import ALL, COUNT_QUANTITIES


def model_columns() -> list[str]:
    """The model columns every per-model table leads with (``ModelSpec.columns()`` keys), so that
    axes added to the grid flow through the summary without being listed here."""
    from widthlab.grid import DataSpec, ModelSpec

    return list(ModelSpec(DataSpec("digits"), "mlp", 1, 1).columns())


def series_axes() -> list[str]:
    """Model axes that define a width series: every model column except model, width and seed."""
    return [c for c in model_columns() if c not in ("model", "width", "seed")]


def _check_model_columns(table: pd.DataFrame, what: str) -> None:
    missing = [c for c in model_columns() if c not in table]
    if missing:
        raise ValueError(f"{what} lacks the model columns {missing}")


def growth_statistic(widths: Sequence[float], counts: Sequence[float]) -> float:
    """Casper et al.'s growth statistic g as a geometric mean: the count's factor per doubling of
    the width, ``2 ** slope`` of log₂ count on log₂ width (:func:`widthlab.stats.growth_g`). A count
    ∝ W gives exactly 2, a constant count 1. (The arithmetic mean of the doubling ratios is biased
    upward: noise around ∝ W gives g > 2.) Widths with a zero count have no logarithm and are left
    out; NaN when fewer than two widths are left.

    Raises ``ValueError`` unless widths and counts are 1-d of one length with ≥ 2 distinct widths.
    """
    w = np.asarray(widths, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    if w.shape != c.shape or w.ndim != 1:
        raise ValueError("widths and counts must be 1-d and of the same length")
    if len(np.unique(w)) < 2:
        raise ValueError(f"the growth statistic needs at least two widths, got {w.tolist()}")
    return float(stats.growth_g(w, c))


def summary_table(
    per_model_tables: Sequence[pd.DataFrame],
    specs: Sequence | None = None,
    quantities: Sequence[str] = COUNT_QUANTITIES,
) -> pd.DataFrame:
    """Long table of unit counts across the grid.

    One row per (model, layer, quantity): the model columns, ``layer``, ``quantity``, ``count``,
    ``fraction`` (count / units) and ``normalised`` (count / the same count of the widest model of
    its series: same :func:`series_axes`, same seed, same layer). ``specs`` (``ModelSpec``s
    aligned with the tables) supply the model columns when the tables do not carry them.
    """
    frames = []
    for i, table in enumerate(per_model_tables):
        table = table.copy()
        if specs is not None:
            for name, value in specs[i].columns().items():
                table[name] = value
        _check_model_columns(table, f"per-model table {i}")
        frames.append(table)
    if not frames:
        raise ValueError("no per-model tables to summarise")
    wide = pd.concat(frames, ignore_index=True)
    columns = model_columns()
    wide["layer_units"] = wide["units"]
    keep = [*columns, "layer", "layer_index", "layer_units", "prunability"]
    long = wide.melt(
        id_vars=keep, value_vars=list(quantities), var_name="quantity", value_name="count"
    )
    long = long.rename(columns={"layer_units": "units"})
    long["count"] = long["count"].astype(float)
    long["fraction"] = long["count"] / long["units"]
    series = [*series_axes(), "seed", "layer", "quantity"]
    widest = long.loc[long.groupby(series, dropna=False)["width"].idxmax(), [*series, "count"]]
    widest = widest.rename(columns={"count": "widest_count"})
    long = long.merge(widest, on=series, how="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        long["normalised"] = np.where(
            long["widest_count"] > 0, long["count"] / long["widest_count"], np.nan
        )
    return long.drop(columns="widest_count")


def seed_growth(summary: pd.DataFrame, layer: str | None = ALL) -> pd.DataFrame:
    """g of every (series, seed, layer, quantity) width series; ``layer=None`` for every layer.

    Columns: the :func:`series_axes`, ``seed``, ``layer``, ``quantity``, ``widths``, ``g``,
    ``flag`` (why g is NaN: fewer than two widths, or fewer than two with a non-zero count).
    """
    sub = summary if layer is None else summary[summary["layer"] == layer]
    keys = [*series_axes(), "seed", "layer", "quantity"]
    rows = []
    for key, grp in sub.groupby(keys, dropna=False, sort=True):
        try:
            g, flag = growth_statistic(grp["width"], grp["count"]), ""
        except ValueError as err:
            g, flag = float("nan"), str(err)
        if not flag and not np.isfinite(g):
            flag = "fewer than two non-zero counts in a series"
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "widths": ",".join(str(int(w)) for w in sorted(grp["width"].unique())),
                "g": g,
                "flag": flag,
            }
        )
    return pd.DataFrame(rows, columns=[*keys, "widths", "g", "flag"])


def growth_table(
    summary: pd.DataFrame, layer: str | None = ALL, level: float = 0.95
) -> pd.DataFrame:
    """g per (series, layer, quantity): the geometric mean over seeds of the per-seed g with a
    ``level`` t-interval taken on log2 g, and g of the seed-averaged counts (``g_of_mean``).
    ``layer=None`` for every layer. Series with fewer than two widths get NaN and a flag."""
    per_seed = seed_growth(summary, layer)
    sub = summary if layer is None else summary[summary["layer"] == layer]
    keys = [*series_axes(), "layer", "quantity"]
    rows = []
    for key, grp in per_seed.groupby(keys, dropna=False, sort=True):
        # g is a factor per doubling: average on its log2 scale (the geometric mean over seeds)
        logs = np.log2(grp["g"].to_numpy(dtype=np.float64))
        finite = logs[np.isfinite(logs)]
        mask = np.ones(len(sub), dtype=bool)
        for name, value in zip(keys, key, strict=True):
            column = sub[name]
            mask &= column.isna().to_numpy() if pd.isna(value) else (column == value).to_numpy()
        mean_counts = sub[mask].groupby("width")["count"].mean()
        try:
            g_of_mean = growth_statistic(mean_counts.index, mean_counts.to_numpy())
        except ValueError:
            g_of_mean = float("nan")
        low, high = t_interval(finite, level)
        flags = sorted({f for f in grp["flag"] if f})
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "widths": ",".join(sorted(set(grp["widths"]), key=len)),
                "n_seeds": int(grp["seed"].nunique()),
                "g": float(2.0 ** finite.mean()) if len(finite) else float("nan"),
                "g_sd_log2": float(finite.std(ddof=1)) if len(finite) > 1 else float("nan"),
                "g_ci_low": float(2.0**low) if np.isfinite(low) else float("nan"),
                "g_ci_high": float(2.0**high) if np.isfinite(high) else float("nan"),
                "g_of_mean": g_of_mean,
                "flag": "; ".join(flags),
            }
        )
    return pd.DataFrame(rows)


def network_rows(layers: pd.DataFrame) -> pd.DataFrame:
    """The ``layer == "all"`` rows of stacked per-model tables, with the fractions of units that
    are prunable, redundant and non-redundant, and the prunable share of the frivolous units
    ``prunable / (prunable + redundant)`` (NaN when a model has none)."""
    net = layers[layers["layer"] == ALL].copy()
    net["prunable_fraction"] = net["prunable"] / net["units"]
    net["redundant_fraction"] = net["redundant"] / net["units"]
    net["non_redundant_fraction"] = net["non_redundant"] / net["units"]
    frivolous = net["prunable"] + net["redundant"]
    net["prunable_share"] = (net["prunable"] / frivolous.where(frivolous > 0)).astype(float)
    return net


def prunability_slopes(layers: pd.DataFrame) -> pd.DataFrame:
    """Per (series, seed): the least-squares slope of the network prunability on ``log2(width)``
    (change of the prunable fraction per width doubling), with the prunability at the narrowest
    and widest width. Series with fewer than two widths get NaN."""
    net = network_rows(layers)
    keys = [*series_axes(), "seed"]
    rows = []
    for key, grp in net.groupby(keys, dropna=False, sort=True):
        grp = grp.sort_values("width")
        lw = np.log2(grp["width"].to_numpy(dtype=np.float64))
        p = grp["prunability"].to_numpy(dtype=np.float64)
        slope = float(np.polyfit(lw, p, 1)[0]) if len(np.unique(lw)) > 1 else float("nan")
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "widths": len(grp),
                "narrowest": int(grp["width"].iloc[0]),
                "widest": int(grp["width"].iloc[-1]),
                "prunability_narrowest": float(p[0]),
                "prunability_widest": float(p[-1]),
                "slope": slope,
            }
        )
    return pd.DataFrame(rows)


EFFECT_MEASURES = ("prunable_fraction", "redundant_fraction", "prunable_share")
EFFECT_COLUMNS = [
    "axis", "baseline", "level", "measure", "pairs", "baseline_mean", "level_mean", "diffs"
]  # fmt: skip
# series axes compared level by level at matched width and seed (training factors, and the
# dataset variant: random labels); arch, depth and bottleneck are the architecture
NOT_FACTORS = ("arch", "depth", "bottleneck")


def factor_axes() -> list[str]:
    return [c for c in series_axes() if c not in NOT_FACTORS]


def factor_effects(layers: pd.DataFrame, axis: str) -> pd.DataFrame:
    """How one training factor shifts the split between prunable and redundant units.

    Every level of ``axis`` is compared with its lowest level (``baseline``; a missing value such
    as no ``variant`` or ``train_size`` all comes first) on pairs of models
    that agree on every other model column (width and seed included). One row per (level,
    measure) of :data:`EFFECT_MEASURES`: ``pairs``, ``baseline_mean``, ``level_mean`` and
    ``diffs`` (the per-pair differences level − baseline, as a list). Empty when the axis has one
    level.
    """
    net = network_rows(layers)
    columns = EFFECT_COLUMNS
    missing = net[axis].isna()
    levels = ([None] if missing.any() else []) + sorted(net.loc[~missing, axis].unique())
    if len(levels) < 2:
        return pd.DataFrame(columns=columns)
    keys = [c for c in model_columns() if c not in ("model", axis)]

    def at(level_value) -> pd.DataFrame:
        rows = missing if level_value is None else net[axis] == level_value
        return net[rows][[*keys, *EFFECT_MEASURES]]

    base = at(levels[0])
    rows = []
    for level_value in levels[1:]:
        other = at(level_value)
        pairs = other.merge(base, on=keys, suffixes=("", "_base"))
        for measure in EFFECT_MEASURES:
            diffs = (pairs[measure] - pairs[f"{measure}_base"]).to_numpy(dtype=np.float64)
            rows.append(
                {
                    "axis": axis,
                    "baseline": levels[0],
                    "level": level_value,
                    "measure": measure,
                    "pairs": len(pairs),
                    "baseline_mean": float(pairs[f"{measure}_base"].mean()),
                    "level_mean": float(pairs[measure].mean()),
                    "diffs": diffs.tolist(),
                }
            )
    return pd.DataFrame(rows, columns=columns)


def summarise(
    layer_tables: Sequence[pd.DataFrame],
    curve_tables: Sequence[pd.DataFrame],
    level: float = 0.95,
) -> dict[str, pd.DataFrame]:
    """Every table of the summary rule from the per-model tables: ``layers`` and ``curves``
    (stacked), ``summary`` (:func:`summary_table`), ``growth`` (:func:`growth_table`, every
    layer), ``slopes``, ``effects`` (every factor axis with more than one level, diffs
    summarised by mean and interval). The headline comes from :mod:`widthlab.units.claims`."""
    for i, table in enumerate(curve_tables):
        _check_model_columns(table, f"ablation-curve table {i}")
    layers = pd.concat(list(layer_tables), ignore_index=True)
    curves = pd.concat(list(curve_tables), ignore_index=True)
    summary = summary_table(layer_tables)
    effects = [factor_effects(layers, axis) for axis in factor_axes()]
    effects = [e for e in effects if not e.empty]
    effects = (
        pd.concat(effects, ignore_index=True) if effects else pd.DataFrame(columns=EFFECT_COLUMNS)
    )
    intervals = [t_interval(d, level) for d in effects["diffs"]]
    effects["change"] = [float(np.mean(d)) if len(d) else float("nan") for d in effects["diffs"]]
    effects["ci_low"] = [lo for lo, _ in intervals]
    effects["ci_high"] = [hi for _, hi in intervals]
    for column in ("baseline", "level"):
        effects[column] = effects[column].astype(str)
    return {
        "layers": layers,
        "curves": curves,
        "summary": summary,
        "growth": growth_table(summary, None, level),
        "slopes": prunability_slopes(layers),
        "effects": effects.drop(columns="diffs"),
    }
