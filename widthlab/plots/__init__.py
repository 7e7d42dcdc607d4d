"""One figure style for every stage; each stage's figures live in its own module here.

Figures are drawn only from tidy tables, so a figure can be remade without touching tensors.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402


def use_style() -> None:
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 150, "savefig.bbox": "tight"})


def log2_x(axes, y: bool = False) -> None:
    """Log-2 x axes (width series double) labelled with plain numbers; ``y`` too when counts
    double with them."""
    import numpy as np

    for ax in np.ravel(axes):
        scales = [(ax.xaxis, ax.set_xscale)] + ([(ax.yaxis, ax.set_yscale)] if y else [])
        for axis, set_scale in scales:
            set_scale("log", base=2)
            axis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(plt.NullFormatter())


def width_lines(data, y: str, title: str | None = None, x: str = "width", **kwargs):
    """The house figure: ``y`` against width on a log-2 axis, a marked line per ``hue`` /
    ``style``, a panel per ``col`` / ``row``, the band spanning the seeds (every keyword goes to
    :func:`seaborn.relplot`). Returns the FacetGrid."""
    use_style()
    settings = {"kind": "line", "marker": "o", "errorbar": ("pi", 100), "height": 2.6}
    settings.update(aspect=1.2, palette="colorblind" if kwargs.get("hue") else None)
    grid = sns.relplot(data=data, x=x, y=y, **{**settings, **kwargs})
    log2_x(grid.axes)
    if title:
        grid.figure.suptitle(title, y=1.03)
    return grid


def placeholder(title: str, message: str = "nothing to show"):
    """A small figure that says why there is nothing to draw (e.g. one seed: no seed pairs)."""
    use_style()
    fig, ax = plt.subplots(figsize=(4.5, 1.6), constrained_layout=True)
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=8)
    fig.suptitle(title)
    return fig


def save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
