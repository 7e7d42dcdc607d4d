"""Figures of the units stage (Casper et al. 2021, frivolous units), drawn only from its tables.

Each function takes ``tables``, a dict of the stage's tidy tables, and returns a figure;
:data:`FIGURES` names them for the stage:

- ``curves``: ablation curves of all models (model columns + ``scope, order, fraction,
  agreement``), see :func:`widthlab.units.ablation_curves`;
- ``units``: the per-model unit tables stacked (:func:`widthlab.units.per_model_table`);
- ``summary``: :func:`widthlab.units.summary_table`;
- ``growth``: :func:`widthlab.units.growth_table`.

Models are told apart by depth (columns) and weight decay (rows or line style); seeds are pooled
into a mean with a min–max band.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LogNorm
from matplotlib.ticker import MaxNLocator

from widthlab.plots import use_style

QUANTITY_LABELS = {
    "prunable": "prunable",
    "non_prunable": "non-prunable",
    "redundant": "redundant",
    "non_redundant": "non-redundant",
}


def _wd_label(value) -> str:
    return "wd 0" if float(value) == 0.0 else f"wd {float(value):g}"


def _width_palette(widths) -> dict:
    widths = sorted(int(w) for w in widths)
    colours = sns.color_palette("viridis", max(len(widths), 1))
    return {w: colours[i] for i, w in enumerate(widths)}


def _facets(table: pd.DataFrame) -> tuple[list, list]:
    return sorted(table["weight_decay"].unique()), sorted(table["depth"].unique())


def ablation_curves_plot(tables: dict, scope: str = "all") -> plt.Figure:
    """Agreement with the intact model against the fraction of units zeroed (all hidden layers at
    once), one line per width; columns depth, rows weight decay; the threshold dashed."""
    use_style()
    curves = tables["curves"]
    curves = curves[curves["scope"] == scope]
    threshold = float(tables["units"]["threshold"].iloc[0]) if "units" in tables else 0.8
    wds, depths = _facets(curves)
    palette = _width_palette(curves["width"].unique())
    fig, axes = plt.subplots(
        len(wds),
        len(depths),
        figsize=(2.8 * len(depths) + 1.2, 2.3 * len(wds) + 0.4),
        squeeze=False,
        sharex=True,
        sharey=True,
        constrained_layout=True,
    )
    for r, wd in enumerate(wds):
        for c, depth in enumerate(depths):
            ax = axes[r, c]
            cell = curves[(curves["weight_decay"] == wd) & (curves["depth"] == depth)]
            for width, rows in cell.groupby("width"):
                per_model = rows.groupby(["seed", "fraction"])["agreement"].mean().unstack(0)
                mean = per_model.mean(axis=1)
                ax.fill_between(
                    mean.index, per_model.min(axis=1), per_model.max(axis=1),
                    color=palette[int(width)], alpha=0.2, linewidth=0,
                )  # fmt: skip
                ax.plot(mean.index, mean, marker="o", markersize=2.5, color=palette[int(width)],
                        label=str(int(width)))  # fmt: skip
            ax.axhline(threshold, color="black", linestyle="--", linewidth=0.8)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"depth {depth}, {_wd_label(wd)}", fontsize=8)
            if r == len(wds) - 1:
                ax.set_xlabel("fraction of units zeroed")
            if c == 0:
                ax.set_ylabel("agreement with intact net")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, title="width", loc="outside right center", fontsize=7)
    fig.suptitle("Random zero-ablation of all hidden layers (mean over orders and seeds)")
    return fig


def _g_label(growth: pd.DataFrame, depth, wd, quantity) -> str:
    if growth is None or growth.empty:
        return ""
    row = growth[
        (growth["depth"] == depth)
        & (growth["weight_decay"] == wd)
        & (growth["quantity"] == quantity)
    ]
    if row.empty or not np.isfinite(row["g"].iloc[0]):
        return " (g n/a)"
    row = row.iloc[0]
    ci = ""
    if np.isfinite(row["g_ci_low"]):
        ci = f" [{row['g_ci_low']:.2f}, {row['g_ci_high']:.2f}]"
    return f" g={row['g']:.2f}{ci}"


def unit_counts_plot(tables: dict, layer: str = "all") -> plt.Figure:
    """Prunable / non-prunable / redundant / non-redundant unit counts against width on log–log
    axes, normalised to the widest model; line per (depth, weight decay) with its growth statistic
    g (mean over seeds, 95 % CI) in the legend. Dotted: ∝ width (g = 2)."""
    use_style()
    summary = tables["summary"]
    growth = tables.get("growth")
    summary = summary[(summary["layer"] == layer) & summary["quantity"].isin(QUANTITY_LABELS)]
    quantities = [q for q in QUANTITY_LABELS if q in set(summary["quantity"])]
    wds, depths = _facets(summary)
    colours = sns.color_palette("colorblind", max(len(depths), 1))
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(
        1,
        len(quantities),
        figsize=(3.2 * len(quantities), 3.4),
        squeeze=False,
        sharey=True,
        constrained_layout=True,
    )
    widths = np.array(sorted(summary["width"].unique()), dtype=float)
    for ax, quantity in zip(axes[0], quantities, strict=True):
        sub = summary[summary["quantity"] == quantity]
        for i, depth in enumerate(depths):
            for j, wd in enumerate(wds):
                rows = sub[(sub["depth"] == depth) & (sub["weight_decay"] == wd)]
                if rows.empty:
                    continue
                per_seed = rows.pivot_table(index="width", columns="seed", values="normalised")
                per_seed = per_seed.where(per_seed > 0)
                mean = per_seed.mean(axis=1)
                label = f"d{depth}, {_wd_label(wd)}" + _g_label(growth, depth, wd, quantity)
                ax.fill_between(
                    mean.index, per_seed.min(axis=1), per_seed.max(axis=1),
                    color=colours[i], alpha=0.15, linewidth=0,
                )  # fmt: skip
                ax.plot(mean.index, mean, marker="o", markersize=3, color=colours[i],
                        linestyle=styles[j % len(styles)], label=label)  # fmt: skip
        if len(widths):
            ax.plot(widths, widths / widths.max(), color="grey", linestyle=":", linewidth=1,
                    label="∝ width (g = 2)")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width")
        ax.set_title(QUANTITY_LABELS[quantity])
        ax.legend(fontsize=6, loc="lower right")
    axes[0, 0].set_ylabel("units / units of the widest model")
    fig.suptitle("Frivolous units against width (normalised to the widest model)")
    return fig


def fractions_plot(tables: dict) -> plt.Figure:
    """The prunable fraction (prunability) and the PCA compressibility of the whole network against
    width: the fraction of frivolous units grows with width."""
    use_style()
    units = tables["units"]
    net = units[units["layer"] == "all"].copy()
    net["weight decay"] = net["weight_decay"].map(_wd_label)
    long = net.melt(
        id_vars=["width", "depth", "weight decay", "seed"],
        value_vars=["prunability", "compressibility"],
        var_name="measure",
        value_name="fraction",
    )
    grid = sns.relplot(
        data=long,
        x="width",
        y="fraction",
        hue="weight decay",
        style="depth",
        col="measure",
        kind="line",
        marker="o",
        errorbar=("pi", 100),
        height=2.8,
        aspect=1.2,
    )
    for ax in grid.axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.02, 1.02)
    grid.figure.suptitle("Prunable fraction and PCA compressibility (whole network)", y=1.04)
    return grid.figure


def per_layer_plot(tables: dict) -> plt.Figure:
    """Per layer: prunability when only that layer is ablated, and its PCA compressibility,
    against the layer index, one line per width; columns depth, rows measure and weight decay."""
    use_style()
    units = tables["units"]
    layers = units[units["layer"] != "all"].copy()
    layers["layer"] = layers["layer_index"] + 1
    layers["weight decay"] = layers["weight_decay"].map(_wd_label)
    long = layers.melt(
        id_vars=["width", "depth", "weight decay", "seed", "layer"],
        value_vars=["prunability", "compressibility"],
        var_name="measure",
        value_name="fraction",
    )
    long["panel"] = long["measure"] + ", " + long["weight decay"]
    grid = sns.relplot(
        data=long,
        x="layer",
        y="fraction",
        hue="width",
        col="depth",
        row="panel",
        kind="line",
        marker="o",
        markersize=3,
        errorbar=("pi", 100),
        palette="viridis",
        hue_norm=LogNorm(),
        height=2.0,
        aspect=1.3,
        facet_kws={"sharex": False},
    )
    grid.set_titles("{row_name} | depth {col_name}", size=7)
    for (_, depth), ax in zip(
        [(r, c) for r in grid.row_names for c in grid.col_names], grid.axes.flat, strict=True
    ):
        ax.set_ylim(-0.02, 1.02)
        n_layers = int(layers.loc[layers["depth"] == depth, "layer"].max())
        ax.set_xlim(0.5, n_layers + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    grid.figure.suptitle("Per-layer prunability and compressibility", y=1.02)
    return grid.figure


FIGURES = {
    "ablation_curves": ablation_curves_plot,
    "unit_counts": unit_counts_plot,
    "fractions": fractions_plot,
    "per_layer": per_layer_plot,
}
