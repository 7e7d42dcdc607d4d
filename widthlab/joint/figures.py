"""Figure of the cross-paper joint analysis, drawn from its summary tables (torch-free)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from widthlab.joint.summary import prune_vs_clone_summary
from widthlab.plots import log2_x, use_style


def joint_figure(
    prune_clone: pd.DataFrame | None,
    contrasts: pd.DataFrame | None,
    transfer_clones: pd.DataFrame | None,
):
    """Three panels, one per question; a panel whose tables this run lacks says so."""
    use_style()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    if prune_clone is not None and len(prune_clone):
        rho = prune_vs_clone_summary(prune_clone, by=["model", "width", "depth"])
        rho = rho[rho["kept_fraction"].notna()]
        sns.lineplot(
            data=rho,
            x="width",
            y="rho",
            hue="kept_fraction",
            style="depth",
            marker="o",
            errorbar=("ci", 95),
            palette="viridis",
            ax=ax,
        )
        ax.axhline(0, color="grey", linewidth=0.8)
        log2_x(ax)
        ax.set(ylabel="Spearman ρ(agreement, R²)", title="prunable ⇔ reconstructable (last layer)")
    else:
        ax.text(0.5, 0.5, "no prune-vs-clone table", ha="center", transform=ax.transAxes)
    ax = axes[1]
    if contrasts is not None and len(contrasts):
        long = pd.concat(
            [
                pd.DataFrame({"quantity": q, "where": w, "value": contrasts[f"{q}_{w}"]})
                for q in ("pc1_share", "prunability")
                for w in ("in", "out")
            ]
        )
        long["where"] = long["where"].map({"in": "in a block", "out": "other layers"})
        sns.barplot(data=long, x="quantity", y="value", hue="where", errorbar=("ci", 95), ax=ax)
        ax.set(
            xlabel="",
            ylabel="mean over layers",
            title=f"blocks vs PC1 and prunability ({len(contrasts)} models)",
        )
    else:
        ax.text(0.5, 0.5, "no model with a CKA block", ha="center", transform=ax.transAxes)
    ax = axes[2]
    if transfer_clones is not None and len(transfer_clones):
        sns.scatterplot(
            data=transfer_clones,
            x="n_clones",
            y="trained_acc",
            hue="width",
            palette="viridis",
            style="depth",
            s=50,
            ax=ax,
        )
        ax.set(
            xlabel="clones in the last layer (source task)",
            ylabel="target accuracy",
            title="transfer vs clones",
        )
        ax.set_xscale("log", base=2)
    else:
        ax.text(0.5, 0.5, "no transfer / clone tables", ha="center", transform=ax.transAxes)
    fig.suptitle("Across papers, on the same models", y=1.02)
    fig.tight_layout()
    return fig
