"""Figures of the transfer stage (Gilboa & Gur-Ari 2019), drawn only from its summary tables.

- ``by_width``: :func:`widthlab.transfer.width_table` (``quantity, depth, width, backbone, shots,
  layer, images, mean, ci_low, ci_high, n``): lines are means over seeds, bands their 95 %
  t-intervals (no band with one seed);
- ``summary``: :func:`widthlab.transfer.finetune_summary` (one row per model × backbone × shots);
- ``atlas``: the atlas cells of :func:`widthlab.transfer.atlas_table`, stacked.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LogNorm, Normalize

from widthlab.plots import use_style

BACKBONE_ORDER = ["trained", "random", "trained − random"]
QUANTITY_LABELS = {
    "target_acc": "target test accuracy",
    "source_acc": "source test accuracy",
    "gap": "trained − random accuracy",
    "recon_r2": "input reconstruction R²",
    "recon_mse": "input reconstruction MSE",
    "knn_acc": "kNN accuracy (target labels)",
    "linear_acc": "linear accuracy (target labels)",
}


def _log2_x(ax) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(plt.NullFormatter())


def _shots_order(values) -> list[str]:
    values = [str(v) for v in dict.fromkeys(values)]
    return sorted((v for v in values if v != "all"), key=int) + [v for v in values if v == "all"]


def _lines(ax, frame: pd.DataFrame, hue: str, order, palette, style: str | None = None) -> None:
    """Mean against width per ``hue`` (and ``style``) with its t-interval as a band."""
    styles = list(dict.fromkeys(frame[style])) if style else [None]
    dashes = ["-", "--", ":", "-."]
    for level, colour in zip(order, palette, strict=False):
        for k, value in enumerate(styles):
            sub = frame[frame[hue] == level]
            if style:
                sub = sub[sub[style] == value]
            sub = sub.sort_values("width")
            if sub.empty:
                continue
            label = level if not style or len(styles) == 1 else f"{level} · {value}"
            ax.plot(
                sub["width"],
                sub["mean"],
                marker="o",
                markersize=3,
                color=colour,
                linestyle=dashes[k % len(dashes)],
                label=label,
            )
            ax.fill_between(sub["width"], sub["ci_low"], sub["ci_high"], color=colour, alpha=0.2)
    _log2_x(ax)


def _panel_grid(rows: int, cols: int, sharey: str | bool = "row"):
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.8 * cols, 2.5 * rows), squeeze=False, sharey=sharey
    )
    return fig, axes


def _finish(fig, axes, title: str, legend: str):
    for ax in axes[-1]:
        ax.set_xlabel("width")
    axes[0, 0].legend(title=legend, fontsize="x-small")
    fig.suptitle(title, y=1.02)
    fig.tight_layout()
    return fig


def target_vs_width(by_width: pd.DataFrame):
    """Target accuracy against width, one panel per shot count, trained vs random backbone; the
    source test accuracy beside it; a row per depth."""
    use_style()
    target = by_width[by_width["quantity"] == "target_acc"]
    source = by_width[by_width["quantity"] == "source_acc"]
    shots = _shots_order(target["shots"])
    depths = sorted(set(target["depth"])) or [None]
    fig, axes = _panel_grid(len(depths), len(shots) + 1, sharey=False)
    palette = sns.color_palette("colorblind", 2)
    for r, depth in enumerate(depths):
        for c, count in enumerate(shots):
            ax = axes[r, c]
            sub = target[(target["depth"] == depth) & (target["shots"] == count)]
            _lines(ax, sub, "backbone", BACKBONE_ORDER[:2], palette)
            ax.set_title(f"depth {depth} · {count} shots per class")
            ax.set_ylabel(QUANTITY_LABELS["target_acc"] if c == 0 else "")
        ax = axes[r, -1]
        _lines(ax, source[source["depth"] == depth], "backbone", BACKBONE_ORDER[:2], palette)
        ax.set_title(f"depth {depth} · source task")
        ax.set_ylabel(QUANTITY_LABELS["source_acc"])
    return _finish(fig, axes, "Last-layer fine-tuning on the target classes vs width", "backbone")


def gap_vs_width(by_width: pd.DataFrame):
    """Trained − random target accuracy against width, a line per shot count, panel per depth."""
    use_style()
    gap = by_width[by_width["quantity"] == "gap"]
    depths = sorted(set(gap["depth"])) or [None]
    shots = _shots_order(gap["shots"])
    fig, axes = _panel_grid(1, len(depths), sharey=True)
    palette = sns.color_palette("viridis", len(shots))
    for c, depth in enumerate(depths):
        ax = axes[0, c]
        _lines(ax, gap[gap["depth"] == depth], "shots", shots, palette)
        ax.axhline(0.0, color="0.4", linewidth=0.8)
        ax.set_title(f"depth {depth}")
        ax.set_xlabel("width")
    axes[0, 0].set_ylabel(QUANTITY_LABELS["gap"])
    axes[0, 0].legend(title="shots per class", fontsize="small")
    fig.suptitle("Trained minus random features: target accuracy gap vs width", y=1.03)
    fig.tight_layout()
    return fig


def target_vs_source(summary: pd.DataFrame):
    """Target accuracy (all shots, trained backbone) against source test accuracy, one point per
    model coloured by width: at equal source accuracy, are wider models higher?"""
    use_style()
    shots = _shots_order(summary["shots"])
    full = shots[-1] if shots else "all"
    sub = summary[(summary["backbone"] == "trained") & (summary["shots"] == full)].copy()
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    if len(sub):
        sns.scatterplot(
            data=sub,
            x="source_acc",
            y="target_acc",
            hue="width",
            style="depth" if sub["depth"].nunique() > 1 else None,
            palette="viridis",
            hue_norm=LogNorm(vmin=sub["width"].min(), vmax=max(sub["width"].max(), 2)),
            s=40,
            ax=ax,
        )
    ax.set_xlabel(QUANTITY_LABELS["source_acc"])
    ax.set_ylabel(f"target test accuracy ({full} shots)")
    ax.set_title("Target vs source accuracy (trained backbones)")
    return fig


def information(by_width: pd.DataFrame):
    """Hidden-state information against width: input reconstruction R² (source and target
    images) and kNN / linear read-out of the target labels; a line per backbone (colour) and
    layer (line style); a row per depth."""
    use_style()
    panels = [
        ("recon_r2", "source", "reconstruction R² · source images"),
        ("recon_r2", "target", "reconstruction R² · target images"),
        ("knn_acc", "target", "kNN read-out · target labels"),
        ("linear_acc", "target", "linear read-out · target labels"),
    ]
    info = by_width[by_width["quantity"].isin({p[0] for p in panels})]
    depths = sorted(set(info["depth"])) or [None]
    fig, axes = _panel_grid(len(depths), len(panels), sharey=False)
    palette = sns.color_palette("colorblind", 2)
    for r, depth in enumerate(depths):
        for c, (quantity, images, title) in enumerate(panels):
            ax = axes[r, c]
            sub = info[
                (info["depth"] == depth)
                & (info["quantity"] == quantity)
                & (info["images"] == images)
            ]
            _lines(ax, sub, "backbone", BACKBONE_ORDER[:2], palette, style="layer")
            ax.set_title(f"depth {depth} · {title}", fontsize="small")
    return _finish(fig, axes, "Information in the hidden state vs width", "backbone · layer")


def _tile(image: np.ndarray, channels: int, height: int, width: int) -> np.ndarray:
    """One cell's image as H × W × 3 in [0, 1] (min–max scaled per image)."""
    img = np.asarray(image, dtype=np.float64).reshape(channels, height, width)
    low, high = img.min(), img.max()
    img = (img - low) / (high - low) if high > low else np.zeros_like(img)
    img = np.transpose(img, (1, 2, 0))
    return np.repeat(img, 3, axis=2) if channels == 1 else img[:, :, :3]


def atlas_canvas(cells: pd.DataFrame, column: str = "image", border: int = 1):
    """(RGB canvas, purity mask) of one model's atlas: each cell's tile framed in its purity
    colour, empty cells white. Exposed for tests; :func:`atlas` draws it."""
    grid = int(cells["grid"].iloc[0])
    channels, height, width = (
        int(cells[c].iloc[0]) for c in ("image_channels", "image_height", "image_width")
    )
    size_y, size_x = height + 2 * border, width + 2 * border
    canvas = np.ones((grid * size_y, grid * size_x, 3))
    cmap, norm = plt.get_cmap("viridis"), Normalize(0.0, 1.0)
    for row in cells.itertuples():
        y0 = (grid - 1 - int(row.cell_y)) * size_y  # embedding y upwards
        x0 = int(row.cell_x) * size_x
        canvas[y0 : y0 + size_y, x0 : x0 + size_x] = cmap(norm(row.purity))[:3]
        tile = _tile(getattr(row, column), channels, height, width)
        canvas[y0 + border : y0 + border + height, x0 + border : x0 + border + width] = tile
    return canvas


def atlas(cells: pd.DataFrame):
    """One atlas per model side by side (widths left to right; a row per depth × seed ×
    backbone, the random twin below the trained model): the mean input image of each cell,
    framed in the colour of its class purity; with feature visualisation on, an extra row per
    model shows each cell's optimised input."""
    use_style()
    if cells.empty:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no atlas (no model of the atlas seeds)", ha="center", va="center")
        return fig
    columns = ["image"]
    if "feature_image" in cells and cells["feature_image"].notna().all():
        columns.append("feature_image")
    if "backbone" not in cells:
        cells = cells.assign(backbone="trained")
    backbones = [b for b in ("trained", "random") if b in set(cells["backbone"])]
    rows = [
        (depth, seed, backbone, column)
        for depth, seed in sorted(cells.groupby(["depth", "seed"]).groups)
        for backbone in backbones
        for column in columns
    ]
    widths = sorted(set(cells["width"]))
    fig, axes = plt.subplots(
        len(rows), len(widths), figsize=(2.2 * len(widths) + 0.8, 2.4 * len(rows)), squeeze=False
    )
    for r, (depth, seed, backbone, column) in enumerate(rows):
        for c, width in enumerate(widths):
            ax = axes[r, c]
            ax.axis("off")
            sub = cells[
                (cells["depth"] == depth)
                & (cells["seed"] == seed)
                & (cells["width"] == width)
                & (cells["backbone"] == backbone)
            ]
            if sub.empty:
                continue
            ax.imshow(atlas_canvas(sub, column), interpolation="nearest")
            purity = np.average(sub["purity"], weights=sub["count"])
            what = "" if column == "image" else " · feature vis."
            ax.set_title(
                f"w{width} · d{depth} · s{seed} · {backbone}{what}\n{sub['layer'].iloc[0]}, "
                f"purity {purity:.2f}",
                fontsize="small",
            )
    mappable = plt.cm.ScalarMappable(norm=Normalize(0.0, 1.0), cmap="viridis")
    fig.colorbar(mappable, ax=axes, shrink=0.6, label="cell class purity")
    method = cells["embedding"].iloc[0]
    images = cells["images"].iloc[0] if "images" in cells else "source"
    fig.suptitle(
        f"Activation atlases of {images}-class examples ({method}; frame = purity)", y=1.02
    )
    return fig


FIGURES = {
    "target_vs_width": ("by_width", target_vs_width),
    "gap_vs_width": ("by_width", gap_vs_width),
    "target_vs_source": ("summary", target_vs_source),
    "information_fig": ("by_width", information),
    "atlas_fig": ("atlas", atlas),
}
