"""The headline contract: what each stage claims to have measured, in one shape for the report.

Every analysis stage writes ``results/summary/<stage>_headline.parquet`` with
:data:`HEADLINE_COLUMNS`, one row per claim of its paper: the claim as the paper states it, the
quantity this run measured with its interval over training seeds, the null and the claimed
direction, and the verdict of the one rule in :mod:`widthlab.stats`. Any reader can re-derive
``holds`` from ``value, ci_low, ci_high, null, direction, n`` (:func:`widthlab.stats.
verdict_of_row`). The report and ``widthlab summary`` read only these tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from widthlab import stats
from widthlab.stats import t_interval  # noqa: F401  (re-exported for readers)

HEADLINE_COLUMNS = [
    "paper",  # e.g. "Casper et al. 2021"
    "claim",  # the paper's claim, one sentence, as the paper states it
    "quantity",  # what this run measured, e.g. "growth statistic g of prunable units"
    "estimator",  # how, e.g. "debiased linear CKA; t-interval over seeds"
    "value",  # the estimate (mean over seeds, or the statistic of all seeds)
    "ci_low",  # its level-% interval over seeds (t or seed bootstrap; NaN when n/a)
    "ci_high",
    "n",  # number of independent units behind `value`
    "unit",  # what `n` counts: "seeds" (the unit of replication)
    "null",  # the value the claim is tested against
    "direction",  # +1 the claim says above `null`, -1 below, 0 differs
    "holds",  # "yes" | "contradicted" | "inconclusive" | "n/a"
    "reason",  # why n/a (too few seeds, confounded, ceiling, not measured); "" otherwise
    "robust",  # "yes": same verdict leaving out any one seed and at the stage's other thresholds
    "detail",  # one sentence with the numbers behind the row
]
VERDICTS = stats.VERDICTS


def claim(
    paper: str,
    claim: str,
    quantity: str,
    estimator: str,
    evidence: stats.Evidence,
    null: float,
    direction: int,
    detail: str,
    unit: str = "seeds",
    alternatives: Sequence[stats.Evidence] = (),
    na_reason: str | None = None,
) -> dict:
    """One headline row: ``evidence`` (:class:`~widthlab.stats.SeedValues` or
    :class:`~widthlab.stats.SeedBootstrap`) judged against ``null`` in ``direction`` by the one
    rule; ``alternatives`` are the same claim under the stage's other declared thresholds;
    ``na_reason`` makes the row n/a for a reason the stage knows (confounded, ceiling, …)."""
    judged = stats.judge(evidence, null, direction, alternatives, na_reason)
    robust_detail = judged.pop("robust_detail")
    if robust_detail:
        detail = f"{detail} Not robust ({robust_detail})."
    return {
        "paper": paper,
        "claim": claim,
        "quantity": quantity,
        "estimator": estimator,
        **judged,
        "unit": unit,
        "detail": detail,
    }


def not_measured(paper: str, claim: str, quantity: str, reason: str, detail: str = "") -> dict:
    """A claim this run could not measure: n/a with its reason and no numbers."""
    return {
        "paper": paper,
        "claim": claim,
        "quantity": quantity,
        "estimator": "",
        "value": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "n": 0,
        "unit": "seeds",
        "null": math.nan,
        "direction": 0,
        "holds": "n/a",
        "reason": reason,
        "robust": "n/a",
        "detail": detail or reason,
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
    if not np.isfinite(row["value"]):
        return "not measured"
    value = f"{row['value']:.3g}"
    if np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"]):
        value += f" [{row['ci_low']:.3g}, {row['ci_high']:.3g}]"
    return f"{value} (n={int(row['n'])} {row.get('unit', 'seeds')})"


def format_test(row) -> str:
    """``> 0, robust`` / ``n/a: too few seeds: n = 2 < 3``: what the verdict tested."""
    if row["holds"] == "n/a":
        return f"n/a: {row.get('reason') or 'no reason given'}"
    if not np.isfinite(row.get("null", math.nan)):
        return "by the stage's own rule"
    side = {1: ">", -1: "<", 0: "≠"}[int(row["direction"])]
    return f"{side} {row['null']:.3g}; robust: {row.get('robust', 'n/a')}"


def as_text(table: pd.DataFrame, width: int = 100) -> str:
    """The headline table for a terminal: one block per claim, grouped by paper."""
    import textwrap

    lines, pad = [], " " * 17
    for paper, rows in table.groupby("paper", sort=False):
        lines.append(paper)
        for _, row in rows.iterrows():
            lines.append(f"  [{row['holds']:>12}] {row['claim']}")
            lines.append(f"{pad}{row['quantity']} = {format_value(row)}")
            lines.append(f"{pad}tested: {format_test(row)}")
            if row["estimator"]:
                lines.append(f"{pad}estimator: {row['estimator']}")
            lines += textwrap.wrap(row["detail"], width, initial_indent=pad, subsequent_indent=pad)
        lines.append("")
    return "\n".join(lines) if lines else "no headline rows yet (run the analysis stages)"


_VERDICT_COLOURS = {
    "yes": "#d8f0d8",
    "inconclusive": "#fff2cc",
    "contradicted": "#f8d7d7",
    "n/a": "#eeeeee",
}


def as_html(table: pd.DataFrame) -> str:
    """The headline table as a standalone HTML page (for the Snakemake report)."""
    import html

    head = "".join(
        f"<th>{h}</th>"
        for h in ("paper", "claim", "measured", "value", "tested", "holds", "detail")
    )
    body = []
    for _, row in table.iterrows():
        colour = _VERDICT_COLOURS.get(row["holds"], "#ffffff")
        cells = [
            row["paper"],
            row["claim"],
            f"{row['quantity']} ({row['estimator']})",
            format_value(row),
            format_test(row),
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
        "<p>value [95 % interval over training seeds] (n); holds: yes when the interval "
        "excludes the null on the claimed side, contradicted when it excludes it on the other "
        "side, inconclusive when it contains it, n/a (with its reason) below 3 seeds or when "
        "the comparison cannot be made; robust: the same verdict leaving out any one seed.</p>"
        f"<table><tr>{head}</tr>{''.join(body)}</table></body></html>"
    )
