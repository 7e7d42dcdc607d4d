"""Tables across models (torch-free): clone size and number of clones per model, the growth fit
per grid and condition, the conditions table, the ensembles and the chunk-error gap.

Clone size and number of clones
    w_c* = the smallest chunk size meeting every threshold of ``CloneThresholds`` (default:
    Δ(chunk→full) ≤ 0.05, R² ≥ 0.9, mean chunk training error of the retrained readout ≤ 0);
    #clones = W / w_c*. If no size qualifies, w_c* = W, #clones = 1 and the model is flagged.

Conditions
    A training condition is every model column but width, seed and id
    (:data:`CONDITION_COLUMNS`). Models are pooled into ensembles by condition, across grids,
    so a grid of extra seeds adds members; each model's gap uses its own condition's error_∞.
    The first grid of ``analyses.clones.grid`` is the primary one; another grid whose models
    carry a different ``variant`` (trained without reaching zero training error) gives the
    before / after interpolation comparison.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict

import numpy as np
import pandas as pd

from widthlab import stats
from widthlab.clones.ensembles import (
    ensemble_gap_table,
    ensemble_table,
    error_infinity,
    logit_matrix,
)
from widthlab.clones.growth import fit_clone_growth
from widthlab.clones.settings import ACCURACY_METHODS, CloneSettings, CloneThresholds


def _series(table: pd.DataFrame, metric: str, method: str | None, split: str | None) -> pd.Series:
    sel = table["metric"] == metric
    if method is not None:
        sel &= table["method"] == method
    if split is not None:
        sel &= table["split"] == split
    return table[sel].groupby("chunk_size")["mean"].mean()


def clone_count(table: pd.DataFrame, thresholds: CloneThresholds | Mapping | None = None) -> dict:
    """w_c* (``clone_size``), ``n_clones`` = W / w_c* and ``flagged`` (no size qualified) for one
    model's table, with the criteria's values at w_c*. A missing or NaN criterion fails."""
    th = CloneThresholds.from_config(thresholds)
    if "model" in table.columns and table["model"].nunique() > 1:
        raise ValueError("clone_count takes one model's table; group by model first")
    if "layer_width" in table.columns:
        width = int(table["layer_width"].iloc[0])
    else:
        width = int(table["chunk_size"].max())
    sizes = np.sort(table["chunk_size"].unique())
    ii = _series(table, "ii_chunk_to_full", None, "test")
    r2 = _series(table, "r2", None, "test")
    # sizes without rows of this method (readouts stop once every chunk fits the training set;
    # a superset of a separable chunk is separable) inherit the last fitted size's value
    train_acc = _series(table, "accuracy", th.accuracy_method, "train").reindex(sizes).ffill()
    ok = pd.Series(True, index=sizes)
    if th.ii_max is not None:
        ok &= ii.reindex(sizes) <= th.ii_max + 1e-12
    if th.r2_min is not None:
        ok &= r2.reindex(sizes) >= th.r2_min - 1e-12
    if th.train_error_max is not None:
        ok &= (1.0 - train_acc.reindex(sizes)) <= th.train_error_max + 1e-12
    qualified = ok[ok].index
    flagged = len(qualified) == 0
    size = width if flagged else int(qualified[0])
    return {
        "clone_size": size,
        "n_clones": width / size,
        "flagged": flagged,
        "layer_width": width,
        "ii_at_clone_size": float(ii.get(size, np.nan)),
        "r2_at_clone_size": float(r2.get(size, np.nan)),
        "train_error_at_clone_size": float(1.0 - train_acc.get(size, np.nan)),
        **{f"threshold_{k}": v for k, v in asdict(th).items()},
    }


#: the model columns that define a training condition (everything but width, seed and id)
CONDITION_COLUMNS = (
    "dataset",
    "arch",
    "depth",
    "bottleneck",
    "train_size",
    "weight_decay",
    "dropout",
    "init",
    "variant",
)


def condition_columns(table: pd.DataFrame, without: Sequence[str] = ()) -> list[str]:
    """The condition columns ``table`` has, but those in ``without``."""
    return [c for c in CONDITION_COLUMNS if c in table.columns and c not in without]


def groups(table: pd.DataFrame, by: Sequence[str]):
    """groupby that keeps None/NaN keys (variant, bottleneck, train_size are often None)."""
    by = list(by)
    if not by:
        yield (), table
        return
    for key, group in table.groupby(by, sort=True, dropna=False):
        yield (key if isinstance(key, tuple) else (key,)), group


def clone_size_by_criterion(table: pd.DataFrame, thresholds: CloneThresholds) -> dict:
    """The clone size each threshold alone would give (which one binds): ``clone_size_ii``,
    ``clone_size_r2``, ``clone_size_train`` (W when no size meets it; NaN if it is disabled)."""
    th = asdict(thresholds)
    out = {}
    for name, key in (("ii", "ii_max"), ("r2", "r2_min"), ("train", "train_error_max")):
        if th[key] is None:
            out[f"clone_size_{name}"] = np.nan
            continue
        alone = {k: (th[k] if k == key else None) for k in ("ii_max", "r2_min", "train_error_max")}
        alone["accuracy_method"] = thresholds.accuracy_method
        out[f"clone_size_{name}"] = clone_count(table, alone)["clone_size"]
    return out


def model_summary(
    tables: Sequence[pd.DataFrame] | pd.DataFrame,
    thresholds: CloneThresholds | Mapping | None = None,
    grids: Mapping[str, str] | None = None,
    alternatives: Sequence[CloneThresholds] = (),
    recipes: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per model: its columns (everything before ``chunk_size`` in the per-model
    table), ``grid`` (from ``grids``: model → grid name), the clone count
    (:func:`clone_count`), the full-layer train and test accuracy of each method, the clone
    size each criterion alone gives, and the network's own (full layer, trained head) train
    and test error and whether it interpolates (zero training error); then ``clone_size_alt<k>``
    and ``n_clones_alt<k>`` under each of the ``alternatives`` rules, and the training
    ``recipe`` (:func:`widthlab.recipe.recipe_key`) when ``recipes`` (model → recipe) is given."""
    th = CloneThresholds.from_config(thresholds)
    table = (
        tables if isinstance(tables, pd.DataFrame) else pd.concat(list(tables), ignore_index=True)
    )
    id_columns = list(table.columns[: list(table.columns).index("chunk_size")])
    if "model" not in id_columns:
        raise ValueError("the per-model tables need a 'model' column")
    rows = []
    for _, group in table.groupby("model", sort=True):
        row = {c: group[c].iloc[0] for c in id_columns}
        row.update(clone_count(group, th))
        full = group[group["chunk_size"] == group["chunk_size"].max()]
        accuracy = full[full["metric"] == "accuracy"]
        for method in ACCURACY_METHODS:
            for split in ("train", "test"):
                sel = accuracy[(accuracy["method"] == method) & (accuracy["split"] == split)]
                row[f"full_{split}_acc_{method}"] = (
                    float(sel["mean"].iloc[0]) if len(sel) else np.nan
                )
        row.update(clone_size_by_criterion(group, th))
        for split in ("train", "test"):
            acc = row[f"full_{split}_acc_head"]
            row[f"{split}_error"] = float(1.0 - acc)
        row["interpolating"] = row["train_error"] <= 1e-12
        for k, alternative in enumerate(alternatives, start=1):
            count = clone_count(group, alternative)
            row[f"clone_size_alt{k}"] = count["clone_size"]
            row[f"n_clones_alt{k}"] = count["n_clones"]
        rows.append(row)
    summary = pd.DataFrame(rows)
    grids = dict(grids or {})
    summary.insert(1, "grid", [grids.get(model, "") for model in summary["model"]])
    if recipes is not None:
        summary["recipe"] = [recipes.get(model, "") for model in summary["model"]]
    return summary


def conditions_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per grid, condition and width: mean / min / max #clones and clone size over seeds, the
    number of seeds, the fraction that interpolates and the mean train and test error."""
    by = ["grid", *condition_columns(summary), "width"]
    rows = []
    for key, group in groups(summary, by):
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "n_models": len(group),
                "n_clones": float(group["n_clones"].mean()),
                "n_clones_min": float(group["n_clones"].min()),
                "n_clones_max": float(group["n_clones"].max()),
                "clone_size": float(group["clone_size"].mean()),
                "interpolating": float(group["interpolating"].mean()),
                "train_error": float(group["train_error"].mean()),
                "test_error": float(group["test_error"].mean()),
                "n_flagged": int(group["flagged"].sum()),
            }
        )
    return pd.DataFrame(rows)


def growth_fits(summary: pd.DataFrame) -> pd.DataFrame:
    """``fit_clone_growth`` per grid and condition (seeds pooled), with the log-log exponent b
    of #clones on W over the widths at and above the fitted critical width (all widths when the
    fit finds no growth), and the exponent each criterion alone would give (``exponent_ii``,
    ``exponent_r2``, ``exponent_train``: W / the clone size by that criterion, all widths)."""
    rows = []
    by = [*(["grid"] if "grid" in summary else []), *condition_columns(summary)]
    for key, group in groups(summary, by):
        fit = fit_clone_growth(group["width"].to_numpy(), group["n_clones"].to_numpy())
        above = (
            group if np.isnan(fit.critical_width) else group[group["width"] >= fit.critical_width]
        )
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                **fit._asdict(),
                "exponent": stats.log2_growth_slope(above["width"], above["n_clones"]),
                **{
                    f"exponent_{name}": stats.log2_growth_slope(
                        group["width"], group["width"] / group[f"clone_size_{name}"]
                    )
                    if f"clone_size_{name}" in group
                    else np.nan
                    for name in ("ii", "r2", "train")
                },
                "n_models": len(group),
                "n_widths": group["width"].nunique(),
                "n_flagged": int(group["flagged"].sum()),
            }
        )
    return pd.DataFrame(rows)


def ensembles_by_condition(logits: Sequence[pd.DataFrame], min_members: int = 1) -> pd.DataFrame:
    """``ensemble_table`` per condition (models pooled over grids: a grid of extra seeds adds
    members), with the condition's columns, its ``error_infinity`` (the error of its largest
    ensemble of at least ``min_members`` seeds; NaN without one) with that ensemble's
    ``error_infinity_members``, and the number of test examples (``n_examples``) on every row.
    Every model must cover the same test examples in the same order."""
    if not logits:
        return pd.DataFrame()
    table = pd.concat(list(logits), ignore_index=True)
    by = condition_columns(table)
    out = []
    for key, group in groups(table, by):
        members, labels = {}, None
        for (width, seed), model in group.groupby(["width", "seed"], sort=True):
            model = model.sort_values("example")
            if labels is None:
                labels = model["label"].to_numpy()
            elif not np.array_equal(labels, model["label"].to_numpy()):
                raise ValueError(f"test labels differ between the models of condition {key}")
            members[(int(width), int(seed))] = logit_matrix(model)
        ens = ensemble_table(members, labels)
        err_inf, largest = error_infinity(ens, min_members)
        for name, value in zip(by, key, strict=True):
            ens[name] = value
        ens["error_infinity"] = err_inf
        ens["error_infinity_members"] = int(largest.get("members", 0))
        ens["n_examples"] = len(labels)
        out.append(ens[[*by, *[c for c in ens.columns if c not in by]]])
    return pd.concat(out, ignore_index=True)


def gap_by_condition(
    tables: Sequence[pd.DataFrame],
    ensembles: pd.DataFrame,
    models: Iterable[str] | None = None,
    floor: float | None = None,
) -> pd.DataFrame:
    """``ensemble_gap_table`` of the chosen models (default all), each against the error_∞ of
    its own condition (models of a condition without one are left out), with the ``floor``
    (None: one test example, 1 / ``n_examples``)."""
    table = pd.concat(list(tables), ignore_index=True)
    if models is not None:
        table = table[table["model"].isin(set(models))]
    by = condition_columns(table)
    out = []
    for key, group in groups(table, by):
        sel = ensembles
        for name, value in zip(by, key, strict=True):
            sel = sel[(sel[name] == value) | (sel[name].isna() & pd.isna(value))]
        if sel.empty or not np.isfinite(sel["error_infinity"].iloc[0]):
            continue
        level = 1.0 / float(sel["n_examples"].iloc[0]) if floor is None else floor
        out.append(ensemble_gap_table(group, float(sel["error_infinity"].iloc[0]), level))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def stage_tables(
    chunk_tables: Sequence[pd.DataFrame],
    logits: Sequence[pd.DataFrame],
    grids: Mapping[str, str],
    settings: CloneSettings,
    recipes: Mapping[str, str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every table of the stage but the headline: ``summary`` (one row per model, with its
    ``recipe`` from ``recipes``), ``growth`` (per grid and condition), ``conditions`` (per grid,
    condition and width), ``ensembles`` (per condition, member width and K) and ``gap`` (chunk
    test error − error_∞ of the primary grid's models)."""
    summary = model_summary(
        chunk_tables, settings.thresholds, grids, settings.alternative_thresholds(), recipes
    )
    ensembles = ensembles_by_condition(logits, settings.ensemble_min_members)
    main_models = summary.loc[summary["grid"] == settings.primary, "model"]
    gap = (
        gap_by_condition(chunk_tables, ensembles, main_models, settings.gap_floor)
        if len(ensembles)
        else pd.DataFrame()
    )
    return {
        "summary": summary,
        "growth": growth_fits(summary),
        "conditions": conditions_table(summary),
        "ensembles": ensembles,
        "gap": gap,
    }
