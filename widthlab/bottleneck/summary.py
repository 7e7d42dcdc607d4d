"""Tables across the jobs of the bottleneck stage (torch-free): per-run metrics against the NTK
of the same regime and step rule, and the effects table (mean and t-interval over seeds)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from widthlab import stats

EFFECT_KEYS = ["regime", "variant", "step_rule", "width", "k"]
EFFECT_METRICS = [
    "steps_to_threshold",
    "speedup",
    "stability_limit",
    "final_train_loss",
    "final_test_loss",
    "final_test_acc",
    "test_loss_ratio",
    "alignment_init",
    "alignment_trained",
    "alignment_gain",
    "cka_init_trained",
    "representation_change",
    "kernel_change",
    "lambda_max_init",
    "lambda_max_peak",
]
EFFECT_COLUMNS = [*EFFECT_KEYS, "metric", "n", "mean", "ci_low", "ci_high"]


def bounded_speedup(ntk_steps, steps, max_steps):
    """NTK steps / ``steps`` where a run reached the threshold; for one that did not within its
    ``max_steps`` the bound NTK steps / ``max_steps`` where that bound is ≤ 1 (the run is at
    least that much slower than the NTK); NaN where the bound says nothing."""
    ntk_steps, steps = pd.Series(ntk_steps, dtype=float), pd.Series(steps, dtype=float)
    speedup = ntk_steps / steps.where(steps > 0)
    bound = ntk_steps / pd.Series(max_steps, index=steps.index, dtype=float)
    return speedup.where(~(steps.isna() & bound.le(1.0)), bound)


def add_run_metrics(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-run derived metrics against the NTK of the same regime and step rule.

    * ``speedup`` = NTK steps to the threshold / this run's (> 1: faster than the NTK limit;
      NaN where either never reached it)
    * ``speedup_bounded``: ``speedup``, or for a run that never reached the threshold within
      its ``steps`` (or diverged) the bound NTK steps / ``steps`` where that bound is ≤ 1 (the
      run is slower than the NTK by at least that much); NaN where the bound says nothing
    * ``test_loss_ratio`` = final test loss / the NTK's (< 1: generalises better)
    * ``alignment_gain`` = alignment with the target after − before training
    * ``representation_change`` = 1 − CKA(bottleneck at init, trained) (0 for the NTK)
    """
    runs = runs.copy()
    keys = ["regime", "step_rule"]
    ntk = runs[runs.variant == "ntk"].groupby(keys)
    index = pd.MultiIndex.from_frame(runs[keys])
    ntk_steps = pd.Series(ntk.steps_to_threshold.mean().reindex(index).to_numpy(), runs.index)
    ntk_test = pd.Series(ntk.final_test_loss.mean().reindex(index).to_numpy(), runs.index)
    steps = runs.steps_to_threshold
    runs["speedup"] = ntk_steps / steps.where(steps > 0)
    runs["speedup_bounded"] = bounded_speedup(ntk_steps, steps, runs["steps"])
    runs["test_loss_ratio"] = runs.final_test_loss / ntk_test
    runs["alignment_gain"] = runs.alignment_trained - runs.alignment_init
    runs["representation_change"] = 1.0 - runs.cka_init_trained
    return runs


def effects_table(runs: pd.DataFrame, level: float = stats.LEVEL) -> pd.DataFrame:
    """Mean and ``level`` t-interval over seeds of every :data:`EFFECT_METRICS` column, per
    regime, variant, step rule, width and k (long: one row per metric; ``n`` counts finite
    values)."""
    runs = add_run_metrics(runs) if "speedup" not in runs else runs
    rows = []
    for key, group in runs.groupby(EFFECT_KEYS, dropna=False, sort=True):
        for metric in EFFECT_METRICS:
            finite = stats.finite(group[metric].to_numpy(dtype=np.float64))
            low, high = stats.t_interval(finite, level)
            mean = float(finite.mean()) if len(finite) else np.nan
            rows.append((*key, metric, len(finite), mean, low, high))
    table = pd.DataFrame(rows, columns=EFFECT_COLUMNS)
    for col in ("width", "k"):
        table[col] = table[col].astype("Int64")
    return table
