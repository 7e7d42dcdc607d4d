"""Block structure in a layer-by-layer CKA matrix: contiguous runs of layers whose all-pairs CKA
is high (Nguyen et al. identified blocks visually; this rule makes them a number). numpy only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Block:
    start: int  # first layer (index into the taps)
    end: int  # last layer, inclusive
    size: int
    mean_cka: float  # mean CKA over the distinct layer pairs inside the block


def find_blocks(cka: np.ndarray, threshold: float = 0.9, min_size: int = 3) -> list[Block]:
    """Contiguous runs of layers whose CKA is ≥ ``threshold`` for **every pair** inside the run.

    Rule (a definition; Nguyen et al. identify blocks by eye): take the longest contiguous run
    [s, e] in which all pairwise CKA values are ≥ ``threshold`` (ties: the earliest), record it,
    and repeat on the layers left of s and right of e, so blocks never overlap. Runs shorter than
    ``min_size`` are not blocks. The all-pairs rule (rather than a chain of adjacent pairs) makes
    a block a square of high similarity: in ordinary networks adjacent layers are similar, but
    layers far apart inside one run are not. Largest block first.
    """
    cka = np.asarray(cka, dtype=np.float64)
    if cka.ndim != 2 or cka.shape[0] != cka.shape[1]:
        raise ValueError(f"find_blocks needs a square CKA matrix, got shape {cka.shape}")
    high = np.nan_to_num(np.minimum(cka, cka.T), nan=-np.inf) >= threshold
    blocks: list[Block] = []

    def longest(lo: int, hi: int) -> tuple[int, int]:
        best = (lo, lo)
        end = lo
        for start in range(lo, hi):
            end = max(end, start)
            while end + 1 < hi and high[end + 1, start : end + 2].all():
                end += 1
            if end - start > best[1] - best[0]:
                best = (start, end)
        return best

    pending = [(0, cka.shape[0])]
    while pending:
        lo, hi = pending.pop()
        if hi - lo < max(min_size, 1):
            continue
        start, end = longest(lo, hi)
        size = end - start + 1
        if size < min_size:
            continue
        inner = cka[start : end + 1, start : end + 1]
        mean = float(inner[~np.eye(size, dtype=bool)].mean()) if size > 1 else float("nan")
        blocks.append(Block(start, end, size, mean))
        pending += [(lo, start), (end + 1, hi)]
    return sorted(blocks, key=lambda b: (-b.size, b.start))


def block_summary(
    cka: np.ndarray,
    threshold: float = 0.9,
    min_size: int = 3,
    pc1_shares: Sequence[float] | None = None,
) -> dict:
    """One row describing a model's block structure (largest block, coverage, PC1 inside/out)."""
    blocks = find_blocks(cka, threshold, min_size)
    n_layers = int(np.asarray(cka).shape[0])
    inside = np.zeros(n_layers, dtype=bool)
    for b in blocks:
        inside[b.start : b.end + 1] = True
    largest = blocks[0] if blocks else None
    row = {
        "n_layers": n_layers,
        "threshold": threshold,
        "min_size": min_size,
        "n_blocks": len(blocks),
        "block_size": largest.size if largest else 0,
        "block_start": largest.start if largest else -1,
        "block_end": largest.end if largest else -1,
        "block_mean_cka": largest.mean_cka if largest else float("nan"),
        "block_fraction": float(inside.mean()),
    }
    if pc1_shares is not None:
        shares = np.asarray(pc1_shares, dtype=np.float64)
        row["pc1_share_in_blocks"] = float(shares[inside].mean()) if inside.any() else np.nan
        row["pc1_share_outside"] = float(shares[~inside].mean()) if (~inside).any() else np.nan
    return row


def matrix_from_table(table: pd.DataFrame, estimator: str, suffix=("i", "j")) -> np.ndarray:
    """The square (or La×Lb) CKA matrix of one estimator back from a long table."""
    sub = table[table["estimator"] == estimator]
    si, sj = suffix
    return sub.pivot(index=f"layer_{si}", columns=f"layer_{sj}", values="cka").to_numpy()
