"""Narrow ensembles against single wide models, error_∞ and the chunk-error gap (numpy only).

An ensemble sums the test logits of K seeds of a width-w model; it is compared with one model
of width K·w. error_∞ is the error of the largest ensemble available; the gap table holds chunk
test error − error_∞ per chunk size (the paper's w_c^(−1/2) decay). error_∞ comes only from an
ensemble of at least ``ensemble_min_members`` seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from widthlab.clones.chunks import chunk_sizes
from widthlab.clones.settings import ACCURACY_METHODS


def ensemble_error(logits: Sequence[np.ndarray], labels: np.ndarray) -> float:
    """Test error of the summed logits of the members (each n × C, same examples and order)."""
    total = sum(np.asarray(lg, dtype=np.float64) for lg in logits)
    return float(np.mean(total.argmax(axis=1) != np.asarray(labels).reshape(-1)))


def ensemble_table(
    logits: Mapping[tuple[int, int], np.ndarray],
    labels: np.ndarray,
    sizes: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Narrow ensembles against single wide models.

    ``logits``: {(width, seed): n × C test logits}. For each member width w and ensemble size K
    (1, 2, 4, … up to the number of seeds at w, plus that number; or ``sizes``) the seeds (sorted)
    are cut into consecutive disjoint groups of K and the ensemble error is averaged over the
    groups. Columns: ``width, members, total_width, n_groups, ensemble_error, wide_error``
    (the mean single-model error at width K·w over its seeds; NaN if that width was not trained).
    """
    labels = np.asarray(labels).reshape(-1)
    by_width: dict[int, list[int]] = {}
    for width, seed in logits:
        by_width.setdefault(int(width), []).append(int(seed))
    single = {
        w: float(np.mean([ensemble_error([logits[(w, s)]], labels) for s in seeds]))
        for w, seeds in by_width.items()
    }
    rows = []
    for width, seeds in sorted(by_width.items()):
        seeds = sorted(seeds)
        ks = sorted(set(sizes) if sizes else set(chunk_sizes(len(seeds))))
        for k in ks:
            if k > len(seeds):
                continue
            groups = [seeds[i : i + k] for i in range(0, len(seeds) - k + 1, k)]
            errors = [ensemble_error([logits[(width, s)] for s in g], labels) for g in groups]
            rows.append(
                {
                    "width": width,
                    "members": k,
                    "total_width": width * k,
                    "n_groups": len(groups),
                    "ensemble_error": float(np.mean(errors)),
                    "wide_error": single.get(width * k, np.nan),
                }
            )
    return pd.DataFrame(rows)


def error_infinity(ensembles: pd.DataFrame, min_members: int = 1) -> tuple[float, dict]:
    """error_∞: the error of the largest ensemble of at least ``min_members`` seeds (largest
    total width; ties → more members). Returns the error and the row it came from; NaN and an
    empty row when no ensemble has that many members (a 2-seed "ensemble" is no estimate of
    the infinite one)."""
    large = ensembles[ensembles["members"] >= min_members] if len(ensembles) else ensembles
    if large.empty:
        return float("nan"), {}
    best = large.sort_values(["total_width", "members", "width"]).iloc[-1]
    return float(best["ensemble_error"]), best.to_dict()


def ensemble_gap_table(
    clone_tables: pd.DataFrame,
    error_inf: float,
    floor: float = 0.0,
    methods: Sequence[str] = ACCURACY_METHODS,
) -> pd.DataFrame:
    """Chunk test error − error_∞ against chunk size, one row per (model, chunk_size, method);
    the model columns of the clone tables are kept, with the ``gap_floor`` at or below which
    a gap is at the floor (the test error's resolution)."""
    sel = clone_tables[
        (clone_tables["metric"] == "accuracy")
        & (clone_tables["split"] == "test")
        & (clone_tables["method"].isin(list(methods)))
    ].copy()
    sel["test_error"] = 1.0 - sel["mean"]
    sel["error_infinity"] = error_inf
    sel["gap"] = sel["test_error"] - error_inf
    sel["gap_floor"] = floor
    drop = ["metric", "split", "mean", "std"]
    return sel.drop(columns=[c for c in drop if c in sel.columns]).reset_index(drop=True)


def logit_matrix(table: pd.DataFrame) -> np.ndarray:
    names = sorted((c for c in table.columns if c.startswith("logit_")), key=lambda c: int(c[6:]))
    return table.sort_values("example")[names].to_numpy(dtype=np.float64)
