"""The headline contract: what each stage claims to have measured, in one shape for the report.

Every analysis stage writes ``results/summary/<stage>_headline.parquet`` with
:data:`HEADLINE_COLUMNS`, one row per claim of its paper: the claim in words, the quantity this
run measured (mean over seeds with a t-interval), and whether the claim holds here by a rule the
stage documents. The report and ``widthlab summary`` read only these tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

HEADLINE_COLUMNS = [
    "paper",  # e.g. "Casper et al. 2021"
    "claim",  # the paper's claim, one sentence
    "quantity",  # what this run measured, e.g. "growth statistic g of prunable units"
    "estimator",  # how, e.g. "debiased linear CKA", "t-interval over seeds"
    "value",  # mean over seeds
    "ci_low",  # level-% t-interval over seeds (NaN with < 2 seeds)
    "ci_high",
    "n",  # number of independent values behind `value` (usually seeds)
    "holds",  # "yes" | "no" | "partly" | "n/a"
    "detail",  # one sentence with the numbers that decided `holds`
]
VERDICTS = ("yes", "no", "partly", "n/a")


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Two-sided ``level`` Student-t interval for the mean of the finite ``values``."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def headline_row(
    paper: str,
    claim: str,
    quantity: str,
    estimator: str,
    values: Sequence[float],
    holds: str,
    detail: str,
    level: float = 0.95,
) -> dict:
    """One headline row from the per-seed (or per-model) ``values`` of a quantity."""
    if holds not in VERDICTS:
        raise ValueError(f"holds must be one of {VERDICTS}, got {holds!r}")
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    low, high = t_interval(finite, level)
    return {
        "paper": paper,
        "claim": claim,
        "quantity": quantity,
        "estimator": estimator,
        "value": float(finite.mean()) if len(finite) else float("nan"),
        "ci_low": low,
        "ci_high": high,
        "n": int(len(finite)),
        "holds": holds,
        "detail": detail,
    }


def headline_table(rows: Sequence[dict]) -> pd.DataFrame:
    """The rows in the contract's column order (an empty table keeps the columns)."""
    table = pd.DataFrame(list(rows), columns=HEADLINE_COLUMNS)
    missing = set().union(*(row.keys() for row in rows)) - set(HEADLINE_COLUMNS) if rows else set()
    if missing:
        raise ValueError(f"unknown headline columns {sorted(missing)}")
    return table
