"""Information imbalance between a chunk and the full layer (split ``test``).

Δ(A→B) = (2/N) · mean_i r_B(i, j_A(i)), where j_A(i) is i's nearest neighbour in space A and
r_B(i, j) is the rank of j among i's neighbours in space B (1 = nearest; i itself excluded):
Glielmo et al. (2022), the semantics of dadapy's ``MetricComparisons`` with k = 1 and Euclidean
distances. Δ ≈ 2/N when A's neighbourhoods are B's, ≈ 1 when A says nothing about B. N points
(default 1000) of the test split are drawn once per model, seeded; the distances are computed
exactly in float64 (no Gram-matrix shortcut, so duplicated points tie exactly).

Ties are resolved deterministically. ``ties="average"`` (default): when several points tie as
i's nearest neighbour in A the B-ranks are averaged over them, and a point tied in B with
others gets the mean of the ranks the tied block occupies — i.e. the expectation of dadapy's
value under a random ordering of ties. ``ties="index"``: the lowest index wins both ties.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from widthlab.clones.chunks import chunk_blocks
from widthlab.clones.tensors import ArrayLike, as_float64


def distances(x: ArrayLike, device=None) -> torch.Tensor:
    """Exact Euclidean distance matrix in float64 (differences, not the Gram shortcut, so equal
    points are at distance exactly 0 and equal pairs tie exactly)."""
    x = as_float64(x, device)
    if x.ndim == 1:
        x = x[:, None]
    return torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")


def information_imbalance_from_distances(
    dist_a: torch.Tensor, dist_b: torch.Tensor, ties: str = "average"
) -> float:
    """Δ(A→B) = (2/N) · mean_i rank_B(i, nearest neighbour of i in A); ranks start at 1 for the
    nearest neighbour, i itself excluded. See the module docstring for ``ties``."""
    n = dist_a.shape[0]
    if n < 2:
        raise ValueError("the information imbalance needs at least two points")
    eye = torch.eye(n, dtype=torch.bool, device=dist_a.device)
    da = dist_a.masked_fill(eye, float("inf"))
    db = dist_b.masked_fill(eye, float("inf"))
    if ties == "index":
        nn_a = da.argmin(dim=1)  # first (lowest-index) minimum
        value = db.gather(1, nn_a[:, None])
        less = (db < value).sum(dim=1)
        order = torch.arange(n, device=db.device)[None, :]
        tied_before = ((db == value) & (order < nn_a[:, None])).sum(dim=1)
        ranks = (1 + less + tied_before).double()
    elif ties == "average":
        nn_mask = da == da.min(dim=1, keepdim=True).values
        counts = nn_mask.sum(dim=1)
        if bool((counts == 1).all()):  # the usual case: one nearest neighbour per point
            value = db.gather(1, da.argmin(dim=1)[:, None])
            less = (db < value).sum(dim=1)
            tied = (db == value).sum(dim=1)  # j itself included
            ranks = 1 + less.double() + (tied.double() - 1) / 2
        else:
            sorted_b = db.sort(dim=1).values.contiguous()
            less = torch.searchsorted(sorted_b, db.contiguous(), right=False)
            leq = torch.searchsorted(sorted_b, db.contiguous(), right=True)
            mid_rank = (less + leq + 1).double() / 2  # mean of the ranks less+1 … leq
            ranks = (mid_rank * nn_mask).sum(dim=1) / counts
    else:
        raise ValueError(f"ties must be 'average' or 'index', not {ties!r}")
    return float(2.0 * ranks.mean() / n)


def information_imbalance(a: ArrayLike, b: ArrayLike, ties: str = "average", device=None) -> float:
    """Δ(A→B) for two representations of the same N points (N×D_a, N×D_b), Euclidean."""
    return information_imbalance_from_distances(
        distances(a, device), distances(b, device), ties=ties
    )


def _masked(dist: torch.Tensor) -> torch.Tensor:
    """Distances with every point's distance to itself set to +inf (batched or not)."""
    n = dist.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=dist.device)
    return dist.masked_fill(eye, float("inf"))


def rank_matrix(dist: torch.Tensor, ties: str = "average") -> torch.Tensor:
    """R[i, j] = rank of j among i's neighbours (1 = nearest, i itself excluded and ranked last):
    ``average``: the mean of the ranks j's tie block occupies; ``index``: ties broken by index."""
    db = _masked(dist).contiguous()
    n = db.shape[0]
    if ties == "average":
        sorted_b = db.sort(dim=1).values.contiguous()
        less = torch.searchsorted(sorted_b, db, right=False)
        leq = torch.searchsorted(sorted_b, db, right=True)
        return (less + leq + 1).double() / 2
    if ties == "index":
        order = torch.sort(db, dim=1, stable=True).indices
        ranks = torch.empty_like(order)
        steps = torch.arange(1, n + 1, device=db.device).expand(n, n)
        return ranks.scatter_(1, order, steps.contiguous()).double()
    raise ValueError(f"ties must be 'average' or 'index', not {ties!r}")


def _imbalance_to(ranks_b: torch.Tensor, dist_a: torch.Tensor, ties: str) -> torch.Tensor:
    """Δ(A_k → B) for a batch of spaces A (k × N × N distances) and one B given by its rank
    matrix (``rank_matrix``): averaged over tied nearest neighbours in A, or the lowest index."""
    da = _masked(dist_a)
    n = da.shape[-1]
    if ties == "index":
        nn_a = da.argmin(dim=2)  # first minimum
        ranks = ranks_b.expand(len(da), n, n).gather(2, nn_a[..., None])[..., 0]
    else:
        nn_mask = da == da.amin(dim=2, keepdim=True)
        ranks = (ranks_b[None] * nn_mask).sum(dim=2) / nn_mask.sum(dim=2)
    return 2.0 * ranks.mean(dim=1) / n


def _imbalance_from(dist_a: torch.Tensor, dist_b: torch.Tensor, ties: str) -> torch.Tensor:
    """Δ(A → B_k) for one space A (N × N distances) and a batch of spaces B (k × N × N): the
    ranks in each B of A's nearest neighbour(s) are counted directly (no sort of B)."""
    da, db = _masked(dist_a), _masked(dist_b)
    n = da.shape[0]
    if ties == "index":
        rows = torch.arange(n, device=da.device)
        cols = da.argmin(dim=1)
    else:
        rows, cols = torch.nonzero(da == da.amin(dim=1, keepdim=True), as_tuple=True)
    value = db[:, rows, cols]  # k × P: B-distance of each (i, nearest neighbour j) pair
    line = db[:, rows, :]  # k × P × N
    less = (line < value[..., None]).sum(dim=2).double()
    tied = line == value[..., None]
    if ties == "index":
        before = torch.arange(n, device=da.device)[None, :] < cols[:, None]
        ranks = 1 + less + (tied & before[None]).sum(dim=2).double()
    else:
        ranks = 1 + less + (tied.sum(dim=2).double() - 1) / 2
        counts = torch.bincount(rows, minlength=n).double()
        total = torch.zeros(len(db), n, dtype=torch.float64, device=da.device)
        ranks = total.index_add_(1, rows, ranks) / counts
    return 2.0 * ranks.mean(dim=1) / n


def chunk_information_imbalance(
    h: ArrayLike,
    chunks: np.ndarray | Sequence[Sequence[int]],
    ties: str = "average",
    device=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per chunk: Δ(chunk → full) and Δ(full → chunk) on the given points (already subsampled).

    The chunks may be of several sizes: the full layer's distances and rank matrix are
    computed once for all of them; the chunks of one size are handled as a batch (their N × N
    distance matrices side by side)."""
    if ties not in ("average", "index"):
        raise ValueError(f"ties must be 'average' or 'index', not {ties!r}")
    x = as_float64(h, device)
    n = x.shape[0]
    if n < 2:
        raise ValueError("the information imbalance needs at least two points")
    full = distances(x)
    full_ranks = rank_matrix(full, ties)
    x_t = x.T.contiguous()
    to_full = np.empty(len(chunks))
    from_full = np.empty(len(chunks))
    for positions, block in chunk_blocks(chunks, lambda size: n * (n + size)):
        idx = torch.as_tensor(block, device=x.device)
        points = x_t[idx].mT  # k × N × w
        part = torch.cdist(points, points, compute_mode="donot_use_mm_for_euclid_dist")
        to_full[positions] = _imbalance_to(full_ranks, part, ties).cpu().numpy()
        from_full[positions] = _imbalance_from(full, part, ties).cpu().numpy()
    return to_full, from_full
