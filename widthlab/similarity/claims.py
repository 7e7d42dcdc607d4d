"""The similarity stage's headline rows (torch-free). Every verdict comes from
:func:`widthlab.headline.claim`, i.e. the one rule of :mod:`widthlab.stats`.

The unit of replication is the training seed: a row's series (models of one seed that differ
only in the varied axis), matched pairs or models are reduced to one value per seed first
(:func:`widthlab.stats.per_seed`), and the interval is a t-interval over those seed values. A
comparison contrasts only models trained with one recipe (:mod:`widthlab.recipe`): the recipe
is part of every series' and pair's key, and a claim whose only contrasts cross recipes is n/a
("confounded: …"). Rows that rest on blocks are recomputed at the declared alternative block
thresholds (``blocks.threshold_alternatives``): ``robust`` says no alternative and no left-out
seed changes the verdict. ``docs/stages/similarity.md`` states each claim with its rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from widthlab import stats
from widthlab.headline import claim, headline_table, not_measured
from widthlab.similarity.settings import PC1_REMOVED_SUFFIX, estimator_name
from widthlab.similarity.summary import _family

PAPER = "Nguyen, Raghu & Kornblith 2021"
WIDER = (
    "Wider networks develop a block structure: a larger share of their layers forms blocks of "
    "highly similar representations."
)
DEEPER = "Deeper networks develop a block structure as well."
LESS_DATA = (
    "Block structure appears when capacity is large relative to the training set: less "
    "training data gives more block structure at the same width and depth."
)
PC1 = (
    "Inside the block the first principal component explains a larger share of the variance "
    "than in the other layers."
)
REMOVE_PC1 = "Removing the first principal component from every layer removes the block."
ACROSS_SEEDS = "Block layers are dissimilar across seeds, while the other layers are similar."
ERRORS = (
    "Wide and deep models make different errors: their predictions agree less often than two "
    "seeds of the same architecture."
)
CLASSES = "Wide and deep models differ in per-class accuracy beyond seed noise."
RECIPE = "recipe"


def model_columns(table: pd.DataFrame) -> list[str]:
    cols = list(table.columns)
    return cols[: cols.index("estimator")] if "estimator" in cols else cols


def series_key(table: pd.DataFrame, vary: str) -> list[str]:
    """Columns that hold a series fixed: every model column but the id, the seed and ``vary``,
    and the training recipe."""
    keep = [c for c in model_columns(table) if c not in ("model", "seed", vary)]
    return keep + ([RECIPE] if RECIPE in table else [])


def _size_rank(value) -> float:
    """Training-set size as a number (None / NaN = all = ∞)."""
    return float("inf") if value is None or pd.isna(value) else float(value)


def _rank(axis: str):
    if axis == "train_size":
        return lambda v: np.log2(np.asarray([_size_rank(x) for x in v], dtype=float))
    return lambda v: np.log2(np.asarray(v, dtype=float))


def series_slopes(table: pd.DataFrame, axis: str, column: str) -> pd.DataFrame:
    """Per (series, seed): the OLS slope of ``column`` on log₂ ``axis``; series with one level
    of the axis are dropped. Columns ``seed, value``."""
    rows = []
    key = series_key(table, axis)
    for _, sub in table.groupby([*key, "seed"], dropna=False, sort=True):
        x = _rank(axis)(sub[axis])
        if len(np.unique(x)) < 2:
            continue
        rows.append({"seed": sub["seed"].iloc[0], "value": stats.ols_slope(x, sub[column])})
    return pd.DataFrame(rows, columns=["seed", "value"])


def confounded_axis(table: pd.DataFrame, axis: str) -> str | None:
    """n/a reason when the axis varies only across recipes: no series inside one recipe has
    two levels of it, but models of different recipes do."""
    if RECIPE not in table or table[axis].nunique(dropna=False) < 2:
        return None
    loose = [c for c in series_key(table, axis) if c != RECIPE]
    varies = table.groupby([*loose, "seed"], dropna=False)[axis].nunique(dropna=False) > 1
    if not varies.any():
        return None
    mixed = table.groupby([*loose, "seed"], dropna=False).filter(
        lambda s: s[axis].nunique(dropna=False) > 1
    )
    return stats.confounder(mixed, axis, [RECIPE])


def _seeds(frame: pd.DataFrame) -> stats.SeedValues:
    return stats.SeedValues(stats.per_seed(frame, "value"))


def _deep(summary: pd.DataFrame, estimator: str, min_size: int) -> pd.DataFrame:
    main = summary[summary["estimator"] == estimator]
    return main[main["n_layers"] >= min_size]


def _fmt(values) -> str:
    values = stats.finite(values)
    return ", ".join(f"{v:+.3f}" for v in values) if len(values) else "none"


# ----------------------------------------------------------------------------------------------
# The rows
# ----------------------------------------------------------------------------------------------


def axis_row(summaries, primary, estimator, min_size, axis: str, text: str) -> dict:
    """Blocks grow along ``axis`` (width or depth): slope of the block fraction per doubling."""
    quantity = f"slope of the fraction of layers inside blocks per doubling of {axis}"
    deep = {t: _deep(s, estimator, min_size) for t, s in summaries.items()}
    slopes = {t: series_slopes(d, axis, "block_fraction") for t, d in deep.items()}
    main = slopes[primary]
    reason = confounded_axis(deep[primary], axis) if main.empty else None
    if main.empty and not reason:
        why = f"no series of models that differ only in {axis}"
        every = summaries[primary][summaries[primary]["estimator"] == estimator]
        if not series_slopes(every, axis, "block_fraction").empty:
            # e.g. depth 2 against depth 4: a 2-layer net cannot hold a block of 3 layers
            why += f" among those with at least {min_size} layers (the least block)"
        return not_measured(PAPER, text, quantity, why)
    levels = sorted(deep[primary][axis].unique().tolist())
    return claim(
        PAPER,
        text,
        quantity,
        f"{estimator_name(estimator)}; blocks = runs of ≥ {min_size} layers with all-pairs CKA "
        f"≥ {primary}; OLS per series (one seed and recipe, all else equal), series averaged "
        "per seed; t-interval over seeds",
        _seeds(main),
        null=0.0,
        direction=1,
        detail=f"{len(main)} {axis} series ({axis}s {levels}); slopes {_fmt(main['value'])}.",
        alternatives=[_seeds(s) for t, s in slopes.items() if t != primary],
        na_reason=reason,
    )


def less_data_pairs(deep: pd.DataFrame) -> pd.DataFrame:
    """Per (series, seed) with two or more training-set sizes: block fraction at the smallest
    size minus at the largest (all data)."""
    rows = []
    for _, sub in deep.groupby([*series_key(deep, "train_size"), "seed"], dropna=False):
        sizes = sub["train_size"].map(_size_rank).to_numpy()
        if len(np.unique(sizes)) < 2:
            continue
        fractions = sub["block_fraction"].to_numpy(dtype=float)
        diff = fractions[np.argmin(sizes)] - fractions[np.argmax(sizes)]
        rows.append({"seed": sub["seed"].iloc[0], "value": float(diff)})
    return pd.DataFrame(rows, columns=["seed", "value"])


def less_data_row(summaries, primary, estimator, min_size) -> dict:
    quantity = "fraction of layers inside blocks, smallest training set minus largest"
    deep = {t: _deep(s, estimator, min_size) for t, s in summaries.items()}
    pairs = {t: less_data_pairs(d) for t, d in deep.items()}
    main = pairs[primary]
    reason = confounded_axis(deep[primary], "train_size") if main.empty else None
    if main.empty and not reason:
        return not_measured(PAPER, LESS_DATA, quantity, "no models that differ only in data")
    return claim(
        PAPER,
        LESS_DATA,
        quantity,
        f"{estimator_name(estimator)}; pairs equal in all else (recipe included), averaged "
        "per seed; t-interval over seeds",
        _seeds(main),
        null=0.0,
        direction=1,
        detail=f"{len(main)} matched pairs; differences {_fmt(main['value'])}.",
        alternatives=[_seeds(p) for t, p in pairs.items() if t != primary],
        na_reason=reason,
    )


def _difference(summary, estimator, minuend: str, subtrahend: str) -> pd.DataFrame:
    """Models of ``estimator`` that have both columns, with ``value`` = minuend − subtrahend."""
    has = summary[summary["estimator"] == estimator].dropna(subset=[minuend, subtrahend])
    return has.assign(value=has[minuend] - has[subtrahend])


def pc1_row(summaries, primary, estimator) -> dict:
    quantity = "PC1 variance share, block layers minus other layers"

    def diffs(summary):
        return _difference(summary, estimator, "pc1_share_in_blocks", "pc1_share_outside")

    main = diffs(summaries[primary])
    if main.empty:
        return not_measured(PAPER, PC1, quantity, "no model has both block and other layers")
    return claim(
        PAPER,
        PC1,
        quantity,
        f"PCA of each layer's centred probe-set features; blocks from "
        f"{estimator_name(estimator)}; models with a block averaged per seed; t-interval over "
        "seeds",
        _seeds(main),
        null=0.0,
        direction=1,
        detail=(
            f"{len(main)} models with a block; mean PC1 share in blocks "
            f"{main['pc1_share_in_blocks'].mean():.2f}, outside "
            f"{main['pc1_share_outside'].mean():.2f}."
        ),
        alternatives=[_seeds(diffs(s)) for t, s in summaries.items() if t != primary],
    )


def remove_pc1_row(summaries, primary, estimator, min_size) -> dict:
    quantity = "block fraction after removing PC1 / before (models with a block)"
    removed_code = estimator + PC1_REMOVED_SUFFIX

    def ratios(summary):
        deep = _deep(summary, estimator, min_size)
        removed = summary[summary["estimator"] == removed_code]
        both = deep[deep["n_blocks"] > 0].merge(
            removed[["model", "block_fraction"]], on="model", suffixes=("", "_removed")
        )
        return both.assign(value=both["block_fraction_removed"] / both["block_fraction"])

    if not (summaries[primary]["estimator"] == removed_code).any():
        return not_measured(PAPER, REMOVE_PC1, quantity, f"{removed_code} is not configured")
    main = ratios(summaries[primary])
    if main.empty:
        return not_measured(PAPER, REMOVE_PC1, quantity, "no model has a block")
    return claim(
        PAPER,
        REMOVE_PC1,
        quantity,
        f"{estimator_name(removed_code)} vs {estimator_name(estimator)}; ratio per model, "
        "averaged per seed; t-interval over seeds; removed = less than half of the block "
        "fraction remains (declared null 0.5)",
        _seeds(main),
        null=0.5,
        direction=-1,
        detail=(
            f"block fraction {main['block_fraction'].mean():.2f} → "
            f"{main['block_fraction_removed'].mean():.2f} after removing PC1 ({len(main)} models)."
        ),
        alternatives=[_seeds(ratios(s)) for t, s in summaries.items() if t != primary],
    )


def across_seeds_row(summaries, primary, estimator) -> dict:
    quantity = "cross-seed CKA of the same layer, other layers minus block layers"

    def diffs(summary):
        return _difference(summary, estimator, "cross_seed_cka_outside", "cross_seed_cka_in_blocks")

    main = diffs(summaries[primary])
    if main.empty:
        return not_measured(PAPER, ACROSS_SEEDS, quantity, "needs ≥ 2 seeds and a block")
    return claim(
        PAPER,
        ACROSS_SEEDS,
        quantity,
        f"{estimator_name(estimator)} between seeds of one architecture; each model's value "
        "averages its pairs with the other seeds, models averaged per seed (each seed once); "
        "t-interval over seeds",
        _seeds(main),
        null=0.0,
        direction=1,
        detail=(
            f"{len(main)} models; cross-seed CKA in blocks "
            f"{main['cross_seed_cka_in_blocks'].mean():.2f}, outside "
            f"{main['cross_seed_cka_outside'].mean():.2f}."
        ),
        alternatives=[_seeds(diffs(s)) for t, s in summaries.items() if t != primary],
    )


def _seed_of(mid: str) -> int:
    import re

    match = re.search(r"-s(\d+)(?=(-v[a-z0-9]+)?$)", mid)
    return int(match.group(1)) if match else -1


def error_gaps(agreement: pd.DataFrame, recipes: Mapping[str, str] | None) -> pd.DataFrame:
    """Per wide-vs-deep pair trained with one recipe: the mean agreement of the seed pairs of its
    two architectures minus its own agreement (``value``), with the pair's seed."""
    baseline: dict[str, list[float]] = {}
    for _, row in agreement[agreement["kind"] == "seeds"].iterrows():
        for mid in (row["model_a"], row["model_b"]):
            baseline.setdefault(_family(mid), []).append(row["agreement"])
    rows = []
    for _, row in agreement[agreement["kind"] == "wide_vs_deep"].iterrows():
        a, b = row["model_a"], row["model_b"]
        base = baseline.get(_family(a), []) + baseline.get(_family(b), [])
        if not base:
            continue
        same = recipes is None or recipes.get(a) == recipes.get(b)
        rows.append(
            {
                "seed": _seed_of(a),
                "model_a": a,
                "model_b": b,
                "same_recipe": same,
                "baseline": float(np.mean(base)),
                "agreement": float(row["agreement"]),
                "value": float(np.mean(base) - row["agreement"]),
            }
        )
    columns = ["seed", "model_a", "model_b", "same_recipe", "baseline", "agreement", "value"]
    return pd.DataFrame(rows, columns=columns)


def errors_row(agreement, recipes) -> dict:
    quantity = "prediction agreement, seed pairs minus wide-vs-deep pairs"
    gaps = error_gaps(agreement, recipes)
    clean = gaps[gaps["same_recipe"]]
    if gaps.empty:
        return not_measured(PAPER, ERRORS, quantity, "needs ≥ 2 seeds and wide-vs-deep pairs")
    reason = None
    if clean.empty:
        from widthlab.recipe import recipe_differences

        keys = recipe_differences([recipes[m] for m in (*gaps["model_a"], *gaps["model_b"])])
        reason = f"confounded: {', '.join(keys)} differs between every wide and deep model"
        clean = gaps
    dropped = len(gaps) - int(gaps["same_recipe"].sum())
    return claim(
        PAPER,
        ERRORS,
        quantity,
        "share of probe examples with the same predicted class; per wide-vs-deep pair of one "
        "recipe against the mean seed-pair agreement of its two architectures; pairs averaged "
        "per seed; t-interval over seeds",
        _seeds(clean),
        null=0.0,
        direction=1,
        detail=(
            f"agreement between seeds {clean['baseline'].mean():.3f}, between wide and deep "
            f"{clean['agreement'].mean():.3f} ({len(clean)} pairs"
            + (f"; {dropped} pairs across recipes left out" if dropped and not reason else "")
            + ")."
        ),
        na_reason=reason,
    )


def classes_row(classes: pd.DataFrame, alpha: float) -> dict:
    """Per-class differences are tested per comparison (seed-averaged correctness, permutation
    test, BH over classes); there is no seed-level interval of them, so the row reports the
    tests' outcome as its detail and no verdict."""
    quantity = "classes with a significant accuracy difference (BH q < alpha), per comparison"
    if classes.empty:
        return not_measured(PAPER, CLASSES, quantity, "no wide-vs-deep pairs in the grids")
    frac = classes.groupby("comparison")["significant"].mean()
    detail = (
        f"{int(classes['significant'].sum())} of {len(classes)} class comparisons significant "
        f"(BH q < {alpha}); {int((frac > 0).sum())} of {len(frac)} wide-vs-deep comparisons "
        f"have at least one; largest |difference| {classes['diff'].abs().max():.3f} "
        "(the run's summary/similarity_classes.parquet)."
    )
    return not_measured(
        PAPER,
        CLASSES,
        quantity,
        "no seed-level interval: each comparison is one test over seed-averaged predictions",
        detail,
    )


def headline(
    summaries: Mapping[float, pd.DataFrame],
    agreement: pd.DataFrame,
    classes: pd.DataFrame,
    estimator: str,
    min_size: int,
    alpha: float = 0.05,
    recipes: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The stage's claims. ``summaries``: the block summary table at the primary block threshold
    (the first key) and at each declared alternative."""
    primary = next(iter(summaries))
    if recipes:
        summaries = {t: s.assign(**{RECIPE: s["model"].map(recipes)}) for t, s in summaries.items()}
    rows = [
        axis_row(summaries, primary, estimator, min_size, "width", WIDER),
        axis_row(summaries, primary, estimator, min_size, "depth", DEEPER),
        less_data_row(summaries, primary, estimator, min_size),
        pc1_row(summaries, primary, estimator),
        remove_pc1_row(summaries, primary, estimator, min_size),
        across_seeds_row(summaries, primary, estimator),
        errors_row(agreement, recipes),
        classes_row(classes, alpha),
    ]
    return headline_table(rows)


__all__: Sequence[str] = ("headline",)
