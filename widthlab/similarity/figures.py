"""Figures of the similarity stage (Nguyen, Raghu & Kornblith 2021), drawn from its tidy tables.

Every per-model table starts with the model columns (``model, dataset, arch, width, depth,
bottleneck, train_size, weight_decay, seed``); the CKA tables are long
(``layer_i, layer_j, estimator, cka`` or ``layer_a, layer_b`` across models).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from widthlab.plots import placeholder, use_style, width_lines


def _size_label(value) -> str:
    """Training-set size as a label: ``all`` for None / NaN, else the integer (200.0 → 200)."""
    return "all" if value is None or pd.isna(value) else str(int(value))


def _matrix(table: pd.DataFrame, row: str, col: str) -> np.ndarray:
    return table.pivot_table(index=row, columns=col, values="cka", aggfunc="mean").to_numpy()


def _first_models(table: pd.DataFrame) -> pd.DataFrame:
    """Keep one model per (depth, width, training-set size): the lowest seed and weight decay
    (and, past those, the first id), so a heatmap cell shows a single trained network."""
    models = table.drop_duplicates("model").copy()
    models["_rank"] = models["train_size"].map(lambda v: np.inf if pd.isna(v) else float(v))
    models = models.sort_values(["seed", "weight_decay", "model"])
    keep = models.groupby(["depth", "width", "_rank"], dropna=False).head(1)["model"]
    return table[table["model"].isin(set(keep))]


def cka_heatmap_grid(table: pd.DataFrame, estimator: str = "debiased", title: str | None = None):
    """Within-model CKA heatmaps: rows depth (and training-set size, when it varies), columns
    width; one model per cell (lowest seed and weight decay, see :func:`_first_models`)."""
    use_style()
    sub = _first_models(table[table["estimator"] == estimator])
    if sub.empty:
        return placeholder(title or "Within-model CKA", f"no {estimator} CKA was computed")
    sub = sub.assign(_size=sub["train_size"].map(_size_label))
    sizes = sorted(sub["_size"].unique(), key=lambda v: (v == "all", int(v) if v != "all" else 0))
    rows = [(d, n) for d in sorted(sub["depth"].unique()) for n in sizes]
    rows = [(d, n) for d, n in rows if ((sub["depth"] == d) & (sub["_size"] == n)).any()]
    widths = sorted(sub["width"].unique())
    fig, axes = plt.subplots(
        max(len(rows), 1),
        max(len(widths), 1),
        figsize=(1.7 * len(widths) + 1.0, 1.6 * len(rows) + 0.6),
        squeeze=False,
        constrained_layout=True,
    )
    image = None
    for r, (depth, size) in enumerate(rows):
        for c, width in enumerate(widths):
            ax = axes[r, c]
            cell = sub[(sub["depth"] == depth) & (sub["width"] == width) & (sub["_size"] == size)]
            if cell.empty:
                ax.axis("off")
                continue
            image = ax.imshow(
                _matrix(cell, "layer_i", "layer_j"), vmin=0, vmax=1, cmap="magma", origin="lower"
            )
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if r == 0:
                ax.set_title(f"width {width}", fontsize=8)
            if c == 0:
                label = f"depth {depth}" + (f", n={size}" if len(sizes) > 1 else "")
                ax.set_ylabel(f"{label}\nlayer", fontsize=7)
            if r == len(rows) - 1:
                ax.set_xlabel("layer", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label=f"CKA ({estimator})")
    fig.suptitle(title or f"Within-model CKA ({estimator})")
    return fig


def cross_model_heatmaps(table: pd.DataFrame, estimator: str = "debiased", max_panels: int = 8):
    """Cross-model CKA heatmaps, one panel per pair (``kind`` column: ``wide_vs_deep``,
    ``seeds`` or ``explicit``; ``model_a`` / ``model_b``). At most ``max_panels`` pairs, taken
    in turn from each kind, deepest models first."""
    use_style()
    sub = table[table["estimator"] == estimator]
    if sub.empty:
        return placeholder("Cross-model CKA", "no model pairs (needs ≥ 2 seeds or ≥ 2 depths)")
    keys = sub[["kind", "model_a", "model_b"]].drop_duplicates()
    keys = keys.assign(_layers=keys["model_b"].map(sub.groupby("model_b")["layer_b"].max()))
    keys = keys.sort_values(["_layers", "model_b"], ascending=[False, True])
    keys["_turn"] = keys.groupby("kind").cumcount()
    keys = keys.sort_values(["_turn", "kind"]).head(max_panels)
    n = max(len(keys), 1)
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.6 * cols + 0.8, 2.6 * rows), squeeze=False, constrained_layout=True
    )
    image = None
    for ax, (_, key) in zip(axes.flat, keys.iterrows(), strict=False):
        cell = sub[(sub["model_a"] == key["model_a"]) & (sub["model_b"] == key["model_b"])]
        image = ax.imshow(
            _matrix(cell, "layer_a", "layer_b"),
            vmin=0,
            vmax=1,
            cmap="magma",
            origin="lower",
            aspect="auto",
        )
        ax.grid(False)
        ax.set_title(f"{key['kind']}\n{key['model_a']}\nvs {key['model_b']}", fontsize=6)
        ax.set_ylabel("layer (A)", fontsize=7)
        ax.set_xlabel("layer (B)", fontsize=7)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(plt.MaxNLocator(integer=True))
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label=f"CKA ({estimator})")
    fig.suptitle(f"Cross-model CKA ({estimator})")
    return fig


def _relative_depth(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    last = table.groupby("model")["layer"].transform("max").replace(0, 1)
    table["relative depth"] = table["layer"] / last
    table["train size"] = table["train_size"].map(_size_label)
    return table


def layer_curves(table: pd.DataFrame, value: str = "pc1_share", ylabel: str | None = None):
    """A per-layer quantity (PC1 share, probe accuracy) against relative depth, coloured by
    width; columns depth, rows training-set size; seeds drawn as a band."""
    use_style()
    data = _relative_depth(table)
    grid = sns.relplot(
        data=data,
        x="relative depth",
        y=value,
        hue="width",
        col="depth",
        row="train size" if data["train size"].nunique() > 1 else None,
        kind="line",
        marker="o",
        markersize=3,
        errorbar=("pi", 100),
        palette="viridis",
        hue_norm=plt.matplotlib.colors.LogNorm(),
        height=2.4,
        aspect=1.2,
    )
    grid.set(ylabel=ylabel or value)
    return grid.figure


def pc1_share_curves(table: pd.DataFrame):
    """Share of variance on the first principal component per layer."""
    fig = layer_curves(table, "pc1_share", "PC1 variance share")
    fig.suptitle("First principal component share per layer", y=1.03)
    return fig


def probe_accuracy_curves(table: pd.DataFrame):
    """Held-out linear-probe accuracy per layer."""
    fig = layer_curves(table, "probe_accuracy", "linear probe accuracy")
    fig.suptitle("Linear probe accuracy per layer", y=1.03)
    return fig


def block_size_plot(summary: pd.DataFrame):
    """Size of the largest block (layers) against width, per depth, per training-set size."""
    use_style()
    data = summary.copy()
    data["train size"] = data["train_size"].map(_size_label)
    order = sorted(
        data["train size"].unique(), key=lambda v: (v == "all", int(v) if v != "all" else 0)
    )
    grid = sns.relplot(
        data=data,
        x="width",
        y="block_size",
        hue="train size",
        hue_order=order,
        style="train size",
        col="depth",
        kind="line",
        marker="o",
        errorbar=("pi", 100),
        palette="colorblind",
        height=2.6,
        aspect=1.2,
    )
    grid.set(xscale="log", ylabel="largest block (layers)")
    widths = sorted(data["width"].unique())
    for ax in grid.axes.flat:
        ax.set_xticks(widths)
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.yaxis.set_major_locator(plt.MaxNLocator(integer=True))
    estimator = ", ".join(sorted(summary["estimator"].unique())) if "estimator" in summary else ""
    grid.figure.suptitle(f"Block size vs width, depth and training-set size ({estimator})", y=1.04)
    return grid.figure


def per_class_difference_plot(table: pd.DataFrame):
    """Per-class accuracy difference (A − B) for each compared pair; significant classes
    (Benjamini–Hochberg q < α) are filled, the others hollow."""
    use_style()
    if table.empty:
        return placeholder("Per-class accuracy differences", "no wide-vs-deep pairs")
    data = table.copy()
    data["class"] = data["class"].astype(str)
    pairs = list(dict.fromkeys(data["comparison"]))
    fig, axes = plt.subplots(
        len(pairs),
        1,
        figsize=(6, 2.0 * len(pairs) + 0.4),
        squeeze=False,
        constrained_layout=True,
    )
    for ax, pair in zip(axes[:, 0], pairs, strict=True):
        sub = data[data["comparison"] == pair]
        colors = sns.color_palette("colorblind", 2)
        ax.axhline(0, color="0.4", linewidth=0.8)
        for significant, color, face in ((True, colors[1], None), (False, colors[0], "none")):
            part = sub[sub["significant"] == significant]
            ax.scatter(
                part["class"],
                part["diff"],
                s=30,
                edgecolors=color,
                facecolors=face or color,
                label="q < α" if significant else "n.s.",
                zorder=3,
            )
        ax.set_ylabel("acc A − acc B")
        ax.set_title(pair, fontsize=7)
        ax.legend(fontsize=6, loc="best")
    axes[-1, 0].set_xlabel("class")
    fig.suptitle("Per-class accuracy differences (paired test, BH-corrected)")
    return fig


def agreement_plot(table: pd.DataFrame):
    """Per-example prediction agreement: between architectures vs between seeds."""
    use_style()
    if table.empty:
        return placeholder("Prediction agreement", "no model pairs (needs ≥ 2 seeds or ≥ 2 depths)")
    fig, ax = plt.subplots(figsize=(4.5, 3), constrained_layout=True)
    sns.barplot(data=table, x="kind", y="agreement", errorbar=("pi", 100), ax=ax)
    sns.stripplot(data=table, x="kind", y="agreement", color="0.2", size=3, ax=ax)
    ax.set_ylabel("fraction of probe examples\nwith the same prediction")
    ax.set_xlabel("")
    ax.set_title("Prediction agreement")
    return fig


def estimator_comparison(cross: pd.DataFrame):
    """Cross-seed CKA of the same layer against width, one line per estimator: the biased linear
    estimator rises with width on its own (≈ p/(p+n) for unrelated features), the unbiased ones
    do not; columns depth."""
    use_style()
    data = cross[(cross["kind"] == "seeds") & (cross["layer_a"] == cross["layer_b"])].copy()
    if data.empty:
        return placeholder("Cross-seed CKA by estimator", "no seed pairs (needs ≥ 2 seeds)")
    data["width"] = data["model_a"].str.extract(r"-w(\d+)-")[0].astype(int)
    data["depth"] = data["model_a"].str.extract(r"-d(\d+)-")[0].astype(int)
    grid = width_lines(
        data,
        "cka",
        "Cross-seed CKA by estimator",
        hue="estimator",
        style="estimator",
        col="depth",
        aspect=1.1,
    )
    grid.set(ylabel="CKA, same layer, two seeds")
    return grid.figure
