"""Figures of the units stage (Casper et al. 2021, frivolous units), drawn only from its tables.

Each function takes ``tables``, a dict of the stage's tidy tables, and returns a figure;
:data:`FIGURES` names them for the stage:

- ``curves``: ablation curves of all models (model columns + ``scope, order, fraction,
  agreement``), see :func:`widthlab.units.ablation_curves`;
- ``units``: the per-model unit tables stacked (:func:`widthlab.units.per_model_table`);
- ``summary``: :func:`widthlab.units.summary_table`;
- ``growth``: :func:`widthlab.units.growth_table` (``layer`` column; the figures use ``all``).

Models are told apart by depth (columns) and their *setup* (rows, hue or line style): the values
of every other series axis that varies in the tables (weight decay, dropout, init, training-set
size, variant, ...; see :func:`setup_axes`). Seeds are pooled into a mean with a min–max band.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from widthlab.plots import use_style
from widthlab.units.summary import series_axes

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


def _value_label(axis: str, value) -> str:
    if axis == "weight_decay":
        return _wd_label(value)
    if axis == "train_size" and pd.isna(value):
        return "n all"
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{axis.replace('_', ' ')} {text}"


def setup_axes(table: pd.DataFrame) -> list[str]:
    """The series axes other than depth that take more than one value in ``table`` (weight decay,
    dropout, init, ...; derived from the model columns, so new grid axes show up by themselves)."""
    return [
        a
        for a in series_axes()
        if a != "depth" and a in table and table[a].nunique(dropna=False) > 1
    ]


def with_setup(table: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """``table`` with a ``setup`` column naming its values of ``axes`` (e.g. "wd 5e-4")."""
    table = table.copy()
    if not axes:
        table["setup"] = "all models"
        return table
    table["setup"] = [
        ", ".join(_value_label(a, v) for a, v in zip(axes, values, strict=True))
        for values in table[axes].itertuples(index=False)
    ]
    return table


def _setups(table: pd.DataFrame, axes: list[str]) -> list[str]:
    ordered = table.sort_values(axes, na_position="first") if axes else table
    return list(dict.fromkeys(ordered["setup"]))


def _facets(table: pd.DataFrame) -> tuple[pd.DataFrame, list, list]:
    axes = setup_axes(table)
    table = with_setup(table, axes)
    return table, _setups(table, axes), sorted(table["depth"].unique())


def _facet_axes(
    table: pd.DataFrame, legend_width: float, xlabel: str, ylabel: str, rows: str | None = None
):
    """A grid of titled, labelled axes (rows: setup, or the values of column ``rows`` in order of
    appearance; columns: depth) and per cell ``(ax, rows of the cell)``."""
    if rows is None:
        table, setups, depths = _facets(table)
        rows = "setup"
    else:
        setups, depths = list(dict.fromkeys(table[rows])), sorted(table["depth"].unique())
    fig, axes = plt.subplots(
        len(setups),
        len(depths),
        figsize=(2.8 * len(depths) + legend_width, 2.3 * len(setups) + 0.4),
        squeeze=False,
        sharex="col",
        sharey=True,
        constrained_layout=True,
    )
    cells = []
    for r, setup in enumerate(setups):
        for c, depth in enumerate(depths):
            ax = axes[r, c]
            ax.set_title(f"depth {depth}, {setup}", fontsize=8)
            if r == len(setups) - 1:
                ax.set_xlabel(xlabel)
            if c == 0:
                ax.set_ylabel(ylabel)
            cell = table[(table[rows] == setup) & (table["depth"] == depth)]
            if cell.empty:  # e.g. a setup trained at one depth only
                ax.set_axis_off()
            cells.append((ax, cell))
    return fig, axes, cells


def _width_lines(ax, cell: pd.DataFrame, x: str, y: str, palette: dict, marker: float) -> None:
    """One line per width: the mean over seeds of ``y`` against ``x``, with a min–max band."""
    for width, rows in cell.groupby("width"):
        per_model = rows.groupby(["seed", x])[y].mean().unstack(0)
        mean = per_model.mean(axis=1)
        colour = palette[int(width)]
        ax.fill_between(
            mean.index, per_model.min(axis=1), per_model.max(axis=1),
            color=colour, alpha=0.2, linewidth=0,
        )  # fmt: skip
        ax.plot(mean.index, mean, marker="o", markersize=marker, color=colour,
                label=str(int(width)))  # fmt: skip


def _legend(fig, axes, title: str | None = "width") -> None:
    """One figure legend of every labelled line of every panel (widths in numeric order)."""
    entries = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    labels = list(entries)
    if all(label.isdigit() for label in labels):
        labels.sort(key=int)
    if labels:
        handles = [entries[label] for label in labels]
        fig.legend(handles, labels, title=title, loc="outside right center", fontsize=7)


def ablation_curves_plot(tables: dict, scope: str = "all") -> plt.Figure:
    """Agreement with the intact model against the fraction of units zeroed (all hidden layers at
    once), one line per width; columns depth, rows weight decay; the threshold dashed."""
    use_style()
    curves = tables["curves"]
    curves = curves[curves["scope"] == scope]
    threshold = float(tables["units"]["threshold"].iloc[0]) if "units" in tables else 0.8
    palette = _width_palette(curves["width"].unique())
    fig, axes, cells = _facet_axes(
        curves, 1.2, "fraction of units zeroed", "agreement with intact net"
    )
    for ax, cell in cells:
        _width_lines(ax, cell, "fraction", "agreement", palette, 2.5)
        ax.axhline(threshold, color="black", linestyle="--", linewidth=0.8)
        ax.set_ylim(-0.02, 1.02)
    _legend(fig, axes)
    fig.suptitle("Random zero-ablation of all hidden layers (mean over orders and seeds)")
    return fig


def _g_label(growth: pd.DataFrame, depth, wd, quantity, layer: str = "all") -> str:
    if growth is None or growth.empty:
        return ""
    row = growth[
        (growth["depth"] == depth)
        & (growth["setup"] == wd)
        & (growth["quantity"] == quantity)
        & (growth["layer"] == layer)
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
    axes = setup_axes(summary)
    summary, wds, depths = _facets(summary)
    if growth is not None:
        growth = with_setup(growth, axes)
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
                rows = sub[(sub["depth"] == depth) & (sub["setup"] == wd)]
                if rows.empty:
                    continue
                per_seed = rows.pivot_table(index="width", columns="seed", values="normalised")
                per_seed = per_seed.where(per_seed > 0)
                mean = per_seed.mean(axis=1)
                label = f"d{depth}, {wd}" + _g_label(growth, depth, wd, quantity, layer)
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
    net = with_setup(units[units["layer"] == "all"], setup_axes(units))
    long = net.melt(
        id_vars=["width", "depth", "setup", "seed"],
        value_vars=["prunability", "compressibility"],
        var_name="measure",
        value_name="fraction",
    )
    grid = sns.relplot(
        data=long,
        x="width",
        y="fraction",
        hue="setup",
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
    against the layer number, one line per width (mean over seeds, min–max band); columns depth,
    rows measure and setup."""
    use_style()
    units = tables["units"]
    layers = with_setup(units[units["layer"] != "all"], setup_axes(units))
    layers["layer_number"] = layers["layer_index"] + 1
    long = layers.melt(
        id_vars=["width", "depth", "setup", "seed", "layer_number"],
        value_vars=["prunability", "compressibility"],
        var_name="measure",
        value_name="fraction",
    )
    long["panel"] = long["measure"] + ", " + long["setup"]
    palette = _width_palette(long["width"].unique())
    fig, axes, cells = _facet_axes(long, 1.2, "hidden layer", "fraction", rows="panel")
    for ax, cell in cells:
        _width_lines(ax, cell, "layer_number", "fraction", palette, 3)
        ax.set_ylim(-0.02, 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(fig, axes)
    fig.suptitle("Per-layer prunability (only that layer ablated) and PCA compressibility")
    return fig


SPLIT_PARTS = {
    "prunable_fraction": "prunable",
    "redundant_fraction": "redundant (of the non-prunable)",
    "non_redundant_fraction": "non-redundant",
}


def split_plot(tables: dict) -> plt.Figure:
    """How the units of the whole network split into prunable, redundant and non-redundant ones
    against width (stacked shares, mean over seeds); columns depth, rows setup (e.g. weight decay
    off / on), so a shift of the split with a training factor reads down a column."""
    use_style()
    units = tables["units"]
    net = units[units["layer"] == "all"].copy()
    for column, quantity in (
        ("prunable_fraction", "prunable"),
        ("redundant_fraction", "redundant"),
        ("non_redundant_fraction", "non_redundant"),
    ):
        net[column] = net[quantity] / net["units"]
    colours = sns.color_palette("colorblind", 3)
    fig, axes, cells = _facet_axes(net, 1.8, "width", "share of units")
    for ax, cell in cells:
        mean = cell.groupby("width")[list(SPLIT_PARTS)].mean().sort_index()
        if not mean.empty:
            ax.stackplot(
                mean.index, *[mean[p] for p in SPLIT_PARTS], labels=list(SPLIT_PARTS.values()),
                colors=colours, alpha=0.85,
            )  # fmt: skip
            ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1)
    _legend(fig, axes, None)
    fig.suptitle("Split of the units: prunable / redundant / non-redundant (whole network)")
    return fig


FIGURES = {
    "ablation_curves": ablation_curves_plot,
    "unit_counts": unit_counts_plot,
    "fractions": fractions_plot,
    "per_layer": per_layer_plot,
    "split": split_plot,
}
