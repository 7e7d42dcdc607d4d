"""The evidence behind the clones stage's claims (torch-free): per-seed tables built from the
summary tables, which :mod:`.claims` reduces to one value per seed and judges.

Each function names the models it uses: the primary grid's at its largest weight decay (the
paper's regime: regularised, trained to zero training error) unless it says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from widthlab import stats
from widthlab.clones.growth import fit_clone_growth
from widthlab.clones.settings import CloneSettings
from widthlab.clones.summary import condition_columns, groups


def regularised(summary: pd.DataFrame, primary: str) -> tuple[pd.DataFrame, float]:
    """The primary grid's models at its largest weight decay, and that weight decay."""
    main = summary[summary["grid"] == primary]
    if main.empty:
        return main, float("nan")
    decay = float(main["weight_decay"].max())
    return main[main["weight_decay"] == decay], decay


def count_columns(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """(#clones column, clone size column) of the main rule, then of each declared alternative."""
    columns = [("n_clones", "clone_size")]
    k = 1
    while f"n_clones_alt{k}" in summary:
        columns.append((f"n_clones_alt{k}", f"clone_size_alt{k}"))
        k += 1
    return columns


def select(frame: pd.DataFrame, values: Mapping) -> pd.DataFrame:
    """The rows equal to ``values`` in each named column (a missing value matches a missing)."""
    keep = np.ones(len(frame), dtype=bool)
    for name, value in values.items():
        column = frame[name]
        if pd.isna(value):
            keep &= column.isna().to_numpy()
        else:
            keep &= (column == value).to_numpy()
    return frame[keep]


def growth_exponents(
    summary: pd.DataFrame, primary: str, count: str = "n_clones", critical_width=None
) -> pd.DataFrame:
    """One row per (condition, seed) of the primary grid's regularised models: the exponent b
    of #clones ∝ W^b (least squares of log₂ #clones on log₂ W) over the seed's widths at and
    above the critical width. That width is ``critical_width`` when declared, else the
    hinge fit (:func:`fit_clone_growth`) of the condition's *other* seeds — a seed never
    chooses the widths it is tested on; with no growth in the other seeds (or no other seed)
    every width counts."""
    regular, _ = regularised(summary, primary)
    by = condition_columns(regular, without=("weight_decay",))
    rows = []
    for key, condition in groups(regular, by):
        for seed, own in condition.groupby("seed", sort=True):
            crit = float("nan") if critical_width is None else float(critical_width)
            others = condition[condition["seed"] != seed]
            if critical_width is None and others["width"].nunique() >= 2:
                crit = fit_clone_growth(others["width"], others[count]).critical_width
            above = own if np.isnan(crit) else own[own["width"] >= crit]
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "seed": seed,
                    "critical_width": crit,
                    "n_widths": above["width"].nunique(),
                    "exponent": stats.log2_growth_slope(above["width"], above[count]),
                }
            )
    return pd.DataFrame(rows, columns=[*by, "seed", "critical_width", "n_widths", "exponent"])


def matched_log_ratios(
    a: pd.DataFrame, b: pd.DataFrame, keys: Sequence[str], count: str = "n_clones"
) -> pd.DataFrame:
    """log₂(#clones in a / #clones in b) for the models of ``a`` and ``b`` equal on ``keys``
    (which include the seed: a pair is one seed's two models)."""
    keys = [c for c in keys if c in a.columns and c in b.columns]
    wanted = [*keys, count, "train_error"]
    left = a[wanted].astype({k: object for k in keys}).fillna({k: "∅" for k in keys})
    right = b[wanted].astype({k: object for k in keys}).fillna({k: "∅" for k in keys})
    pairs = left.merge(right, on=keys, suffixes=("_a", "_b"))
    pairs["log2_ratio"] = np.log2(pairs[f"{count}_a"] / pairs[f"{count}_b"])
    if "seed" in keys:
        pairs["seed"] = pairs["seed"].astype(a["seed"].dtype)
    return pairs


def gap_exponents(gap: pd.DataFrame, models, method: str) -> pd.DataFrame:
    """One row per model: the least-squares slope of log₂ gap on log₂ chunk size over *every*
    chunk size below W, a gap at or below the floor (``gap_floor``: chance of one test example
    by default) entering as the floor; NaN (the model is at the floor) when fewer than two of
    its sizes are above the floor — the slope would only measure the floor."""
    columns = ["model", "seed", "width", "exponent", "n_sizes", "n_at_floor"]
    if gap.empty:
        return pd.DataFrame(columns=columns)
    sub = gap[(gap["method"] == method) & gap["model"].isin(set(models))]
    sub = sub[sub["chunk_size"] < sub["layer_width"]]
    rows = []
    for model, series in sub.groupby("model", sort=True):
        floor = series["gap_floor"].to_numpy()
        above = series["gap"].to_numpy() > floor
        level = np.maximum(series["gap"].to_numpy(), floor)
        slope = stats.ols_slope(np.log2(series["chunk_size"]), np.log2(level))
        rows.append(
            {
                "model": model,
                "seed": series["seed"].iloc[0],
                "width": series["layer_width"].iloc[0],
                "exponent": slope if above.sum() >= 2 else float("nan"),
                "n_sizes": len(series),
                "n_at_floor": int((~above).sum()),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def wide_against_ensemble(
    summary: pd.DataFrame,
    ensembles: pd.DataFrame,
    settings: CloneSettings,
    size_column: str = "clone_size",
) -> tuple[pd.DataFrame, list[str]]:
    """Per (condition, seed of the widest net W of the primary grid's regularised models):
    error_∞ of the clone-sized narrow nets − the wide net's test error (> 0: the wide net is
    better), and why conditions were left out.

    The clone size w_c* is the median over the wide net's seeds; the members are the narrowest
    trained width m with w_c* ≤ m < W (never narrower than a clone, which would favour the wide
    net) that has an ensemble of ≥ ``ensemble_min_members`` seeds in the same condition (grids
    pooled); its error_∞ is the error of that width's largest ensemble."""
    regular, _ = regularised(summary, settings.primary)
    by = condition_columns(regular)
    varying = [c for c in by if regular[c].nunique(dropna=False) > 1]
    rows, skipped = [], []
    for key, condition in groups(regular, by):
        values = dict(zip(by, key, strict=True))
        widest = int(condition["width"].max())
        where = ", ".join([*(f"{c} {values[c]}" for c in varying), f"width {widest}"])
        wide = condition[condition["width"] == widest]
        clone = float(wide[size_column].median())
        if widest / clone < 2:
            skipped.append(f"{where}: no clones (w_c* = {clone:g})")
            continue
        pool = select(ensembles, {k: v for k, v in values.items() if k in ensembles})
        pool = pool[(pool["width"] >= clone) & (pool["width"] < widest)]
        pool = pool[pool["members"] >= settings.ensemble_min_members]
        if pool.empty:
            skipped.append(
                f"{where}: no width in [w_c* = {clone:g}, {widest}) has an ensemble of "
                f"≥ {settings.ensemble_min_members} seeds"
            )
            continue
        member = int(pool["width"].min())
        best = pool[pool["width"] == member].sort_values("members").iloc[-1]
        for _, model in wide.iterrows():
            rows.append(
                {
                    **values,
                    "seed": model["seed"],
                    "width": widest,
                    "clone_size": clone,
                    "member_width": member,
                    "members": int(best["members"]),
                    "ensemble_error": float(best["ensemble_error"]),
                    "wide_error": float(model["test_error"]),
                    "difference": float(best["ensemble_error"]) - float(model["test_error"]),
                }
            )
    return pd.DataFrame(rows), skipped
