"""Chunks: random subsets of the last hidden layer's units (numpy only).

For every chunk size w = 1, 2, 4, …, W (W itself is always included) random subsets of w units
are drawn, seeded by ``(seed, W, w)`` so a size's chunks do not depend on which other sizes are
computed. When the number of distinct subsets C(W, w) is at most the number asked for, all of
them are used instead (so w = W is one chunk). Every measurement of a size uses a prefix of the
same list of chunks (the 40 ridge chunks are the first 40 of the 100 accuracy chunks).
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def chunk_sizes(width: int) -> list[int]:
    """1, 2, 4, … below ``width``, then ``width`` itself."""
    if width < 1:
        raise ValueError(f"width must be positive, not {width}")
    sizes, size = [], 1
    while size < width:
        sizes.append(size)
        size *= 2
    sizes.append(width)
    return sizes


def sample_chunks(width: int, size: int, n: int, seed: int = 0) -> np.ndarray:
    """``min(n, C(width, size))`` distinct chunks (sorted unit indices), k × size int64.

    All C(width, size) subsets in lexicographic order when there are at most ``n`` of them, else
    ``n`` distinct random subsets from ``np.random.default_rng([seed, width, size])``.
    """
    if not 1 <= size <= width:
        raise ValueError(f"chunk size {size} outside 1..{width}")
    if n <= 0:
        return np.zeros((0, size), dtype=np.int64)
    if math.comb(width, size) <= n:
        return np.array(list(itertools.combinations(range(width), size)), dtype=np.int64)
    rng = np.random.default_rng([seed, width, size])
    seen: set[tuple[int, ...]] = set()
    chunks = []
    while len(chunks) < n:
        chunk = tuple(np.sort(rng.choice(width, size=size, replace=False)).tolist())
        if chunk not in seen:
            seen.add(chunk)
            chunks.append(chunk)
    return np.array(chunks, dtype=np.int64)


def ii_subsample(n: int, points: int, seed: int = 0) -> np.ndarray:
    """The (sorted) points used for the information imbalance: all if n ≤ points."""
    if n <= points:
        return np.arange(n)
    rng = np.random.default_rng([seed, n, points])
    return np.sort(rng.choice(n, size=points, replace=False))


def chunk_blocks(chunks, cost, budget: int = 8_000_000):
    """The chunks grouped by size and cut into blocks whose batched work holds at most
    ``budget`` elements (``cost(size)`` per chunk); yields (positions in ``chunks``,
    k × size int64 index array)."""
    by_size: dict[int, list[int]] = {}
    for k, chunk in enumerate(chunks):
        by_size.setdefault(len(chunk), []).append(k)
    for size, positions in by_size.items():
        step = max(1, budget // max(1, cost(size)))
        for start in range(0, len(positions), step):
            block = positions[start : start + step]
            yield block, np.stack([np.asarray(chunks[k], dtype=np.int64) for k in block])
