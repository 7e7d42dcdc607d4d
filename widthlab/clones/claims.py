"""The clones stage's headline rows (torch-free)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from widthlab.clones.ensembles import gap_exponent
from widthlab.clones.growth import growth_exponent
from widthlab.clones.settings import CloneSettings
from widthlab.clones.summary import _conditions

PAPER = "Doimo et al. 2022"


def _verdict_positive(values: np.ndarray, strong: float | None = None) -> str:
    """The rule shared by the ratio and growth claims. With two or more values: ``yes`` when the
    95 % t-interval lies above 0 and the mean is ≥ ``strong`` (if given), ``partly`` when the
    interval lies above 0 but the mean is below ``strong``, ``no`` when the interval reaches 0
    (no effect shown). With one value (no interval): ``partly`` if it is > 0, else ``no``.
    ``n/a`` without values."""
    from widthlab.headline import t_interval

    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "n/a"
    mean = values.mean()
    low, _ = t_interval(values)
    if values.size < 2:
        return "partly" if mean > 0 else "no"
    if not low > 0:
        return "no"
    return "yes" if strong is None or mean >= strong else "partly"


def _matched_log_ratio(a: pd.DataFrame, b: pd.DataFrame, on: Sequence[str]) -> pd.DataFrame:
    """log2(#clones in a / #clones in b) for the models of a and b that agree on ``on``."""
    keys = [c for c in on if c in a.columns and c in b.columns]
    left = a[[*keys, "n_clones", "train_error"]].astype({k: object for k in keys})
    right = b[[*keys, "n_clones", "train_error"]].astype({k: object for k in keys})
    left, right = left.fillna({k: "∅" for k in keys}), right.fillna({k: "∅" for k in keys})
    pairs = left.merge(right, on=keys, suffixes=("_a", "_b"))
    pairs["log2_ratio"] = np.log2(pairs["n_clones_a"] / pairs["n_clones_b"])
    return pairs


def _mean_by_width(summary: pd.DataFrame, column: str) -> str:
    means = summary.groupby("width")[column].mean()
    return ", ".join(f"{int(w)}: {v:.3g}" for w, v in means.items())


def headline(tables: dict[str, pd.DataFrame], settings: CloneSettings) -> pd.DataFrame:
    """The clones stage's rows of the headline contract (``widthlab.headline``), one per claim:

    1. growth: #clones ∝ W above a critical width. Quantity: the exponent b of #clones ∝ W^b
       per (condition, seed) of the primary grid at its largest weight decay, over the widths
       at and above the condition's fitted critical width. ``yes``: mean b ≥ 0.75 and its 95 %
       interval above 0; ``partly``: the interval above 0 but mean b < 0.75 (growth, slower
       than ∝ W), or a single series with b > 0; ``no``: the interval reaches 0.
    2. interpolation (one row per other grid whose models have another ``variant``): log2 of
       #clones (primary) / #clones (that grid) for models equal in every other column.
       ``yes`` when the 95 % interval lies above 0, ``no`` when it reaches 0, ``partly`` for
       a single pair with a ratio > 0; ``n/a`` when no such grid exists or it interpolates as
       often as the primary grid.
    3. weight decay: log2 #clones (largest weight decay) / #clones (none), matched models of
       the primary grid; the same rule as 2; ``n/a`` without both.
    4. ensemble gap: the log-log slope of chunk test error − error_∞ against chunk size
       (``gap_method`` chunks, sizes below W with a positive gap) per model of the primary
       grid at its largest weight decay. ``yes``: mean in [−0.75, −0.25] and interval below 0;
       ``partly``: mean < 0 otherwise; ``no``: mean ≥ 0.
    5. ensembles: error(one wide model) − error(ensemble of K ≥ 2 narrow ones) at the same total
       width, every condition. ``yes``: mean ≤ 0, or its interval contains 0; ``partly``:
       mean ≤ 0.01; ``no`` otherwise.
    """
    from widthlab.headline import headline_row, headline_table, t_interval

    summary, growth, gap = tables["summary"], tables["growth"], tables["gap"]
    ensembles = tables["ensembles"]
    primary, gap_method = settings.primary, settings.gap_method
    rows = []
    main = summary[summary["grid"] == primary]
    wd_max = float(main["weight_decay"].max()) if len(main) else float("nan")
    regular = main[main["weight_decay"] == wd_max]
    conditions = [c for c in _conditions(summary) if c != "weight_decay"]

    # 1. growth
    values = []
    fits = growth[(growth["grid"] == primary) & (growth["weight_decay"] == wd_max)]
    for _, fit in fits.iterrows():
        sel = regular
        for c in conditions:
            sel = sel[(sel[c] == fit[c]) | (sel[c].isna() & pd.isna(fit[c]))]
        if not np.isnan(fit["critical_width"]):
            sel = sel[sel["width"] >= fit["critical_width"]]
        for _, seed in sel.groupby("seed"):
            values.append(growth_exponent(seed["width"], seed["n_clones"]))
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    holds = _verdict_positive(finite, strong=0.75)
    crit = ", ".join(f"{c:.0f}" for c in fits["critical_width"] if np.isfinite(c)) or "none"
    rows.append(
        headline_row(
            PAPER,
            "Above a critical width the last hidden layer splits into clones: #clones grows "
            "∝ W (clone size w_c* independent of W)",
            f"exponent b of #clones ∝ W^b (grid {primary}, weight decay {wd_max:g})",
            "log-log least squares per condition × seed over W ≥ W_crit; t-interval",
            finite,
            holds,
            f"b = {finite.mean() if finite.size else float('nan'):.2f} over {finite.size} "
            f"series; W_crit {crit}; mean w_c* by W: {_mean_by_width(regular, 'clone_size')}; "
            f"#clones by W: {_mean_by_width(regular, 'n_clones')}; b by one criterion alone: "
            + ", ".join(
                f"{label} {fits[f'exponent_{name}'].mean():.2f}"
                for name, label in (("ii", "Δ"), ("r2", "R²"), ("train", "train error"))
                if f"exponent_{name}" in fits
            ),
        )
    )

    # 2. interpolation: the other grids with another variant
    primary_variant = set(main["variant"].fillna("∅")) if "variant" in main else {"∅"}
    others = [
        g
        for g in sorted(set(summary["grid"]) - {primary})
        if "variant" in summary
        and set(summary[summary["grid"] == g]["variant"].fillna("∅")) - primary_variant
    ]
    for g in others:
        other = summary[summary["grid"] == g]
        keys = [c for c in _conditions(summary) if c != "variant"] + ["width", "seed"]
        pairs = _matched_log_ratio(main, other, keys)
        ratios = pairs["log2_ratio"].to_numpy()
        holds = _verdict_positive(ratios)
        note = ""
        if other["interpolating"].mean() >= main["interpolating"].mean():
            holds, note = "n/a", f" (grid {g} interpolates as often as {primary})"
        rows.append(
            headline_row(
                PAPER,
                "Clones need zero training error: interpolating networks hold more clones "
                "than the same networks stopped before interpolating",
                f"log2 #clones ({primary}) / #clones ({g}), matched models",
                "matched width, depth, weight decay, seed; t-interval",
                ratios,
                holds,
                f"{len(pairs)} pairs; train error {pairs['train_error_a'].mean():.3f} "
                f"({primary}) vs {pairs['train_error_b'].mean():.3f} ({g}); #clones "
                f"{pairs['n_clones_a'].mean():.2f} vs {pairs['n_clones_b'].mean():.2f}{note}",
            )
        )
    if not others:
        rows.append(
            headline_row(
                PAPER,
                "Clones need zero training error: interpolating networks hold more clones "
                "than the same networks stopped before interpolating",
                "log2 #clones (interpolating) / #clones (stopped early)",
                "matched models; t-interval",
                [],
                "n/a",
                "no grid of non-interpolating models (another variant) is analysed",
            )
        )

    # 3. weight decay
    if len(main) and wd_max > 0 and (main["weight_decay"] == 0).any():
        keys = [*conditions, "width", "seed"]
        pairs = _matched_log_ratio(regular, main[main["weight_decay"] == 0], keys)
        ratios = pairs["log2_ratio"].to_numpy()
        holds = _verdict_positive(ratios)
        detail = (
            f"{len(pairs)} pairs; #clones {pairs['n_clones_a'].mean():.2f} (wd {wd_max:g}) vs "
            f"{pairs['n_clones_b'].mean():.2f} (wd 0)"
        )
    else:
        ratios, holds = [], "n/a"
        detail = "the primary grid lacks models with and without weight decay"
    rows.append(
        headline_row(
            PAPER,
            "Regularisation favours clones: with weight decay the layer holds more clones",
            f"log2 #clones (weight decay {wd_max:g}) / #clones (none), matched models",
            "matched width, depth, seed; t-interval",
            ratios,
            holds,
            detail,
        )
    )

    # 4. ensemble gap exponent
    slopes = []
    if len(gap):
        sub = gap[(gap["method"] == gap_method) & gap["model"].isin(set(regular["model"]))]
        slopes = [gap_exponent(g) for _, g in sub.groupby("model")]
    slopes = np.asarray(slopes, dtype=np.float64)
    finite = slopes[np.isfinite(slopes)]
    if finite.size == 0:
        holds = "n/a"
    else:
        _, high = t_interval(finite)
        mean = finite.mean()
        decays = finite.size >= 2 and high < 0
        holds = "yes" if decays and -0.75 <= mean <= -0.25 else ("partly" if mean < 0 else "no")
    err_inf = (
        ", ".join(f"{e:.3f}" for e in sorted(set(ensembles["error_infinity"])))
        if len(ensembles)
        else "none"
    )
    rows.append(
        headline_row(
            PAPER,
            "Chunk test error − error_∞ falls like w_c^(−1/2) (the clones act as an ensemble)",
            f"log-log slope of chunk test error − error_∞ vs chunk size ({gap_method})",
            "least squares per model over chunks < W with a positive gap; t-interval",
            finite,
            holds,
            f"slope {finite.mean() if finite.size else float('nan'):.2f} over {finite.size} "
            f"models (−0.5 expected); error_∞ per condition {err_inf}",
        )
    )

    # 5. narrow ensembles vs one wide model
    if len(ensembles):
        comparable = ensembles[(ensembles["members"] >= 2) & ensembles["wide_error"].notna()]
    else:
        comparable = pd.DataFrame(columns=["wide_error", "ensemble_error"])
    diffs = (comparable["wide_error"] - comparable["ensemble_error"]).to_numpy(dtype=np.float64)
    if diffs.size == 0:
        holds = "n/a"
    else:
        low, high = t_interval(diffs)
        mean = diffs.mean()
        holds = "yes" if mean <= 0 or low <= 0 <= high else ("partly" if mean <= 0.01 else "no")
    rows.append(
        headline_row(
            PAPER,
            "One wide network is as accurate as an ensemble of narrow networks of the same "
            "total last-layer width",
            "test error (one wide model) − test error (K-seed narrow ensemble)",
            "K ≥ 2, equal total width K·w; t-interval over (condition, w, K)",
            diffs,
            holds,
            f"{diffs.size} comparisons; mean ensemble error "
            f"{comparable['ensemble_error'].mean():.3f}, wide {comparable['wide_error'].mean():.3f}"
            if diffs.size
            else "no ensemble with a trained single model of the same total width",
        )
    )
    return headline_table(rows)
