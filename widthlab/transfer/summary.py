"""The transfer stage across models (torch-free): fine-tuning accuracy per model, backbone and
shots, the trained − random gaps, the information read-outs, by-width tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from widthlab.grid import DataSpec, ModelSpec

if TYPE_CHECKING:  # torch is imported where it is used, so tables and figures never load it
    pass

from widthlab.stats import ols_slope, t_interval
from widthlab.transfer.settings import BACKBONES, TABLE_COLUMNS, TransferError

# ------------------------------------------------------------------------------------ summary


MODEL_COLUMNS = tuple(ModelSpec(DataSpec("digits"), "mlp", 1, 1).columns())


def _group_columns(table: pd.DataFrame) -> list[str]:
    """The model columns (``ModelSpec.columns()``) present in ``table``."""
    return [c for c in MODEL_COLUMNS if c in table.columns]


def model_frame(table: pd.DataFrame) -> pd.DataFrame:
    """One row per model: its model columns (from the first row that names it)."""
    return table[_group_columns(table)].drop_duplicates("model").reset_index(drop=True)


def finetune_summary(tables: pd.DataFrame) -> pd.DataFrame:
    """One row per model × backbone × shots: target accuracy (mean and sd over draws), the
    number of draws and examples, and the backbone's source test accuracy beside it."""
    fine = tables[(tables["analysis"] == "finetune") & (tables["measure"] == "target_acc")]
    keys = ["model", "backbone", "shots"]
    summary = (
        fine.groupby(keys, sort=False)
        .agg(
            target_acc=("value", "mean"),
            target_acc_sd=("value", "std"),
            draws=("value", "size"),
            examples=("examples", "max"),
        )
        .reset_index()
    )
    source = tables[tables["measure"] == "source_acc"][["model", "backbone", "value"]]
    summary = summary.merge(source.rename(columns={"value": "source_acc"}), how="left")
    summary["shots"] = summary["shots"].astype(str)
    return model_frame(tables).merge(summary, on="model", how="right")


def gap_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Trained − random target accuracy per model and shots (with the trained source accuracy)."""
    wide = summary.pivot_table(
        index=["model", "shots"], columns="backbone", values="target_acc"
    ).reset_index()
    wide.columns.name = None
    for backbone in BACKBONES:
        if backbone not in wide:
            wide[backbone] = np.nan
    source = summary[summary["backbone"] == "trained"][["model", "shots", "source_acc"]]
    wide = wide.merge(source, on=["model", "shots"], how="left")
    wide["gap"] = wide["trained"] - wide["random"]
    wide = wide.rename(columns={"trained": "trained_acc", "random": "random_acc"})
    return model_frame(summary).merge(wide, on="model", how="right")


def information_summary(tables: pd.DataFrame) -> pd.DataFrame:
    """One row per model × backbone × layer × images × measure of the information analysis."""
    model_cols = _group_columns(tables)
    info = tables[tables["analysis"] == "information"]
    keep = model_cols + ["backbone", "layer", "layer_index", "images", "measure", "value"]
    out = info[keep].copy()
    layers = out.groupby("model")["layer_index"].transform("max").astype(float) + 1
    out["relative_depth"] = (out["layer_index"].astype(float) + 1) / layers
    return out.reset_index(drop=True)


def _is_last(info: pd.DataFrame) -> pd.Series:
    return info["layer_index"] == info.groupby("model")["layer_index"].transform("max")


def by_width(
    frame: pd.DataFrame, value: str, keys: Sequence[str], level: float = 0.95
) -> pd.DataFrame:
    """Mean of ``value`` over seeds with its t-interval per ``keys`` + depth + width."""
    keys = [k for k in ("depth", *keys, "width") if k in frame.columns]
    rows = []
    for group, sub in frame.groupby(keys, dropna=False, sort=True):
        values = sub[value].to_numpy(dtype=float)
        low, high = t_interval(values, level)
        finite = values[np.isfinite(values)]
        rows.append(
            {
                **dict(zip(keys, group if isinstance(group, tuple) else (group,), strict=True)),
                "mean": float(finite.mean()) if len(finite) else math.nan,
                "ci_low": low,
                "ci_high": high,
                "n": int(len(finite)),
            }
        )
    return pd.DataFrame(rows)


def width_table(summary: pd.DataFrame, gaps: pd.DataFrame, info: pd.DataFrame) -> pd.DataFrame:
    """Every plotted quantity against width, mean over seeds with 95 % t-intervals (long)."""
    first_shots = summary["shots"].iloc[0] if len(summary) else None
    parts = [
        by_width(summary, "target_acc", ["backbone", "shots"]).assign(quantity="target_acc"),
        by_width(summary[summary["shots"] == first_shots], "source_acc", ["backbone"]).assign(
            quantity="source_acc"
        ),
        by_width(gaps, "gap", ["shots"]).assign(quantity="gap", backbone="trained − random"),
    ]
    for measure, sub in info.groupby("measure"):
        parts.append(
            by_width(sub, "value", ["backbone", "layer", "images"]).assign(quantity=measure)
        )
    table = pd.concat(parts, ignore_index=True)
    lead = ["quantity", "depth", "width", "backbone", "shots", "layer", "images"]
    return table[[c for c in lead if c in table] + [c for c in table if c not in lead]]


def seed_slopes(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """Slope of ``value`` per width doubling, one fit per seed × depth × weight decay."""
    keys = [k for k in ("depth", "weight_decay", "seed") if k in frame.columns]
    rows = []
    for group, sub in frame.groupby(keys, dropna=False, sort=True):
        rows.append(
            {
                **dict(zip(keys, group if isinstance(group, tuple) else (group,), strict=True)),
                "slope": ols_slope(np.log2(sub["width"].astype(float)), sub[value]),
                "models": len(sub),
            }
        )
    return pd.DataFrame(rows, columns=[*keys, "slope", "models"])


def atlas_purity(atlas: pd.DataFrame) -> pd.DataFrame:
    """Per model (and backbone): the example-weighted mean class purity of its atlas cells."""
    atlas = atlas if "backbone" in atlas else atlas.assign(backbone="trained")
    purity = (
        atlas.assign(weighted=atlas["purity"] * atlas["count"])
        .groupby(["model", "backbone"], sort=False)
        .agg(weighted=("weighted", "sum"), count=("count", "sum"))
        .reset_index()
    )
    purity["purity"] = purity["weighted"] / purity["count"]
    columns = ["model", "backbone", "purity", "count"]
    return model_frame(atlas).merge(purity[columns], on="model")


def summarise(tables: Sequence[pd.DataFrame], atlases: Sequence[pd.DataFrame] = ()) -> dict:
    """Every summary table of the stage from the per-model and atlas tables; the headline comes
    from :mod:`widthlab.transfer.claims`."""
    if not tables:
        raise TransferError("the transfer summary needs at least one per-model table")
    stacked = pd.concat(list(tables), ignore_index=True)
    missing = [c for c in ("model", "width", *TABLE_COLUMNS) if c not in stacked.columns]
    if missing:
        raise TransferError(f"per-model transfer tables lack the columns {missing}")
    summary = finetune_summary(stacked)
    gaps = gap_table(summary)
    info = information_summary(stacked)
    atlas = pd.concat(list(atlases), ignore_index=True) if len(atlases) else pd.DataFrame()
    return {
        "summary": summary,
        "gaps": gaps,
        "by_width": width_table(summary, gaps, info),
        "information": info,
        "atlas": atlas,
    }
