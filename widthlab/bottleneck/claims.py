"""The bottleneck stage's headline rows (torch-free). Every verdict comes from
:func:`widthlab.headline.claim`, i.e. the one rule of :mod:`widthlab.stats`, on one value per
training seed.

Littwin et al. state their claims about an infinitely wide network with one finite bottleneck:
that is the ``limit`` variant (exact infinitely wide encoder), so the rows are about it; the
finite bottleneck nets of the widest width get their own acceleration row and the attribution
row. Every row is about the declared primary k (``primary_k``; null: the smallest k of the
regime), the other declared k are its robustness alternatives: a verdict that changes at one of
them is "not robust". Nothing is chosen on the seeds that test it. Acceleration compares every
variant at the same fraction of its *own* stability limit (step rule ``own``); the common-step
speed-ups are in the detail and the figures. ``docs/stages/bottleneck.md`` states each claim and
its rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from widthlab import stats
from widthlab.bottleneck.settings import PAPER, BottleneckSettings, LinearSettings
from widthlab.bottleneck.summary import add_run_metrics, bounded_speedup
from widthlab.headline import claim, headline_table, not_measured

OWN, COMMON = "own", "common"
SEED_T = "t-interval over seeds"


def _seeds(frame: pd.DataFrame, column: str) -> stats.SeedValues:
    return stats.SeedValues(stats.per_seed(frame, column))


def _per_k(rows: pd.DataFrame, column: str) -> str:
    """``k=2: 1.5, k=8: 0.9 (2 of 3 seeds)``: the mean per k over the finite seed values."""
    parts = []
    for k, group in rows.groupby("k"):
        values = stats.finite(group[column].to_numpy(dtype=np.float64))
        count = "" if len(values) == len(group) else f" ({len(values)} of {len(group)} seeds)"
        parts.append(f"k={int(k)}: " + (f"{values.mean():.3g}{count}" if len(values) else "none"))
    return ", ".join(parts) or "no runs"


class _Regime:
    """One regime's runs, split by variant and step rule, with its declared k."""

    def __init__(self, runs: pd.DataFrame, regime: str, primary: int, tolerance: float):
        self.name, self.primary, self.tolerance = regime, int(primary), float(tolerance)
        self.runs = runs[runs.regime == regime]
        self.ntk = self.pick("ntk", OWN)
        bottle = self.runs[self.runs.variant == "bottleneck"]
        self.width = int(bottle.width.max()) if len(bottle) else None

    def pick(self, variant: str, rule: str, k: int | None = None, width=None) -> pd.DataFrame:
        rows = self.runs[(self.runs.variant == variant) & (self.runs.step_rule == rule)]
        if width is not None:
            rows = rows[rows.width == width]
        return rows[rows.k == k] if k is not None else rows

    def net(self, variant: str, rule: str = OWN) -> pd.DataFrame:
        """The variant's runs (the finite nets: of the widest width)."""
        width = self.width if variant in ("bottleneck", "finite") else None
        return self.pick(variant, rule, width=width)

    def evidence(self, variant: str, column: str, rule: str = OWN):
        """(primary k's per-seed values, the other k's as alternatives, all runs)."""
        rows = self.net(variant, rule)
        ks = sorted(int(k) for k in rows.k.dropna().unique())
        main = _seeds(rows[rows.k == self.primary], column)
        alternatives = [_seeds(rows[rows.k == k], column) for k in ks if k != self.primary]
        return main, alternatives, rows

    def text(self, claim_text: str) -> str:
        return f"[{self.name}] {claim_text}"


def _subject(variant: str) -> str:
    return {
        "limit": "the bottleneck limit (infinitely wide encoder)",
        "bottleneck": "the finite bottleneck net",
    }[variant]


def acceleration_row(r: _Regime, variant: str) -> dict:
    """Speed-up (NTK steps / the variant's, to the same absolute train loss) > 1, each at
    ``lr_fraction`` of its own stability limit; the common-step speed-ups in the detail."""
    where = "" if variant == "limit" else f" of width {r.width}"
    text = r.text(
        "A finite bottleneck in an infinitely wide network trains faster than the NTK limit "
        "(implicit acceleration)" + ("" if variant == "limit" else f"; finite nets{where}")
    )
    quantity = (
        f"speed-up to the train-loss threshold, NTK steps / steps of {_subject(variant)}"
        f"{where}, k={r.primary}, each at the same fraction of its own stability limit"
    )
    rows = r.net(variant)
    if rows.empty or r.ntk.empty:
        return not_measured(PAPER, text, quantity, f"no {variant} runs in this regime")
    main, alternatives, rows = r.evidence(variant, "speedup_bounded")
    common = r.net(variant, COMMON)
    ntk_common = r.pick("ntk", COMMON)
    limits = rows.groupby("k").stability_limit.mean()
    detail = (
        f"threshold {r.ntk.threshold.iloc[0]:.3g}; own step rule: NTK "
        f"{r.ntk.steps_to_threshold.mean():.0f} steps, speed-up "
        f"{_per_k(rows, 'speedup_bounded')}; common step "
        f"({ntk_common.lr.mean():.3g}): NTK {ntk_common.steps_to_threshold.mean():.0f} steps, "
        f"speed-up {_per_k(common, 'speedup_bounded')}; own stability limits "
        + ", ".join(f"k={int(k)}: {v:.3g}" for k, v in limits.items())
        + f" (NTK {r.ntk.stability_limit.mean():.3g}). A run that never reached the threshold "
        "counts with the bound NTK steps / steps where that is ≤ 1, else is left out."
    )
    reason = None
    if not np.isfinite(r.ntk.steps_to_threshold).all():
        reason = "the NTK never reaches the threshold within its closed-form horizon"
    return claim(
        PAPER,
        text,
        quantity,
        f"ratio of steps to an absolute loss; {SEED_T}",
        main,
        null=1.0,
        direction=1,
        detail=detail,
        alternatives=alternatives,
        na_reason=reason,
    )


def attribution_row(r: _Regime) -> dict:
    """The no-bottleneck net / the bottleneck net of the same width, steps paired by seed, > 1."""
    text = r.text(
        "The speed-up is the bottleneck's: a bottleneck net trains faster than the net "
        "of the same width without one"
    )
    quantity = (
        f"steps of the no-bottleneck net / steps of the bottleneck net (k={r.primary}), "
        f"width {r.width}, each at the same fraction of its own stability limit"
    )
    finite = r.pick("finite", OWN, width=r.width)
    if finite.empty or r.width is None:
        return not_measured(
            PAPER,
            text,
            quantity,
            f"no net without a bottleneck of width {r.width} (finite_max_width)",
        )
    plain = finite.set_index("seed").steps_to_threshold
    bottle = r.net("bottleneck")

    def ratios(k):
        b = bottle[bottle.k == k].set_index("seed").steps_to_threshold
        return stats.SeedValues((plain / b.where(b > 0)).dropna())

    ks = sorted(int(k) for k in bottle.k.unique())
    reason = None
    if not len(ratios(r.primary).values):
        reason = "no seed where both nets reached the threshold within the steps"
    return claim(
        PAPER,
        text,
        quantity,
        f"ratio of steps, paired by seed; {SEED_T}",
        ratios(r.primary),
        null=1.0,
        direction=1,
        detail=f"no-bottleneck net {plain.mean():.0f} steps ({int(plain.notna().sum())} "
        f"of {len(plain)} seeds reached the threshold); bottleneck steps "
        f"{_per_k(bottle, 'steps_to_threshold')}; pairs where either never reached it "
        "are left out.",
        alternatives=[ratios(k) for k in ks if k != r.primary],
        na_reason=reason,
    )


def _measure_row(r: _Regime, spec: tuple, variant: str) -> dict:
    """A per-seed measure of ``variant`` at the primary k against ``null`` (spec: text,
    quantity, column, null, direction, estimator)."""
    text, quantity, column, null, direction, estimator = spec
    quantity = f"{quantity} of {_subject(variant)}, k={r.primary}"
    if r.net(variant).empty:
        return not_measured(PAPER, r.text(text), quantity, f"no {variant} runs in this regime")
    main, alternatives, rows = r.evidence(variant, column)
    detail = f"{column.replace('_', ' ')} {_per_k(rows, column)}"
    finite = r.pick("finite", OWN, width=r.width)
    if len(finite):
        detail += f"; no bottleneck, width {r.width}: {finite[column].mean():.3g}"
    detail += f"; NTK {r.ntk[column].mean():.3g}."
    return claim(
        PAPER,
        r.text(text),
        quantity,
        f"{estimator}; {SEED_T}",
        main,
        null=null,
        direction=direction,
        detail=detail,
        alternatives=alternatives,
    )


def kernel_trend_row(r: _Regime, variant: str) -> dict:
    """Per seed, the OLS slope of the relative kernel change on log₂ k; < 0."""
    text = r.text("The kernel returns to the fixed (lazy) NTK as the bottleneck widens")
    quantity = f"slope of the relative NTK change on log2 k, {_subject(variant)}"
    rows = r.net(variant)
    if rows.k.nunique() < 2:
        return not_measured(PAPER, text, quantity, "fewer than two bottleneck sizes k")
    slopes = {
        seed: stats.ols_slope(np.log2(g.k.astype(float)), g.kernel_change)
        for seed, g in rows.groupby("seed")
    }
    return claim(
        PAPER,
        text,
        quantity,
        f"OLS slope per seed; {SEED_T}",
        stats.SeedValues(slopes),
        null=0.0,
        direction=-1,
        detail=f"relative kernel change {_per_k(rows, 'kernel_change')}.",
    )


def regime_rows(runs: pd.DataFrame, regime: str, settings: BottleneckSettings) -> list[dict]:
    """The headline rows of one regime (module doc; the rules in ``docs/stages/bottleneck.md``)."""
    r = _Regime(runs, regime, settings.primary(regime), settings.change_tolerance)
    tol = r.tolerance
    obj = "limit" if len(r.net("limit")) else "bottleneck"
    measures = (
        (
            "The bottleneck learns features: its representation moves away from its "
            "initialisation, unlike the lazy NTK limit",
            "1 − linear CKA(bottleneck at init, trained) on the test set",
            "representation_change",
            tol,
            1,
            "linear CKA",
        ),
        (
            "Training aligns the bottleneck representation with the target",
            "gain in centred alignment of the bottleneck Gram with the target Gram",
            "alignment_gain",
            0.0,
            1,
            "centred kernel alignment, trained − init",
        ),
        (
            "The NTK moves during training with a bottleneck",
            "relative NTK change ‖Θ_T − Θ_0‖/‖Θ_0‖",
            "kernel_change",
            tol,
            1,
            "empirical NTK on the first training examples",
        ),
        (
            "With a bottleneck the network generalises better than the NTK limit",
            "final test loss / the NTK's",
            "test_loss_ratio",
            1.0,
            -1,
            "ratio of MSE test losses after the same steps",
        ),
    )
    rows = [acceleration_row(r, "limit"), acceleration_row(r, "bottleneck"), attribution_row(r)]
    rows += [_measure_row(r, spec, obj) for spec in measures[:3]]
    rows.append(kernel_trend_row(r, obj))
    rows.append(_measure_row(r, measures[3], obj))
    return rows


def linear_rows(summary: pd.DataFrame, settings: LinearSettings) -> list[dict]:
    """Deep linear rows: per target direction the reduced bottleneck model's speed-up at the
    smallest declared d (the others as alternatives) > 1; and the theory check, per seed the
    largest relative error of the simulated net vs the reduced model < 2/√width."""
    rows = []
    primary = min(settings.bottlenecks)
    for target, part in summary.groupby("target", sort=False):
        ntk = part[part.variant == "ntk"].set_index("seed").steps_to_threshold
        red = part[part.variant == "reduced"]

        def speedups(d, red=red, ntk=ntk):
            steps = red[red.k == d].set_index("seed").steps_to_threshold
            return stats.SeedValues(bounded_speedup(ntk, steps, settings.steps).dropna())

        ks = sorted(int(k) for k in red.k.unique())
        red = red.assign(speedup=red.seed.map(ntk) / red.steps_to_threshold)
        rows.append(
            claim(
                PAPER,
                f"[deep linear, target on the {target}-variance input direction] A bottleneck "
                "accelerates training relative to the lazy limit",
                "speed-up to the loss threshold (NTK steps / reduced A·B model steps), "
                f"d={primary}",
                f"reduced dynamics of the infinitely wide deep linear net; {SEED_T}",
                speedups(primary),
                null=1.0,
                direction=1,
                detail=f"NTK {ntk.mean():.0f} steps (closed form); speed-up "
                f"{_per_k(red, 'speedup')}; a run that never reached the threshold within "
                f"{settings.steps} steps counts with the bound NTK steps / steps where that "
                "is ≤ 1, else is left out.",
                alternatives=[speedups(d) for d in ks if d != primary],
            )
        )
    sim = summary[summary.variant == "simulated"]
    text = "Wide deep linear nets with a bottleneck follow the reduced two-factor dynamics"
    quantity = "largest relative error of the end-to-end matrix, simulated net vs reduced model"
    if sim.empty:
        rows.append(not_measured(PAPER, text, quantity, "simulate: false"))
        return rows
    bound = 2 / math.sqrt(int(sim.width.min()))
    worst = sim.groupby("seed").max_rel_error.max()
    rows.append(
        claim(
            PAPER,
            text,
            quantity,
            f"max over steps, targets and d per seed; {SEED_T}",
            stats.SeedValues(worst),
            null=bound,
            direction=-1,
            detail=f"width {int(sim.width.min())}: per-seed errors "
            + ", ".join(f"{v:.3g}" for v in worst)
            + f" (rule: < 2/√width = {bound:.3g}).",
        )
    )
    return rows


def headline(
    runs: pd.DataFrame, settings: BottleneckSettings, linear_summary: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The stage's headline table (:mod:`widthlab.headline` contract), regimes in order."""
    runs = add_run_metrics(runs) if "speedup_bounded" not in runs else runs
    rows = []
    for regime in dict.fromkeys(runs.regime):
        rows += regime_rows(runs, regime, settings)
    if linear_summary is not None and len(linear_summary):
        rows += linear_rows(linear_summary, settings.linear)
    return headline_table(rows)


def settings_of(section: Mapping | None) -> BottleneckSettings:
    """The stage's settings from the summary's params (a plain dict)."""
    return BottleneckSettings.from_config(section)
