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


def verdict(values: Sequence[float], null: float, direction: int = 1, level: float = 0.95) -> str:
    """The headline rule for a claim "the mean is above ``null``" (``direction``
    +1) or "below ``null``" (−1), on per-(series, seed) values with a ``level`` t-interval:

    - ``yes``: the interval lies entirely on the claimed side of ``null``;
    - ``partly``: the mean is on the claimed side but the interval reaches ``null``;
    - ``no``: the mean is on the other side (or on ``null``);
    - ``n/a``: fewer than two finite values (no interval).

    ``direction=0`` is a two-sided claim ("differs from ``null``"): ``yes`` when the interval
    excludes ``null``, ``no`` otherwise.
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if len(finite) < 2:
        return "n/a"
    low, high = t_interval(finite, level)
    if direction == 0:
        return "yes" if low > null or high < null else "no"
    mean = finite.mean()
    lo, hi, m = (low, high, mean) if direction > 0 else (-high, -low, -mean)
    null = null if direction > 0 else -null
    if lo > null:
        return "yes"
    return "partly" if m > null else "no"


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
    unknown = {key for row in rows for key in row} - set(HEADLINE_COLUMNS)
    if unknown:
        raise ValueError(f"unknown headline columns {sorted(unknown)}")
    return pd.DataFrame(list(rows), columns=HEADLINE_COLUMNS)


def collect(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The stages' headline tables as one, with a leading ``stage`` column, in the given order."""
    parts = []
    for stage, table in tables.items():
        missing = [c for c in HEADLINE_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"headline table of stage {stage!r} lacks columns {missing}")
        parts.append(table[HEADLINE_COLUMNS].assign(stage=stage))
    if not parts:
        return pd.DataFrame(columns=["stage", *HEADLINE_COLUMNS])
    return pd.concat(parts, ignore_index=True)[["stage", *HEADLINE_COLUMNS]]


def format_value(row) -> str:
    """``0.62 [0.55, 0.70] (n=2)``: the value with its interval where there is one."""
    value = f"{row['value']:.3g}"
    if np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"]):
        value += f" [{row['ci_low']:.3g}, {row['ci_high']:.3g}]"
    return f"{value} (n={int(row['n'])})"


def as_text(table: pd.DataFrame, width: int = 100) -> str:
    """The headline table for a terminal: one block per claim, grouped by paper."""
    import textwrap

    lines = []
    for paper, rows in table.groupby("paper", sort=False):
        lines.append(paper)
        for _, row in rows.iterrows():
            lines.append(f"  [{row['holds']:>6}] {row['claim']}")
            lines.append(f"           {row['quantity']} = {format_value(row)}")
            lines.append(f"           estimator: {row['estimator']}")
            lines += textwrap.wrap(
                row["detail"], width, initial_indent=" " * 11, subsequent_indent=" " * 11
            )
        lines.append("")
    return "\n".join(lines) if lines else "no headline rows yet (run the analysis stages)"


_VERDICT_COLOURS = {"yes": "#d8f0d8", "partly": "#fff2cc", "no": "#f8d7d7", "n/a": "#eeeeee"}


def as_html(table: pd.DataFrame) -> str:
    """The headline table as a standalone HTML page (for the Snakemake report)."""
    import html

    head = "".join(
        f"<th>{h}</th>" for h in ("paper", "claim", "measured", "value", "holds", "detail")
    )
    body = []
    for _, row in table.iterrows():
        colour = _VERDICT_COLOURS.get(row["holds"], "#ffffff")
        cells = [
            row["paper"],
            row["claim"],
            f"{row['quantity']} ({row['estimator']})",
            format_value(row),
            row["holds"],
            row["detail"],
        ]
        tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        body.append(f'<tr style="background:{colour}">{tds}</tr>')
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>widthlab headline</title>"
        "<style>body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:4px 6px;vertical-align:top;text-align:left}"
        "</style></head><body><h2>widthlab: what width does, paper by paper</h2>"
        "<p>value = mean over seeds [95 % t-interval] (n values); holds decided by the rule "
        "each stage documents.</p>"
        f"<table><tr>{head}</tr>{''.join(body)}</table></body></html>"
    )
