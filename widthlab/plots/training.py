"""Figures of the training stage, drawn from results/summary/training.parquet and histories."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from widthlab.plots import use_style


def accuracy_vs_width(table: pd.DataFrame):
    """Final train/test accuracy against width; a panel per depth, hue by weight decay."""
    use_style()
    long = table.melt(
        id_vars=["model", "width", "depth", "weight_decay", "seed"],
        value_vars=["train_acc", "test_acc"],
        var_name="split",
        value_name="accuracy",
    )
    long["split"] = long["split"].str.removesuffix("_acc")
    grid = sns.relplot(
        data=long,
        x="width",
        y="accuracy",
        hue="weight_decay",
        style="split",
        col="depth",
        kind="line",
        marker="o",
        errorbar=("pi", 100),
        height=2.8,
        aspect=1.2,
        palette="colorblind",
    )
    grid.set(xscale="log", xlabel="width")
    for ax in grid.axes.flat:
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    grid.figure.suptitle("Final accuracy vs width", y=1.03)
    return grid.figure


def learning_curves(histories: pd.DataFrame):
    """Train loss per epoch, coloured by width; panels by depth × weight decay."""
    use_style()
    grid = sns.relplot(
        data=histories,
        x="epoch",
        y="train_loss",
        hue="width",
        units="model",
        estimator=None,
        row="weight_decay",
        col="depth",
        kind="line",
        height=2.4,
        aspect=1.4,
        palette="viridis",
        hue_norm=plt.matplotlib.colors.LogNorm(),
        linewidth=0.8,
    )
    grid.set(yscale="log")
    return grid.figure
