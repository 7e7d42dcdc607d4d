"""The joint analysis's headline rows, each through the one rule of :mod:`widthlab.stats` with
one value per training seed (or a seed-level bootstrap)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from widthlab import stats
from widthlab.headline import claim, headline_table, not_measured
from widthlab.joint.summary import prune_vs_clone_summary

PAPER = "Across papers (this run)"
PRUNE_CLONE = (
    "Casper's prunable units are Doimo's redundant ones: a kept subset of the last layer that "
    "reconstructs the whole layer (clones) also keeps the predictions."
)
BLOCK_CLAIMS = {
    "pc1_share": "CKA blocks coincide with the layers where PC1 dominates.",
    "prunability": "CKA blocks coincide with the layers whose units are most prunable.",
}
TRANSFER_CLONES = (
    "Among nets of one architecture, the one with more clones in its last layer transfers better."
)


def prune_clone_row(prune_clone: pd.DataFrame | None) -> dict:
    quantity = "Spearman ρ(agreement, ridge R²) over kept subsets of equal size"
    if prune_clone is None or not len(prune_clone):
        return not_measured(PAPER, PRUNE_CLONE, quantity, "no prune-vs-clone table")
    per_model = prune_vs_clone_summary(prune_clone, by=["model", "seed"])
    per_model = per_model[per_model["kept_fraction"].isna()]
    rho = per_model["rho"]
    return claim(
        PAPER,
        PRUNE_CLONE,
        quantity,
        "ρ within each kept fraction, mean over fractions per model, mean over a seed's models; "
        "t-interval over seeds",
        stats.SeedValues(stats.per_seed(per_model, "rho")),
        null=0.0,
        direction=1,
        detail=(
            f"ρ = {rho.mean():+.2f} over {rho.notna().sum()} models "
            f"(range {rho.min():+.2f} … {rho.max():+.2f})."
        ),
    )


def block_rows(contrasts: pd.DataFrame | None) -> list[dict]:
    rows = []
    for quantity, text in BLOCK_CLAIMS.items():
        label = f"{quantity}, block layers − other layers, each centred on its layer position"
        if contrasts is None or not len(contrasts):
            reason = "no model has layers both inside and outside a block"
            rows.append(not_measured(PAPER, text, label, reason))
            continue
        diff = contrasts[f"{quantity}_diff"]
        rows.append(
            claim(
                PAPER,
                text,
                label,
                "each layer minus the mean of the layers at its (depth, index) over all models; "
                "in-block minus other layers per model, mean per seed; t-interval over seeds",
                stats.SeedValues(stats.per_seed(contrasts, f"{quantity}_diff")),
                null=0.0,
                direction=1,
                detail=(
                    f"{len(diff)} models with a block; centred contrast {diff.mean():+.3f}; raw "
                    f"means in {contrasts[f'{quantity}_in'].mean():.3f}, out "
                    f"{contrasts[f'{quantity}_out'].mean():.3f}."
                ),
            )
        )
    return rows


def within_architecture_rho(frame: pd.DataFrame) -> float:
    return stats.within_group_rank_correlation(frame, "trained_acc", "n_clones", "architecture")


def transfer_clones_row(transfer_clones: pd.DataFrame | None) -> dict:
    quantity = "Spearman ρ(target accuracy, #clones) within an architecture (seeds only differ)"
    if transfer_clones is None or not len(transfer_clones):
        return not_measured(PAPER, TRANSFER_CLONES, quantity, "no transfer and clone tables")
    overall = stats.rank_correlation(transfer_clones["trained_acc"], transfer_clones["n_clones"])
    varied = transfer_clones.groupby("architecture")["n_clones"].nunique().gt(1).sum()
    reason = None if varied else "no architecture has seeds with different clone counts"
    return claim(
        PAPER,
        TRANSFER_CLONES,
        quantity,
        "ranks centred within each architecture (width, depth, variant), pooled; seed-level "
        "bootstrap percentile interval",
        stats.SeedBootstrap(transfer_clones, within_architecture_rho),
        null=0.0,
        direction=1,
        detail=(
            f"{len(transfer_clones)} models in {transfer_clones['architecture'].nunique()} "
            f"architectures ({varied} with varying clone counts); across widths, where width "
            f"drives both, ρ = {overall:+.2f} (not the test)."
            if np.isfinite(overall)
            else f"{len(transfer_clones)} models; ρ across widths undefined."
        ),
        na_reason=reason,
    )


def headline(
    prune_clone: pd.DataFrame | None,
    contrasts: pd.DataFrame | None,
    transfer_clones: pd.DataFrame | None,
) -> pd.DataFrame:
    """The four joint rows; a row whose tables this run lacks is n/a and says so."""
    rows = [prune_clone_row(prune_clone), *block_rows(contrasts)]
    rows.append(transfer_clones_row(transfer_clones))
    return headline_table(rows)
