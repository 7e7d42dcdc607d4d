"""Figures of the bottleneck stage (Littwin et al. 2021), drawn only from its tables.

Each function takes the tables of :func:`widthlab.bottleneck.measure.run_study` (``curves``,
``summary``, ``kernel``) or :func:`widthlab.bottleneck.linear.run_linear_study`
(``linear_curves``, ``linear_summary``) and returns a matplotlib figure; :data:`FIGURES` names
them for the stage. The exact NTK has no width and no k (NA in the tables); it is drawn as a
black reference. The steps-to-threshold figure shows both step rules side by side; the others
show the ``own`` rule (every variant at the same fraction of its own stability limit), the one
the headline rows use.
"""

from __future__ import annotations

import functools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from widthlab.plots import use_style

NTK_STYLE = dict(color="black", linewidth=2.0, label="NTK (∞ width)")


def _finite_rows(df: pd.DataFrame, variant: str) -> pd.DataFrame:
    rows = df[df.variant == variant].copy()
    for col in ("width", "k"):
        if col in rows:
            rows[col] = rows[col].astype("float")
    return rows


def _k_palette(ks) -> dict:
    ks = sorted(int(k) for k in ks)
    colours = sns.color_palette("viridis", max(len(ks), 1))
    return {k: colours[i] for i, k in enumerate(ks)}


def loss_curves(tables: dict) -> plt.Figure:
    """Loss vs step (log–log; x = step + 1), one column per width, rows train / test: the exact
    NTK, the finite net without bottleneck and every bottleneck k (mean over seeds, band = range);
    dotted, in every column: the bottleneck limit with an infinitely wide encoder.
    """
    use_style()
    curves = tables["curves"]
    ntk = curves[curves.variant == "ntk"]
    finite = _finite_rows(curves, "finite")
    bottle = _finite_rows(curves, "bottleneck")
    limit = _finite_rows(curves, "limit")
    widths = sorted(set(finite.width.dropna()) | set(bottle.width.dropna())) or [np.nan]
    splits = ["train", "test"]
    fig, axes = plt.subplots(
        len(splits), len(widths), figsize=(3.2 * len(widths) + 1, 5.6), squeeze=False, sharey="row"
    )
    palette = _k_palette(bottle.k.dropna().unique())
    for col, width in enumerate(widths):
        for row, split in enumerate(splits):
            ax = axes[row, col]
            part = ntk[ntk.split == split]
            ax.plot(part.step + 1, part.loss, **NTK_STYLE)
            fin = finite[(finite.width == width) & (finite.split == split)]
            if len(fin):
                _band(ax, fin, color="0.45", linestyle="--", label="no bottleneck")
            for k, colour in palette.items():
                sub = bottle[(bottle.width == width) & (bottle.k == k) & (bottle.split == split)]
                if len(sub):
                    _band(ax, sub, color=colour, label=f"k = {k}")
                lim = limit[(limit.k == k) & (limit.split == split)]
                if len(lim):
                    mean = lim.groupby("step").loss.mean()
                    ax.plot(
                        mean.index + 1,
                        mean.values,
                        color=colour,
                        linestyle=":",
                        lw=1.5,
                        label=f"k = {k}, ∞-wide encoder",
                    )
            ax.set(xscale="log", yscale="log", xlabel="step + 1")
            ax.set_title(f"width {int(width)} · {split}" if width == width else split)
            if col == 0:
                ax.set_ylabel(f"{split} loss")
    handles, labels = axes[0, -1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(
        "Training with a bottleneck vs the infinite-width NTK (each at the same fraction of its "
        "own stability limit)"
    )
    fig.tight_layout()
    return fig


def _band(ax, rows: pd.DataFrame, color, label, linestyle="-"):
    stats = rows.groupby("step").loss.agg(["mean", "min", "max"]).reset_index()
    stats = stats[np.isfinite(stats["mean"])]
    ax.plot(stats.step + 1, stats["mean"], color=color, linestyle=linestyle, label=label)
    ax.fill_between(stats.step + 1, stats["min"], stats["max"], color=color, alpha=0.15, lw=0)


def _net_label(rows: pd.DataFrame) -> pd.Series:
    return np.where(
        rows.variant == "limit",
        "∞-wide encoder",
        "width " + rows.width.astype("Int64").astype(str),
    )


def _vs_k(ax, summary: pd.DataFrame, column: str, ylabel: str, logy: bool = False):
    """``column`` vs k per width (the ∞-wide-encoder limit as its own line), with the NTK
    (black) and the no-bottleneck nets (grey dashed, one per width) as horizontal references."""
    ntk = summary[summary.variant == "ntk"]
    bottle = pd.concat([_finite_rows(summary, "bottleneck"), _finite_rows(summary, "limit")])
    finite = _finite_rows(summary, "finite")
    if len(bottle) and bottle[column].notna().any():
        bottle = bottle.assign(net=_net_label(bottle)).sort_values(["variant", "width"])
        sns.lineplot(
            data=bottle,
            x="k",
            y=column,
            hue="net",
            marker="o",
            errorbar=("pi", 100),
            ax=ax,
            palette="crest",
            legend="full",
        )
    if len(ntk) and ntk[column].notna().any():
        ax.axhline(float(ntk[column].mean()), **NTK_STYLE)
    for width, rows in finite.groupby("width"):
        if rows[column].notna().any():
            ax.axhline(
                float(rows[column].mean()),
                color="0.45",
                linestyle="--",
                linewidth=1,
                label=f"no bottleneck, width {int(width)}",
            )
    ax.set(xscale="log", xlabel="bottleneck k", ylabel=ylabel)
    ks = sorted(int(k) for k in bottle.k.dropna().unique()) if len(bottle) else []
    if ks:
        ax.set_xticks(ks)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    if logy:
        ax.set_yscale("log")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="x-small")


def steps_to_threshold(tables: dict) -> plt.Figure:
    """Steps to the absolute loss threshold vs k (one line per width) and the NTK's, under both
    step rules (left: the NTK's step for every variant; right: each at the same fraction of its
    own stability limit); runs that never reached it (or diverged) are left out of the mean and
    counted in the panel's title."""
    use_style()
    summary = tables["summary"]
    rules = [r for r in ("common", "own") if r in set(summary.step_rule)]
    fig, axes = plt.subplots(1, len(rules), figsize=(5 * len(rules), 3.6), squeeze=False)
    for ax, rule in zip(axes[0], rules, strict=True):
        rows = summary[summary.step_rule == rule]
        _vs_k(ax, rows, "steps_to_threshold", "steps to threshold", logy=True)
        missed = int(rows.steps_to_threshold.isna().sum())
        label = "the NTK's step" if rule == "common" else "own stability limit × lr_fraction"
        ax.set_title(f"{label} (never reached: {missed})", fontsize="small")
    threshold = float(summary.threshold.iloc[0])
    fig.suptitle(f"steps to train loss ≤ {threshold:.3g}")
    fig.tight_layout()
    return fig


def feature_learning(tables: dict) -> plt.Figure:
    """Bottleneck representation (test set): centred alignment of its Gram with the target Gram
    after training (dotted: at init), CKA between init and trained, relative NTK change."""
    use_style()
    summary = tables["summary"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    _vs_k(axes[0], summary, "alignment_trained", "alignment with target (trained)")
    bottle = _finite_rows(summary, "bottleneck")
    if len(bottle):
        init = bottle.groupby("k").alignment_init.mean()
        axes[0].plot(init.index, init.values, color="0.3", linestyle=":", label="at init (mean)")
        axes[0].legend(fontsize="x-small")
    _vs_k(axes[1], summary, "cka_init_trained", "CKA(init, trained)")
    _vs_k(axes[2], summary, "kernel_change", "‖Θ_T − Θ_0‖ / ‖Θ_0‖")
    fig.suptitle("Feature learning in the bottleneck layer")
    fig.tight_layout()
    return fig


def final_test(tables: dict) -> plt.Figure:
    """Final test accuracy (classification) and test loss vs k."""
    use_style()
    summary = tables["summary"]
    has_acc = summary.final_test_acc.notna().any()
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(9 if has_acc else 5, 3.6))
    axes = np.atleast_1d(axes)
    _vs_k(axes[0], summary, "final_test_loss", "final test loss", logy=True)
    if has_acc:
        _vs_k(axes[1], summary, "final_test_acc", "final test accuracy")
    fig.tight_layout()
    return fig


def kernel_dynamics(tables: dict) -> plt.Figure:
    """λ_max of the empirical NTK and its relative change from init vs step, at the largest
    width (dotted: the ∞-wide-encoder limit)."""
    use_style()
    kernel = tables["kernel"]
    ntk = kernel[kernel.variant == "ntk"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    bottle = _finite_rows(kernel, "bottleneck")
    finite = _finite_rows(kernel, "finite")
    limit = _finite_rows(kernel, "limit")
    palette = _k_palette(bottle.k.dropna().unique())
    width = bottle.width.max() if len(bottle) else 0
    finite_width = finite.width.max() if len(finite) else 0
    for ax, column, label in (
        (axes[0], "lambda_max", "λ_max(Θ_t)"),
        (axes[1], "kernel_change", "‖Θ_t − Θ_0‖ / ‖Θ_0‖"),
    ):
        ax.plot(ntk.step + 1, ntk[column], **NTK_STYLE)
        fin = finite[finite.width == finite_width].groupby("step")[column].mean()
        if len(fin):
            ax.plot(
                fin.index + 1,
                fin.values,
                color="0.45",
                linestyle="--",
                label=f"no bottleneck, width {int(finite_width)}",
            )
        for k, colour in palette.items():
            sub = bottle[(bottle.width == width) & (bottle.k == k)].groupby("step")[column].mean()
            ax.plot(sub.index + 1, sub.values, color=colour, marker=".", label=f"k = {k}")
            lim = limit[limit.k == k].groupby("step")[column].mean()
            if len(lim):
                ax.plot(lim.index + 1, lim.values, color=colour, linestyle=":")
        ax.set(xscale="log", xlabel="step + 1", ylabel=label)
    axes[1].set_yscale("symlog", linthresh=1e-3)
    axes[1].set_ylim(bottom=0)
    axes[1].legend(fontsize="x-small")
    title = "Empirical NTK during training"
    fig.suptitle(
        f"{title} (bottleneck width {int(width)}; dotted: ∞-wide encoder)" if width else title
    )
    fig.tight_layout()
    return fig


def linear_curves(tables: dict) -> plt.Figure:
    """Deep linear nets: loss vs step per target direction — the lazy NTK limit, the reduced
    A·B model per d (solid) and the simulated wide net (dashed, same init)."""
    use_style()
    curves = tables["linear_curves"]
    targets = list(dict.fromkeys(curves.target))
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 3.8), squeeze=False)
    reduced = _finite_rows(curves, "reduced")
    simulated = _finite_rows(curves, "simulated")
    palette = _k_palette(reduced.k.dropna().unique())
    for ax, target in zip(axes[0], targets, strict=True):
        ntk = curves[(curves.variant == "ntk") & (curves.target == target)]
        ntk = ntk.groupby("step").loss.mean()
        ax.plot(ntk.index + 1, ntk.values, **NTK_STYLE)
        for k, colour in palette.items():
            red = reduced[(reduced.target == target) & (reduced.k == k)].groupby("step").loss
            ax.plot(red.mean().index + 1, red.mean().values, color=colour, label=f"reduced d={k}")
            sim = simulated[(simulated.target == target) & (simulated.k == k)].groupby("step").loss
            if len(sim.mean()):
                ax.plot(
                    sim.mean().index + 1,
                    sim.mean().values,
                    color=colour,
                    linestyle="--",
                    label=f"wide net d={k}",
                )
        summary = tables.get("linear_summary")
        if summary is not None and len(summary[summary.target == target]):
            threshold = float(summary[summary.target == target].threshold.mean())
            ax.axhline(threshold, color="0.5", linewidth=0.8, linestyle="-.", label="threshold")
        top = float(curves[curves.target == target].loss.replace(np.inf, np.nan).max())
        ax.set(xscale="log", yscale="log", xlabel="step + 1", ylabel="train loss")
        ax.set_ylim(bottom=1e-9 * top)  # exact fits reach float round-off; not of interest
        ax.set_title(f"target on the {target}-variance input direction")
        ax.legend(fontsize="x-small")
    fig.suptitle("Deep linear networks: bottleneck (reduced A·B model) vs the NTK limit")
    fig.tight_layout()
    return fig


FIGURES = {
    "loss_curves": loss_curves,
    "steps_to_threshold": steps_to_threshold,
    "feature_learning": feature_learning,
    "final_test": final_test,
    "kernel_dynamics": kernel_dynamics,
}
LINEAR_FIGURES = {"linear_curves": linear_curves}
#: the figures drawn from both step rules' rows (the others: the ``own`` rule's)
BOTH_RULES = ("steps_to_threshold",)


def regime_tables(tables: dict, regime: str, rule: str | None = "own") -> dict:
    """The rows of one regime of the stage's summary tables (``curves``, ``kernel``,
    ``summary``), without the ``regime`` column, of one step rule (None: both)."""
    part = {}
    for name in ("curves", "kernel", "summary"):
        table = tables[name]
        keep = table.regime == regime
        if rule is not None and "step_rule" in table:
            keep &= table.step_rule == rule
        part[name] = table[keep].drop(columns="regime")
    if part["summary"].empty:
        raise ValueError(f"the bottleneck tables have no rows of regime {regime!r}")
    return part


def figures_of_regime(tables: dict, regime: str) -> dict:
    """``{name: draw}`` for every figure of :data:`FIGURES`, bound to one regime's rows; each
    figure's title names the regime."""

    def titled(draw, part):
        fig = draw(part)
        title = fig._suptitle.get_text() if fig._suptitle is not None else ""
        fig.suptitle(f"[{regime}] {title}".strip())
        fig.tight_layout()
        return fig

    own, both = regime_tables(tables, regime), regime_tables(tables, regime, None)
    return {
        name: functools.partial(titled, draw, both if name in BOTH_RULES else own)
        for name, draw in FIGURES.items()
    }
