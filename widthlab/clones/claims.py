"""The clones stage's headline rows (torch-free). Every verdict comes from
:func:`widthlab.headline.claim`, i.e. the one rule of :mod:`widthlab.stats`: yes when the 95 %
interval over training seeds excludes the null on the claimed side, contradicted when it
excludes it on the other side, inconclusive when it contains it, n/a (with a reason) below
three seeds, for a confounded comparison, or at the floor of a measurement.

The unit of replication is the training seed: every row first reduces its measurements to one
value per seed (a seed's conditions, widths or matched pairs averaged,
:func:`widthlab.stats.per_seed`). The rows that rest on clone counts are recomputed under every
declared alternative of the clone-size rule (``threshold_alternatives``; the summary's
``n_clones_alt<k>`` columns) and are robust only if none changes the verdict. The models are
the primary grid's at its largest weight decay (the paper's regime), unless a row says
otherwise. ``docs/stages/clones.md`` states each claim with its rule.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from widthlab import stats
from widthlab.clones.evidence import (
    count_columns,
    gap_exponents,
    growth_exponents,
    matched_log_ratios,
    regularised,
    select,
    wide_against_ensemble,
)
from widthlab.clones.settings import CloneSettings
from widthlab.clones.summary import condition_columns, groups
from widthlab.headline import claim, headline_table, not_measured
from widthlab.recipe import parse_recipe, recipe_key

PAPER = "Doimo et al. 2022"
#: recipe settings that decide when training stops: the factor the interpolation row varies
STOPPING_SETTINGS = ("max_epochs", "until_zero_train_error")
GROWTH = (
    "Above a critical width the number of clones grows linearly with the width (#clones ∝ W); "
    "tested as at least linear growth, exponent b > 1 against the null b = 1"
)
INTERPOLATION = (
    "Clones need zero training error: interpolating networks hold more clones than the same "
    "networks stopped before interpolating"
)
WEIGHT_DECAY = "Regularisation favours clones: with weight decay the layer holds more clones"
GAP = (
    "Chunk test error − error_∞ falls as a power of the chunk size (the paper: ∝ w^(−1/2), the "
    "clones acting as an ensemble)"
)
WIDE = (
    "A wide network with clones performs significantly better than an ensemble of narrow "
    "networks whose last layer has the size of a clone"
)


def at_floor(frame: pd.DataFrame) -> bool:
    """Every model has exactly one clone (w_c* = W): the count is at its floor."""
    return len(frame) > 0 and bool((frame["n_clones"] <= 1).all())


FLOOR = "floor: every compared model has one clone (no chunk smaller than W meets the rule)"


def _without_stopping(recipe: str) -> str:
    settings = parse_recipe(recipe)
    return recipe_key({k: v for k, v in settings.items() if k not in STOPPING_SETTINGS})


def _interval(estimate: stats.Estimate, reference: float) -> str:
    if not (np.isfinite(estimate.ci_low) and np.isfinite(estimate.ci_high)):
        return "no interval"
    inside = estimate.ci_low <= reference <= estimate.ci_high
    return f"{reference:g} {'inside' if inside else 'outside'} the interval"


def _by_width(frame: pd.DataFrame, column: str) -> str:
    means = frame.groupby("width")[column].mean()
    return ", ".join(f"{int(w)}: {v:.3g}" for w, v in means.items())


# ----------------------------------------------------------------------------------------------
# 1. Growth above the critical width
# ----------------------------------------------------------------------------------------------


def growth_row(summary: pd.DataFrame, settings: CloneSettings) -> dict:
    regular, decay = regularised(summary, settings.primary)
    quantity = "exponent b of #clones ∝ W^b above the critical width (b = 1: linear)"
    if regular.empty or regular["width"].nunique() < 2:
        return not_measured(PAPER, GROWTH, quantity, "fewer than two widths in the primary grid")
    exponents = [
        growth_exponents(summary, settings.primary, count, settings.critical_width)
        for count, _ in count_columns(summary)
    ]
    evidence = [stats.SeedValues(stats.per_seed(e, "exponent")) for e in exponents]
    crit = (
        f"declared {settings.critical_width}"
        if settings.critical_width is not None
        else "held out per seed: "
        + (", ".join(f"{c:g}" for c in exponents[0]["critical_width"] if np.isfinite(c)) or "none")
    )
    estimate = evidence[0].estimate()
    detail = (
        f"grid {settings.primary}, weight decay {decay:g}; b = {estimate.value:.2f} "
        f"({_interval(estimate, 1.0)}); W_crit {crit}; mean w_c* by W: "
        f"{_by_width(regular, 'clone_size')}; #clones by W: {_by_width(regular, 'n_clones')}."
    )
    return claim(
        PAPER,
        GROWTH,
        quantity,
        "log-log least squares per condition × seed over W ≥ W_crit, conditions averaged per "
        "seed; t-interval over seeds",
        evidence[0],
        null=1.0,  # the paper's linear growth: an interval below 1 contradicts it
        direction=1,
        detail=detail,
        alternatives=evidence[1:],
        na_reason=FLOOR if at_floor(regular) else None,
    )


# ----------------------------------------------------------------------------------------------
# 2.–3. Matched comparisons: interpolation and weight decay
# ----------------------------------------------------------------------------------------------


def _ratio_claim(
    title: str, quantity: str, frames: tuple[pd.DataFrame, pd.DataFrame], keys, na_reason
) -> dict:
    """A matched-ratio row: per seed the mean log₂ ratio of its pairs, > 0 claimed."""
    a, b = frames
    pairs = matched_log_ratios(a, b, keys)
    if pairs.empty:
        return not_measured(PAPER, title, quantity, "no matched pairs of models")
    evidence = [
        stats.SeedValues(stats.per_seed(matched_log_ratios(a, b, keys, count), "log2_ratio"))
        for count, _ in count_columns(a)
        if count in b
    ]
    detail = (
        f"{len(pairs)} pairs; #clones {pairs['n_clones_a'].mean():.2f} vs "
        f"{pairs['n_clones_b'].mean():.2f}; train error {pairs['train_error_a'].mean():.3f} vs "
        f"{pairs['train_error_b'].mean():.3f}."
    )
    if na_reason is None and at_floor(pd.concat([a, b])):
        na_reason = FLOOR
    return claim(
        PAPER,
        title,
        quantity,
        "pairs equal in every model column but the factor, same seed; pairs averaged per "
        "seed; t-interval over seeds",
        evidence[0],
        null=0.0,
        direction=1,
        detail=detail,
        alternatives=evidence[1:],
        na_reason=na_reason,
    )


def interpolation_rows(summary: pd.DataFrame, settings: CloneSettings) -> list[dict]:
    """One row per other grid whose models carry another ``variant`` (trained without reaching
    zero training error), against the primary grid's models equal in every other column.
    Their recipes may differ only in when training stops (:data:`STOPPING_SETTINGS`)."""
    primary = settings.primary
    main = summary[summary["grid"] == primary]
    variants = set(main["variant"].fillna("∅")) if "variant" in main else {"∅"}
    others = [
        g
        for g in sorted(set(summary["grid"]) - {primary})
        if "variant" in summary
        and set(summary[summary["grid"] == g]["variant"].fillna("∅")) - variants
    ]
    if not others:
        return [
            not_measured(
                PAPER,
                INTERPOLATION,
                "log₂ #clones (interpolating) / #clones (stopped early), matched models",
                "no grid of models stopped before zero training error (another variant)",
            )
        ]
    keys = [*condition_columns(summary, without=("variant",)), "width", "seed"]
    rows = []
    for g in others:
        other = summary[summary["grid"] == g]
        reason = None
        if "recipe" in summary:
            both = pd.concat([main, other])
            both = both.assign(recipe=both["recipe"].map(_without_stopping))
            reason = stats.confounder(both, "grid", ["recipe"])
        if reason is None and other["interpolating"].mean() >= main["interpolating"].mean():
            reason = f"no contrast: grid {g} interpolates as often as grid {primary}"
        rows.append(
            _ratio_claim(
                INTERPOLATION,
                f"log₂ #clones ({primary}) / #clones ({g}), matched models",
                (main, other),
                keys,
                reason,
            )
        )
    return rows


def weight_decay_row(summary: pd.DataFrame, settings: CloneSettings) -> dict:
    """The primary grid's largest weight decay against none: models of any of the stage's grids
    without weight decay, matched to the primary's in every other condition, width and seed
    (a recipe that differs in more than the decay makes the row n/a)."""
    regular, decay = regularised(summary, settings.primary)
    quantity = f"log₂ #clones (weight decay {decay:g}) / #clones (none), matched models"
    plain = summary[summary["weight_decay"] == 0]
    if regular.empty or not decay > 0 or plain.empty:
        return not_measured(
            PAPER,
            WEIGHT_DECAY,
            quantity,
            "the stage's grids lack models with and without weight decay",
        )
    reason = None
    if "recipe" in summary:
        reason = stats.confounder(pd.concat([regular, plain]), "weight_decay", ["recipe"])
    keys = [*condition_columns(summary, without=("weight_decay",)), "width", "seed"]
    return _ratio_claim(WEIGHT_DECAY, quantity, (regular, plain), keys, reason)


# ----------------------------------------------------------------------------------------------
# 4. The chunk-error gap
# ----------------------------------------------------------------------------------------------


def gap_row(tables: Mapping[str, pd.DataFrame], settings: CloneSettings) -> dict:
    regular, decay = regularised(tables["summary"], settings.primary)
    ensembles = tables["ensembles"]
    quantity = (
        f"log-log slope of chunk test error − error_∞ vs chunk size ({settings.gap_method} "
        "chunks; −0.5 in the paper)"
    )
    if tables["gap"].empty or not tables["gap"]["model"].isin(set(regular["model"])).any():
        most = int(ensembles["members"].max()) if len(ensembles) else 0
        return not_measured(
            PAPER,
            GAP,
            quantity,
            f"no error_∞: it needs an ensemble of ≥ {settings.ensemble_min_members} seeds of "
            f"one width in a condition of grid {settings.primary}; the largest has {most}",
        )
    slopes = gap_exponents(tables["gap"], regular["model"], settings.gap_method)
    evidence = stats.SeedValues(stats.per_seed(slopes, "exponent"))
    estimate = evidence.estimate()
    reason = None
    if slopes["exponent"].isna().all():
        reason = (
            "floor: every model's chunk error is within the floor of error_∞ at all but one size"
        )
    inf = tables["gap"].drop_duplicates("error_infinity")["error_infinity"]
    detail = (
        f"grid {settings.primary}, weight decay {decay:g}; slope {estimate.value:.2f} "
        f"({_interval(estimate, -0.5)}) over {slopes['exponent'].notna().sum()} models; "
        f"{int(slopes['n_at_floor'].sum())} of {int(slopes['n_sizes'].sum())} points at the "
        f"floor; error_∞ per condition {', '.join(f'{e:.3f}' for e in sorted(inf))}."
    )
    return claim(
        PAPER,
        GAP,
        quantity,
        "least squares per model over every chunk size < W (gaps at the floor enter as the "
        "floor), models averaged per seed; t-interval over seeds",
        evidence,
        null=0.0,
        direction=-1,
        detail=detail,
        na_reason=reason,
    )


# ----------------------------------------------------------------------------------------------
# 5. One wide network against an ensemble of clone-sized narrow ones
# ----------------------------------------------------------------------------------------------


def wide_row(tables: Mapping[str, pd.DataFrame], settings: CloneSettings) -> dict:
    summary, ensembles = tables["summary"], tables["ensembles"]
    quantity = "error_∞ (narrow nets of clone size) − test error (one wide net)"
    if ensembles.empty:
        return not_measured(PAPER, WIDE, quantity, "no ensembles (no test logits)")
    main, skipped = wide_against_ensemble(summary, ensembles, settings)
    evidence = [
        stats.SeedValues(
            stats.per_seed(
                wide_against_ensemble(summary, ensembles, settings, size)[0], "difference"
            )
        )
        for _, size in count_columns(summary)
    ]
    if main.empty:
        return not_measured(PAPER, WIDE, quantity, "; ".join(skipped) or "no comparison")
    reason = None
    if "recipe" in summary:  # the wide nets and their ensembles' members, condition by condition
        columns = condition_columns(main)
        compared = []
        for _, row in main.drop_duplicates([*columns, "width", "member_width"]).iterrows():
            same = select(summary, {c: row[c] for c in columns})
            compared.append(same[same["width"].isin([row["width"], row["member_width"]])])
        reason = stats.confounder(pd.concat(compared), "width", ["recipe"])
    comparisons = []
    for _, same in groups(main, ["width", "clone_size", "member_width", "members"]):
        first = same.iloc[0]
        comparisons.append(
            f"W = {int(first['width'])} (w_c* = {first['clone_size']:g}) against "
            f"{int(first['members'])} nets of width {int(first['member_width'])}: error_∞ "
            f"{first['ensemble_error']:.3f}, wide {same['wide_error'].mean():.3f}"
        )
    detail = "; ".join(comparisons) + (f"; left out: {'; '.join(skipped)}" if skipped else "")
    detail += "."
    return claim(
        PAPER,
        WIDE,
        quantity,
        "per seed of the widest net (conditions averaged); error_∞ of the clone-sized "
        "ensemble is the reference; t-interval over the wide net's seeds",
        evidence[0],
        null=0.0,
        direction=1,
        detail=detail,
        alternatives=evidence[1:],
        na_reason=reason,
    )


def headline(tables: Mapping[str, pd.DataFrame], settings: CloneSettings) -> pd.DataFrame:
    """The stage's rows of the headline contract, in order: growth, interpolation (one per
    early-stopped grid), weight decay, the chunk-error gap, wide against narrow ensembles."""
    summary = tables["summary"]
    rows = [growth_row(summary, settings)]
    rows += interpolation_rows(summary, settings)
    rows.append(weight_decay_row(summary, settings))
    rows.append(gap_row(tables, settings))
    rows.append(wide_row(tables, settings))
    return headline_table(rows)
