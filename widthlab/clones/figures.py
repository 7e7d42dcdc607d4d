"""Figures of the clones stage (Doimo et al. 2022), drawn from its tidy tables.

Per-model tables (``widthlab.clones.measure.per_model_table``) start with the model columns and hold
``chunk_size, metric, method, split, mean, std, n_chunks, layer_width, chunk_fraction``; the
summary has one row per model (``clone_size, n_clones, flagged, …``); the growth table one row per
group (``slope, intercept, critical_width``); the gap table ``chunk_size, method, gap``.
Filter the tables to the models a figure should show (one depth, one condition) before plotting.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from widthlab.plots import log2_x, placeholder, use_style, width_lines

METHOD_LABELS = {
    "head": "trained head (restricted)",
    "head_rescaled": "trained head × W/w",
    "readout": "retrained readout",
}
METRIC_LABELS = {
    "ii_chunk_to_full": "Δ(chunk → full)",
    "ii_full_to_chunk": "Δ(full → chunk)",
    "r2": "ridge R² (chunk → full)",
    "residual_corr": "residual |corr| (outside)",
}


def _chunk_lines() -> dict:
    """Chunk curves: a line per layer width, coloured on a log scale of the width (a fresh
    norm each time: a LogNorm keeps the limits of the first data it scales)."""
    return {
        "palette": "viridis",
        "hue_norm": plt.matplotlib.colors.LogNorm(),
        "markersize": 3,
        "height": 2.4,
    }


def _width_column(table: pd.DataFrame) -> str:
    return "layer_width" if "layer_width" in table.columns else "width"


def chunk_accuracy(table: pd.DataFrame, title: str | None = None):
    """Chunk accuracy against chunk size: a panel per method (columns) and split (rows), a line
    per layer width (seeds pooled: mean and range)."""
    use_style()
    sub = table[table["metric"] == "accuracy"].copy()
    sub["method"] = pd.Categorical(
        sub["method"].map(METHOD_LABELS).fillna(sub["method"]),
        [METHOD_LABELS[m] for m in METHOD_LABELS if m in set(sub["method"])]
        + sorted(set(sub["method"]) - set(METHOD_LABELS)),
    )
    hue = _width_column(table)
    grid = width_lines(
        sub,
        "mean",
        title or "Chunk accuracy vs chunk size",
        x="chunk_size",
        hue=hue,
        col="method",
        row="split",
        row_order=[s for s in ("train", "test") if s in set(sub["split"])],
        facet_kws={"sharey": True},
        **_chunk_lines(),
    )
    grid.set_axis_labels("chunk size w", "accuracy")
    grid.set_titles("{row_name} · {col_name}")
    return grid.figure


def chunk_similarity(table: pd.DataFrame, title: str | None = None):
    """Information imbalance (both directions), ridge R² and residual correlation against chunk
    size, a line per layer width."""
    use_style()
    metrics = [m for m in METRIC_LABELS if m in set(table["metric"])]
    sub = table[table["metric"].isin(metrics)].copy()
    sub["metric"] = pd.Categorical(
        sub["metric"].map(METRIC_LABELS), [METRIC_LABELS[m] for m in metrics]
    )
    grid = width_lines(
        sub,
        "mean",
        title or "Chunks vs the full layer",
        x="chunk_size",
        hue=_width_column(table),
        col="metric",
        col_wrap=min(len(metrics), 4),
        facet_kws={"sharey": False},
        **_chunk_lines(),
    )
    grid.set_axis_labels("chunk size w", "")
    grid.set_titles("{col_name}")
    return grid.figure


def clone_growth(
    summary: pd.DataFrame,
    growth: pd.DataFrame | None = None,
    hue: str = "weight_decay",
    col: str | None = "depth",
    title: str | None = None,
):
    """#clones (W / w_c*) against width, one point per model (crosses: flagged, no chunk met the
    rule), with the fitted hinge of each group when ``growth`` is given."""
    use_style()
    data = summary.copy()
    data["rule met"] = np.where(data["flagged"], "no (w_c* = W)", "yes")
    grid = sns.relplot(
        data=data,
        x="width",
        y="n_clones",
        hue=hue if hue in data.columns else None,
        style="rule met",
        style_order=["yes", "no (w_c* = W)"],
        markers={"yes": "o", "no (w_c* = W)": "X"},
        col=col if col and col in data.columns else None,
        kind="scatter",
        palette="colorblind",
        height=2.8,
        aspect=1.1,
        s=30,
    )
    if growth is not None and len(growth):
        palette = dict(
            zip(
                sorted(data[hue].unique()) if hue in data.columns else [None],
                sns.color_palette("colorblind"),
                strict=False,
            )
        )
        panels = grid.axes_dict if col and col in data.columns else {None: grid.ax}
        xs = np.geomspace(data["width"].min(), data["width"].max(), 200)
        for key, ax in panels.items():
            rows = (
                growth if key is None or col not in growth.columns else growth[growth[col] == key]
            )
            for _, row in rows.iterrows():
                c = row["critical_width"]
                ys = np.where(xs <= c, 1.0, 1 + row["slope"] * (xs - c))
                if np.isnan(c):
                    ys = np.ones_like(xs)
                colour = palette.get(row[hue], "0.3") if hue in rows.columns else "0.3"
                ax.plot(xs, ys, color=colour, linewidth=1, alpha=0.8)
                if not np.isnan(c):
                    ax.axvline(c, color=colour, linestyle=":", linewidth=0.8)
    log2_x(grid.axes, y=True)
    grid.set_axis_labels("width W", "#clones = W / w_c*")
    grid.figure.suptitle(title or "Number of clones vs width (lines: hinge fits)", y=1.03)
    return grid.figure


def ensemble_gap(gap: pd.DataFrame, method: str = "head", title: str | None = None):
    """Chunk test error − error_∞ against chunk size on log–log axes, a line per layer width, with
    a w^(−1/2) reference through the median gap at the smallest chunk size. Gaps at or below the
    floor (``gap_floor``) are drawn at the floor, as the claim's fit uses them; the floor is the
    dotted line."""
    use_style()
    sub = gap[(gap["method"] == method) & (gap["chunk_size"] < gap["layer_width"])].copy()
    fig, ax = plt.subplots(figsize=(4.2, 3.2), constrained_layout=True)
    if sub.empty:
        ax.text(0.5, 0.5, "no chunk below W", ha="center", va="center", transform=ax.transAxes)
        return fig
    sub["gap"] = np.maximum(sub["gap"], sub["gap_floor"])
    ax.axhline(sub["gap_floor"].max(), color="0.5", linestyle=":", linewidth=1, label="floor")
    sns.lineplot(
        data=sub,
        x="chunk_size",
        y="gap",
        hue=_width_column(sub),
        palette="viridis",
        hue_norm=plt.matplotlib.colors.LogNorm(),
        marker="o",
        markersize=3,
        errorbar=("pi", 100),
        ax=ax,
    )
    w0 = sub["chunk_size"].min()
    anchor = sub[sub["chunk_size"] == w0]["gap"].median()
    xs = np.geomspace(w0, sub["chunk_size"].max(), 50)
    ax.plot(xs, anchor * (xs / w0) ** -0.5, "k--", linewidth=1, label="∝ w^(−1/2)")
    ax.set(yscale="log", xlabel="chunk size w", ylabel="chunk test error − ε∞")
    log2_x(ax)
    ax.legend(fontsize=7, title="width", title_fontsize=7)
    err = sub["error_infinity"].iloc[0] if "error_infinity" in sub.columns else np.nan
    ax.set_title(title or f"Chunk error gap ({METHOD_LABELS.get(method, method)}), ε∞ = {err:.3f}")
    return fig


def ensembles(table: pd.DataFrame, title: str | None = None):
    """Test error of K-seed ensembles of width-w models against total width K·w, with single
    models of the same total width (black)."""
    use_style()
    fig, ax = plt.subplots(figsize=(4.2, 3.2), constrained_layout=True)
    sns.lineplot(
        data=table,
        x="total_width",
        y="ensemble_error",
        hue="width",
        palette="viridis",
        hue_norm=plt.matplotlib.colors.LogNorm(),
        marker="o",
        markersize=3,
        ax=ax,
    )
    single = table[table["members"] == 1]
    single = single.sort_values("total_width")
    ax.plot(
        single["total_width"],
        single["ensemble_error"],
        "k-",
        marker="s",
        markersize=3,
        linewidth=1,
        label="one model",
    )
    ax.set(xlabel="total last-layer width K·w", ylabel="test error")
    log2_x(ax)
    ax.legend(fontsize=7, title="member width", title_fontsize=7)
    ax.set_title(title or "Narrow ensembles vs one wide model")
    return fig


def conditions(table: pd.DataFrame, title: str | None = None):
    """Mean #clones against width for every grid and weight decay (one line each; range over
    seeds as a band), a panel per depth: interpolating vs early-stopped, with vs without
    weight decay."""
    use_style()
    data = table.copy()
    data["condition"] = [
        f"{g} · wd {wd:g}" for g, wd in zip(data["grid"], data["weight_decay"], strict=True)
    ]
    grid = sns.relplot(
        data=data,
        x="width",
        y="n_clones",
        hue="condition",
        col="depth" if "depth" in data.columns else None,
        kind="line",
        marker="o",
        markersize=4,
        palette="colorblind",
        height=2.8,
        aspect=1.1,
    )
    log2_x(grid.axes, y=True)
    grid.set_axis_labels("width W", "#clones = W / w_c* (mean over seeds)")
    grid.figure.suptitle(title or "Number of clones by training condition", y=1.03)
    return grid.figure


def _match(table: pd.DataFrame, **values) -> pd.DataFrame:
    for name, value in values.items():
        if name in table.columns:
            table = table[table[name] == value]
    return table


def stage_figures(
    chunk_tables, tables: dict, primary: str, gap_method: str = "head"
) -> dict[str, object]:
    """The clones stage's figures, keyed by the summary rule's output names: chunk curves of the
    primary grid at its largest weight decay and smallest depth, clone growth, conditions, the
    ensembles of the condition with the most seeds and the ensemble gap."""
    summary = tables["summary"]
    main = summary[summary["grid"] == primary]
    wd = float(main["weight_decay"].max())
    depth = int(main["depth"].min())
    chosen = set(_match(main, weight_decay=wd, depth=depth)["model"])
    chunks = pd.concat(list(chunk_tables), ignore_index=True)
    chunks = chunks[chunks["model"].isin(chosen)]
    where = f"{primary}, depth {depth}, weight decay {wd:g}"
    ens = tables["ensembles"]
    ens_title = None
    if len(ens):
        best = ens.sort_values(["members", "total_width"]).iloc[-1]
        keep = np.ones(len(ens), dtype=bool)
        for name in ("dataset", "arch", "depth", "weight_decay", "variant"):
            if name in ens.columns:
                column = ens[name]
                keep &= (column == best[name]).to_numpy() | (
                    column.isna().to_numpy() & pd.isna(best[name])
                )
        ens = ens[keep]
        ens_title = (
            f"Narrow ensembles vs one wide model (depth {best['depth']}, "
            f"wd {best['weight_decay']:g}), ε∞ = {best['error_infinity']:.3f}"
        )
    gap = tables["gap"]
    if len(gap):
        gap = gap[gap["model"].isin(set(_match(main, weight_decay=wd)["model"]))]
    growth = tables["growth"]
    return {
        "chunk_accuracy": chunk_accuracy(chunks, f"Chunk accuracy ({where})"),
        "chunk_similarity": chunk_similarity(chunks, f"Chunks vs the full layer ({where})"),
        "clone_growth": clone_growth(main, growth[growth["grid"] == primary]),
        "conditions": conditions(tables["conditions"]),
        "ensembles": ensembles(ens, ens_title)
        if len(ens)
        else placeholder("Narrow ensembles vs one wide model", "no test logits"),
        "ensemble_gap": ensemble_gap(gap, gap_method)
        if len(gap)
        else placeholder(
            "Chunk error gap",
            "no error_∞: no condition of the primary grid has an ensemble of\n"
            "analyses.clones.ensemble_min_members seeds of one width",
        ),
    }
