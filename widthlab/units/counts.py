"""Unit counts of a layer and the per-model table: prunable, non-prunable, redundant and
non-redundant units from the prunability and the compressibility (torch-free)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from widthlab.units.ablation import prunability_table
from widthlab.units.settings import ALL, DEFAULT_THRESHOLD, REDUNDANCY_RULES


def unit_counts(
    units: float,
    prunability_value: float,
    compressibility_value: float,
    n_pcs: float,
    rule: str = "product",
) -> dict:
    """Prunable / non-prunable / redundant / non-redundant units of a layer (see module doc)."""
    if rule not in REDUNDANCY_RULES:
        raise ValueError(f"unknown redundancy rule {rule!r}; choose one of {REDUNDANCY_RULES}")
    prunable = prunability_value * units
    non_prunable = units - prunable
    if rule == "product":
        redundant = compressibility_value * non_prunable
    else:
        redundant = non_prunable - min(float(n_pcs), non_prunable)
    return {
        "prunable": prunable,
        "non_prunable": non_prunable,
        "redundant": redundant,
        "non_redundant": non_prunable - redundant,
    }


def _flags(*parts: str) -> str:
    return ";".join(p for p in parts if p and p != "crosses")


def per_model_table(
    curves: pd.DataFrame,
    redundancy: pd.DataFrame,
    threshold: float = DEFAULT_THRESHOLD,
    rule: str = "product",
    columns: Mapping[str, object] | None = None,
) -> pd.DataFrame:
    """One row per tap (per-layer ablation curve) and one ``layer == "all"`` row (all-layer curve).

    Columns: the model ``columns`` (e.g. ``ModelSpec.columns()``), ``layer``, ``layer_index``
    (−1 for ``all``), ``scope`` (``layer``/``network``), ``units``, ``prunability``,
    ``prunability_sd``, ``prunable``, ``non_prunable``, ``compressibility``, ``n_pcs``,
    ``redundant``, ``non_redundant``, ``mean_abs_corr_count``, ``dead_units``, ``threshold``,
    ``redundancy_rule``, ``flags`` (``never_crosses``, ``starts_below``, ``no_variance``,
    ``dead_units``; ``;``-joined, empty when none).
    """
    prune = prunability_table(curves, threshold).set_index("scope")
    red = redundancy.set_index("layer")
    rows = []
    for tap, r in red.iterrows():
        if tap not in prune.index:
            raise ValueError(f"no per-layer ablation curve for tap {tap!r}")
        p = prune.loc[tap]
        if int(p["units"]) != int(r["units"]):
            raise ValueError(f"tap {tap!r}: {p['units']} units ablated but {r['units']} in PCA")
        counts = unit_counts(r["units"], p["prunability"], r["compressibility"], r["n_pcs"], rule)
        rows.append(
            {
                "layer": tap,
                "layer_index": int(r["layer_index"]),
                "scope": "layer",
                "units": int(r["units"]),
                "prunability": p["prunability"],
                "prunability_sd": p["prunability_sd"],
                **counts,
                "compressibility": r["compressibility"],
                "n_pcs": int(r["n_pcs"]),
                "mean_abs_corr_count": r["mean_abs_corr_count"],
                "dead_units": int(r["dead_units"]),
                "flags": _flags(
                    p["prunability_flag"],
                    "no_variance" if r["n_pcs"] == 0 else "",
                    "dead_units" if r["dead_units"] else "",
                ),
            }
        )
    p = prune.loc[ALL]
    units = red["units"].astype(float)
    per_tap = [
        unit_counts(u, p["prunability"], c, k, rule)
        for u, c, k in zip(units, red["compressibility"], red["n_pcs"], strict=True)
    ]
    total = float(units.sum())
    network = {
        "layer": ALL,
        "layer_index": -1,
        "scope": "network",
        "units": int(total),
        "prunability": p["prunability"],
        "prunability_sd": p["prunability_sd"],
        **{q: float(sum(c[q] for c in per_tap)) for q in per_tap[0]},
        "compressibility": float((red["compressibility"] * units).sum() / total),
        "n_pcs": int(red["n_pcs"].sum()),
        "mean_abs_corr_count": float((red["mean_abs_corr_count"] * units).sum() / total),
        "dead_units": int(red["dead_units"].sum()),
        "flags": _flags(p["prunability_flag"], "dead_units" if red["dead_units"].any() else ""),
    }
    table = pd.DataFrame([*rows, network])
    table["threshold"] = threshold
    table["redundancy_rule"] = rule
    if columns:
        for i, (name, value) in enumerate(columns.items()):
            table.insert(i, name, [value] * len(table))
    return table
