"""The transfer stage's headline rows (torch-free). Every verdict comes from
:func:`widthlab.headline.claim`, i.e. the one rule of :mod:`widthlab.stats`.

The unit of replication is the training seed: a seed's width series (one per depth, weight
decay, recipe, …) each give one OLS slope on log₂ width, and the series of a seed are averaged
before the t-interval over seeds is taken. "At equal source accuracy" is a design, not an
adjustment: the grid's models trained with ``train.stop_at_test_acc`` stop at the first epoch
whose source test accuracy reaches that declared value, so every width is taken at one
accuracy; those rows read only them (and only those that reached it). A trained − random
comparison at the ceiling (random features within :data:`CEILING_MARGIN` of perfect target
accuracy) is n/a "ceiling", not a negative. ``docs/stages/transfer.md`` states each claim.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from widthlab import stats
from widthlab.headline import claim, headline_table, not_measured
from widthlab.recipe import parse_recipe
from widthlab.transfer.settings import ALL, PAPER
from widthlab.transfer.summary import atlas_purity

#: random features within this of perfect target accuracy leave no room for a trained − random
#: gap (declared before looking; digits: random width-256 features reach 0.98)
CEILING_MARGIN = 0.02
MODEL_KEYS = ("dataset", "arch", "depth", "bottleneck", "train_size", "weight_decay", "dropout",
              "init", "variant")  # fmt: skip
RECIPE = "recipe"


def stop_accuracy(recipe: str | None) -> float | None:
    """The declared source accuracy a recipe trains to, or None."""
    return parse_recipe(recipe).get("stop_at_test_acc") if recipe else None


def split_by_stopping(frame: pd.DataFrame, recipes: Mapping[str, str] | None):
    """(fully trained models, models taken at a declared source accuracy that reached it)."""
    if frame.empty:
        return frame, frame
    targets = frame["model"].map(lambda m: stop_accuracy((recipes or {}).get(m)))
    matched = targets.notna()
    reached = matched & (frame["source_acc"] >= targets.fillna(np.inf))
    return frame[~matched], frame[reached]


def series_slopes(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per (width series, seed): OLS slope of ``value`` per width doubling; ``seed, value``."""
    keys = [k for k in (*MODEL_KEYS, RECIPE) if k in frame]
    rows = []
    for _, sub in frame.groupby([*keys, "seed"], dropna=False, sort=True):
        x = np.log2(sub["width"].astype(float))
        if len(np.unique(x)) < 2:
            continue
        rows.append({"seed": sub["seed"].iloc[0], "value": stats.ols_slope(x, sub[value])})
    return pd.DataFrame(rows, columns=["seed", "value"])


def _seeds(frame: pd.DataFrame) -> stats.SeedValues:
    return stats.SeedValues(stats.per_seed(frame, "value"))


def slope_row(text, quantity, frame, value, detail="", na_reason=None) -> dict:
    slopes = series_slopes(frame, value) if len(frame) else pd.DataFrame()
    if slopes.empty:
        return not_measured(PAPER, text, quantity, "no width series of these models", detail)
    means = frame.groupby("width")[value].mean()
    by_width = ", ".join(f"w{int(w)}: {v:.3f}" for w, v in means.items())
    return claim(
        PAPER,
        text,
        quantity,
        "OLS slope on log2 width per width series, series averaged per seed; t-interval over seeds",
        _seeds(slopes),
        null=0.0,
        direction=1,
        detail=f"{detail}{'; ' if detail else ''}mean by width {by_width}.",
        na_reason=na_reason,
    )


def ceiling(random: pd.DataFrame) -> str | None:
    """n/a reason when the random backbones' target accuracy is at the ceiling at some width."""
    if random.empty:
        return None
    best = random.groupby("width")["target_acc"].mean().max()
    if best >= 1.0 - CEILING_MARGIN:
        return (
            f"ceiling: random features reach {best:.3f} target accuracy (within "
            f"{CEILING_MARGIN} of 1), no room for a trained − random difference"
        )
    return None


def matched_detail(matched: pd.DataFrame, recipes) -> str:
    targets = sorted({stop_accuracy(recipes.get(m)) for m in matched["model"]})
    return (
        f"{matched['model'].nunique()} models stopped at source test accuracy ≥ "
        f"{', '.join(f'{t:g}' for t in targets)} (reached {matched['source_acc'].min():.3f} … "
        f"{matched['source_acc'].max():.3f})"
    )


NO_MATCHED = "no models taken at a declared source accuracy (a grid with train.stop_at_test_acc)"


def why_not_matched(frame: pd.DataFrame, recipes) -> str:
    """Why no model counts as taken at a declared source accuracy: none was trained to one, or
    those that were never reached it (then the target is above what the recipe reaches)."""
    targets = frame["model"].map(lambda m: stop_accuracy((recipes or {}).get(m)))
    aimed = frame[targets.notna()]
    if aimed.empty:
        return NO_MATCHED
    declared = ", ".join(f"{t:g}" for t in sorted(set(targets.dropna())))
    return (
        f"none of the {aimed['model'].nunique()} models trained to a declared source test "
        f"accuracy ({declared}) reached it (best {aimed['source_acc'].max():.3f}): the target is "
        "above what their recipe reaches"
    )


def headline(tables: Mapping[str, pd.DataFrame], recipes: Mapping[str, str] | None = None):
    """The stage's headline rows from the summary's ``summary``, ``gaps``, ``information`` and
    ``atlas`` tables; ``recipes``: model id → training recipe (:mod:`widthlab.recipe`)."""
    recipes = dict(recipes or {})
    summary, gaps, info = tables["summary"], tables["gaps"], tables["information"]
    if recipes:
        summary = summary.assign(**{RECIPE: summary["model"].map(recipes)})
        gaps = gaps.assign(**{RECIPE: gaps["model"].map(recipes)})
    shots = list(dict.fromkeys(summary["shots"])) if len(summary) else [ALL]
    full = ALL if ALL in shots else shots[-1]
    fewest = min((s for s in shots if s != ALL), key=int, default=full)

    def pick(backbone, n_shots):
        return summary[(summary["backbone"] == backbone) & (summary["shots"] == n_shots)]

    trained, matched = split_by_stopping(pick("trained", full), recipes)
    unmatched = why_not_matched(pick("trained", full), recipes)
    random, _ = split_by_stopping(pick("random", full), recipes)
    few, _ = split_by_stopping(pick("trained", fewest), recipes)
    gap, _ = split_by_stopping(gaps[gaps["shots"] == full], recipes)
    at_ceiling = ceiling(random)
    rows = [
        slope_row(
            "Wider networks transfer better: last-layer fine-tuning accuracy on the target task "
            "rises with width",
            f"target test accuracy ({full} shots per class, trained backbone) per width doubling",
            trained,
            "target_acc",
        ),
        slope_row(
            "Target accuracy rises with width at equal source test accuracy",
            f"target test accuracy ({full} shots), backbones taken at one declared source "
            "accuracy, per width doubling",
            matched,
            "target_acc",
            matched_detail(matched, recipes) if len(matched) else NO_MATCHED,
        )
        if len(matched)
        else not_measured(
            PAPER,
            "Target accuracy rises with width at equal source test accuracy",
            "target accuracy per width doubling at one source accuracy",
            unmatched,
        ),  # fmt: skip
        slope_row(
            f"The width advantage holds for few-shot transfer ({fewest} examples per class)",
            f"target test accuracy ({fewest} shots per class, mean over draws) per width doubling",
            few,
            "target_acc",
        ),
        gap_row(gap, full, at_ceiling),
        slope_row(
            "The trained − random gap grows with width",
            f"trained − random target accuracy ({full} shots) per width doubling",
            gap,
            "gap",
            na_reason=at_ceiling,
        ),
        slope_row(
            "Control: random (untrained) features also improve with width",
            f"target test accuracy of the random backbone ({full} shots) per width doubling",
            random,
            "target_acc",
        ),
    ]
    rows += information_rows(info, matched, recipes, unmatched)
    rows.append(atlas_row(tables.get("atlas"), recipes))
    return headline_table(rows)


def gap_row(gap: pd.DataFrame, full, at_ceiling) -> dict:
    text = "Trained features transfer better than random features of the same width"
    quantity = f"trained − random target accuracy ({full} shots), mean over widths"
    if gap.empty:
        return not_measured(PAPER, text, quantity, "no trained and random backbones")
    by_width = gap.groupby("width")["gap"].mean()
    return claim(
        PAPER,
        text,
        quantity,
        "gap per model, averaged over the widths of each seed; t-interval over seeds",
        stats.SeedValues(stats.per_seed(gap, "gap")),
        null=0.0,
        direction=1,
        detail="gap by width " + ", ".join(f"w{int(w)}: {g:+.3f}" for w, g in by_width.items()),
        na_reason=at_ceiling,
    )


def information_rows(
    info: pd.DataFrame, matched: pd.DataFrame, recipes, unmatched: str = NO_MATCHED
) -> list[dict]:
    claims_ = (
        (
            "At equal source accuracy, wider hidden states hold more information about the input",
            "held-out ridge R² reconstructing the source test images from the last hidden "
            "layer, per width doubling",
            "recon_r2",
            "source",
        ),
        (
            "At equal source accuracy, wider hidden states hold more information about labels "
            "the model was not trained on",
            "kNN accuracy of the target labels from the last hidden layer, per width doubling",
            "knn_acc",
            None,
        ),
    )
    rows = []
    last = info[info["layer_index"] == info.groupby("model")["layer_index"].transform("max")]
    last = last[(last["backbone"] == "trained") & last["model"].isin(matched["model"])]
    for text, quantity, measure, images in claims_:
        sub = last[last["measure"] == measure]
        if images is not None:
            sub = sub[sub["images"] == images]
        if sub.empty:
            rows.append(not_measured(PAPER, text, quantity, unmatched))
            continue
        sub = sub.rename(columns={"value": measure})
        if recipes:
            sub = sub.assign(**{RECIPE: sub["model"].map(recipes)})
        detail = matched_detail(matched[matched["model"].isin(sub["model"])], recipes)
        rows.append(slope_row(text, quantity, sub, measure, detail))
    return rows


def atlas_row(atlas: pd.DataFrame | None, recipes) -> dict:
    text = "Activation atlases of wider networks separate the classes more cleanly"
    quantity = "example-weighted class purity of the atlas cells (trained), per width doubling"
    if atlas is None or atlas.empty:
        return not_measured(PAPER, text, quantity, "no atlases in this run")
    purity = atlas_purity(atlas)
    trained = purity[purity["backbone"] == "trained"]
    trained, _ = split_by_stopping(trained.assign(source_acc=np.nan), recipes)
    return slope_row(text, quantity, trained, "purity")
