"""Clones of the last hidden layer (Doimo et al., NeurIPS 2022, "representation mitosis").

All measurements use the last hidden representation H (the input of ``model.head``), n×W, on the
train and test splits without augmentation, and the head's weights (C×W) and bias (C).

Chunks
    For every chunk size w = 1, 2, 4, …, W (W itself is always included) random subsets of w units
    are drawn, seeded by ``(seed, W, w)`` so a size's chunks do not depend on which other sizes are
    computed. When the number of distinct subsets C(W, w) is at most the number asked for, all
    of them are used instead (so w = W is one chunk). Every measurement of a size uses a prefix of
    the same list of chunks (the 40 ridge chunks are the first 40 of the 100 accuracy chunks).

Chunk accuracy, three methods, on train and test
    ``head``: the trained head restricted to the chunk's columns plus the full bias,
    logits = H[:, c] W[:, c]ᵀ + b (the paper's measure, no retraining, no rescaling).
    ``head_rescaled``: the same with the chunk's term multiplied by W / w (bias unscaled): the
    right normalisation if the full logit is a sum over W / w equivalent clones.
    ``readout``: a retrained multinomial scikit-learn ``LogisticRegression`` on the chunk's
    standardised units (standardised with train statistics), fitted on train, scored on train
    and test (weakly regularised, C = ``readout_c``, so that separable chunks reach zero
    training error). Readouts are the costly estimator (one lbfgs fit per chunk), so fewer
    chunks get one (``n_readout_chunks``), and with ``readout_stop`` none are fitted above the
    first size at which every fitted chunk reaches zero training error (a superset of a linearly
    separable chunk is separable; the full layer is always fitted); the clone rule carries the
    last fitted size's value forward. The heads are evaluated for all chunks of a size at once.

Ridge R² and residual correlation (``r2``, ``residual_corr``; split ``test``)
    Ridge (α = 1e-8, intercept) from the chunk to the full layer. By default fitted on train and
    evaluated on test (``r2_fit_split="train"``): an out-of-sample R², which cannot be inflated
    by a chunk that is merely large compared with the number of examples. The official code fits
    and scores on the test set itself (``r2_fit_split="test"`` reproduces it). The solution is
    computed through the SVD of the centred chunk, B = V diag(s / (s² + α)) Uᵀ Y, which is exact
    ridge and stable for collinear chunks (duplicated units). The score is the variance-weighted
    R² of scikit-learn, 1 − Σ_j SSE_j / Σ_j SST_j over output units with non-zero variance on the
    evaluation split. The residual correlation is the mean |off-diagonal Pearson correlation| of
    the evaluation residuals of the units *outside* the chunk (the official code also includes the
    chunk's own, ≈ 0 residuals, which biases it towards 0); units whose residual variance is at
    most 1e-12 × the mean variance of the layer's units (dead units, units the chunk determines
    exactly) are left out, and with fewer than two units left the value is NaN. The chunks of a
    size are solved together from the fit split's cross-product matrix (see
    ``chunk_regression``); the residual correlation (a W × W matrix per chunk) is computed for
    the first ``n_corr_chunks`` of them.

Information imbalance (``ii_chunk_to_full``, ``ii_full_to_chunk``; split ``test``)
    Δ(A→B) = (2/N) · mean_i r_B(i, j_A(i)), where j_A(i) is i's nearest neighbour in space A and
    r_B(i, j) is the rank of j among i's neighbours in space B (1 = nearest; i itself excluded):
    Glielmo et al. (2022), the semantics of dadapy's ``MetricComparisons`` with k = 1 and
    Euclidean distances. Δ ≈ 2/N when A's neighbourhoods are B's, ≈ 1 when A says nothing about B.
    N points (default 1000) of the test split are drawn once per model, seeded; the distances are
    computed exactly in float64 (no Gram-matrix shortcut, so duplicated points tie exactly).
    Ties are resolved deterministically. ``ties="average"`` (default): when several points tie as
    i's nearest neighbour in A the B-ranks are averaged over them, and a point tied in B with
    others gets the mean of the ranks the tied block occupies — i.e. the expectation of dadapy's
    value under a random ordering of ties. ``ties="index"``: the lowest index wins both ties.

Clone size and number of clones
    w_c* = the smallest chunk size meeting every threshold of ``CloneThresholds`` (default:
    Δ(chunk→full) ≤ 0.05, R² ≥ 0.9, mean chunk training error of the retrained readout ≤ 0);
    #clones = W / w_c*. If no size qualifies, w_c* = W, #clones = 1 and the model is flagged.
    ``fit_clone_growth`` fits #clones against W with a continuous hinge: 1 up to a critical
    width, linear above it (least squares, see its docstring).

Ensembles
    Summed logits of K seeds of a width-w model against one model of width K·w; error_∞ is the
    error of the largest ensemble available; the gap table holds chunk test error − error_∞ per
    chunk size (the paper's w_c^(−1/2) decay). In the stage, models are pooled into ensembles by
    training condition (every model column but width, seed and id), across grids, so a grid of
    extra seeds adds members; each model's gap uses its own condition's error_∞. The logits are
    the whole test split's (the same examples as the chunk errors), written by the per-model rule.

Stage summary (``summarise``) and headline (``headline``)
    One row per model (clone size and count, the size each criterion alone gives, the network's
    own train and test error and whether it interpolates, its grid), the growth fit per grid and
    condition, a conditions table (grid × condition × width), the ensembles and gaps, and five
    headline rows whose decision rules are written in ``headline``'s docstring. The first grid of
    ``analyses.clones.grid`` is the primary one; another grid whose models carry a different
    ``variant`` (trained without reaching zero training error) gives the before / after
    interpolation comparison.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from widthlab.device import resolve_device

ACCURACY_METHODS = ("head", "head_rescaled", "readout")
METRICS = ("accuracy", "r2", "residual_corr", "ii_chunk_to_full", "ii_full_to_chunk")
TABLE_COLUMNS = ["chunk_size", "metric", "method", "split", "mean", "std", "n_chunks"]

ArrayLike = np.ndarray | torch.Tensor


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CloneConfig:
    """How many chunks each measurement averages over, and the estimators' settings."""

    n_accuracy_chunks: int = 100  # head and rescaled head (train and test)
    n_readout_chunks: int = 5  # retrained readouts (one LogisticRegression fit per chunk)
    n_r2_chunks: int = 40  # ridge R²
    n_corr_chunks: int = 10  # residual correlation (the first of the ridge chunks; W² each)
    n_ii_chunks: int = 10  # information imbalance (one N×N distance matrix per chunk)
    ridge_alpha: float = 1e-8
    r2_fit_split: str = "train"  # "train": out of sample on test; "test": the official code
    ii_points: int = 1000
    ii_ties: str = "average"
    readout_c: float = 100.0
    readout_max_iter: int = 200
    readout_stop: bool = True  # no readouts above the first size where every chunk fits train
    seed: int = 0
    device: str = "cpu"
    chunk_sizes: tuple[int, ...] | None = None  # default 1, 2, 4, …, W

    def __post_init__(self):
        if self.r2_fit_split not in ("train", "test"):
            raise ValueError(f"r2_fit_split must be 'train' or 'test', not {self.r2_fit_split!r}")
        if self.ii_ties not in ("average", "index"):
            raise ValueError(f"ii_ties must be 'average' or 'index', not {self.ii_ties!r}")

    @classmethod
    def from_dict(cls, values: Mapping | None) -> CloneConfig:
        values = dict(values or {})
        if values.get("chunk_sizes") is not None:
            values["chunk_sizes"] = tuple(int(s) for s in values["chunk_sizes"])
        return cls(**values)


@dataclass(frozen=True)
class CloneThresholds:
    """The clone-size rule; a threshold set to None is not applied."""

    ii_max: float | None = 0.05  # Δ(chunk → full) ≤ ii_max
    r2_min: float | None = 0.9  # ridge R² ≥ r2_min
    train_error_max: float | None = 0.0  # mean chunk training error ≤ train_error_max
    accuracy_method: str = "readout"  # whose training error: head | head_rescaled | readout

    def __post_init__(self):
        if self.accuracy_method not in ACCURACY_METHODS:
            raise ValueError(
                f"accuracy_method must be one of {ACCURACY_METHODS}, not {self.accuracy_method!r}"
            )

    @classmethod
    def from_dict(cls, values: Mapping | CloneThresholds | None) -> CloneThresholds:
        if isinstance(values, CloneThresholds):
            return values
        return cls(**dict(values or {}))


# ----------------------------------------------------------------------------------------------
# Chunks
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Tensors
# ----------------------------------------------------------------------------------------------


def _t(x: ArrayLike, device=None, dtype=torch.float64) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return x.to(device=resolve_device(device), dtype=dtype)


def _labels(y: ArrayLike, device=None) -> torch.Tensor:
    return _t(y, device, dtype=torch.int64).reshape(-1)


# ----------------------------------------------------------------------------------------------
# From a model
# ----------------------------------------------------------------------------------------------


def head_parameters(head: torch.nn.Linear) -> tuple[np.ndarray, np.ndarray]:
    """(weight C×W, bias C) as float64 numpy: the *effective* ones for an NTK-parameterised head
    (``effective_weight`` / ``effective_bias``), else ``weight`` / ``bias`` (zeros if none)."""
    weight = getattr(head, "effective_weight", head.weight)
    bias = getattr(head, "effective_bias", head.bias)
    if bias is None:
        bias = torch.zeros(weight.shape[0])
    return (
        weight.detach().cpu().double().numpy(),
        bias.detach().cpu().double().numpy(),
    )


@torch.no_grad()
def last_hidden(
    model: torch.nn.Module, x: ArrayLike, batch_size: int = 512, device=None
) -> tuple[np.ndarray, np.ndarray]:
    """The last tap (the input of ``model.head``, flattened to n×W) and the logits, float32
    numpy, in eval mode (no augmentation, BN running statistics). The head applied to the
    returned representation reproduces the returned logits (checked)."""
    dev = resolve_device(device)
    was_training = model.training
    model.eval().to(dev)
    last = model.tap_names[-1]
    reps, logits = [], []
    try:
        for start in range(0, len(x), batch_size):
            batch = torch.as_tensor(np.asarray(x[start : start + batch_size]), device=dev)
            out, taps = model(batch.float(), return_taps=True)
            h = taps[last].reshape(len(batch), -1)
            if not torch.allclose(model.head(h), out, rtol=1e-4, atol=1e-4):
                raise RuntimeError(f"head({last}) does not reproduce the logits")
            reps.append(h.float().cpu().numpy())
            logits.append(out.float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(reps), np.concatenate(logits)


# ----------------------------------------------------------------------------------------------
# Chunk accuracy
# ----------------------------------------------------------------------------------------------


def _chunk_blocks(chunks, cost, budget: int = 8_000_000):
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


def head_accuracy(
    h: ArrayLike,
    y: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike,
    chunks: np.ndarray | Sequence[Sequence[int]],
    rescale: bool = False,
    device=None,
) -> np.ndarray:
    """Accuracy of the trained head restricted to each chunk (plus the full bias).

    ``rescale``: multiply the chunk's contribution by W / w (the bias is not rescaled).
    """
    plain, rescaled = head_accuracies(h, y, weight, bias, chunks, device)
    return rescaled if rescale else plain


def head_accuracies(
    h: ArrayLike,
    y: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike,
    chunks: np.ndarray | Sequence[Sequence[int]],
    device=None,
) -> tuple[np.ndarray, np.ndarray]:
    """(restricted head, rescaled head) accuracy of each chunk, from one batched product per
    block of equal-size chunks (the chunk's logits are computed once for both)."""
    h, w, y = _t(h, device), _t(weight, device), _labels(y, device)
    b = _t(bias, device).reshape(-1)[None, :, None]
    width = h.shape[1]
    h_t = h.T.contiguous()  # W × n: gathering rows is cheap
    plain, rescaled = np.empty(len(chunks)), np.empty(len(chunks))
    for positions, block in _chunk_blocks(chunks, lambda size: size * h.shape[0]):
        idx = torch.as_tensor(block, device=h.device)
        logits = torch.bmm(w[:, idx].permute(1, 0, 2), h_t[idx])  # k × C × n
        for out, factor in ((plain, 1.0), (rescaled, width / idx.shape[1])):
            hits = ((logits * factor + b).argmax(dim=1) == y[None, :]).double().mean(dim=1)
            out[positions] = hits.cpu().numpy()
    return plain, rescaled


def fit_logistic(
    x: np.ndarray, y: np.ndarray, c: float = 100.0, max_iter: int = 200, tol: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression with an unpenalised intercept, (weight D×K, bias K) for
    the classes 0..K-1, K = max(y) + 1: scikit-learn's ``LogisticRegression(C=c)`` objective
    with its lbfgs settings, (1/n) Σ cross-entropy + ‖W‖² / (2 C n), scipy's L-BFGS-B from zero
    with gtol = ``tol`` — written out so that a per-model job need not import scikit-learn."""
    from scipy.optimize import minimize

    n, d = x.shape
    k = int(y.max()) + 1
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    strength = 1.0 / (c * n)

    def loss_grad(params):
        weight, bias = params[: d * k].reshape(d, k), params[d * k :]
        z = x @ weight + bias
        z -= z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        prob = np.exp(z - lse[:, None])
        loss = (lse.sum() - (z * onehot).sum()) / n + 0.5 * strength * (weight * weight).sum()
        diff = (prob - onehot) / n
        grad = np.concatenate([(x.T @ diff + strength * weight).ravel(), diff.sum(axis=0)])
        return loss, grad

    options = {"maxiter": max_iter, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps}
    result = minimize(loss_grad, np.zeros(d * k + k), jac=True, method="L-BFGS-B", options=options)
    return result.x[: d * k].reshape(d, k), result.x[d * k :]


def readout_accuracy(
    h_train: ArrayLike,
    y_train: ArrayLike,
    h_test: ArrayLike,
    y_test: ArrayLike,
    chunks: np.ndarray | Sequence[Sequence[int]],
    c: float = 100.0,
    max_iter: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test accuracy of a multinomial logistic regression refitted on each chunk
    (:func:`fit_logistic`, i.e. scikit-learn's ``LogisticRegression(C=c)`` with lbfgs).

    Units are standardised with train statistics (constant units are left at zero). A
    single-class training set predicts that class.
    """
    from threadpoolctl import threadpool_limits

    h_train = _numpy64(h_train)
    h_test = _numpy64(h_test)
    y_train = np.asarray(y_train).reshape(-1)
    y_test = np.asarray(y_test).reshape(-1)
    train_acc = np.empty(len(chunks))
    test_acc = np.empty(len(chunks))
    classes, codes = np.unique(y_train, return_inverse=True)
    # one BLAS thread: these fits are small, and threaded BLAS on them is many times slower (and
    # oversubscribes the cores that parallel jobs share); entering threadpool_limits scans the
    # loaded libraries (tens of ms), so it is entered once for all chunks
    with threadpool_limits(1):
        for k, chunk in enumerate(chunks):
            chunk = np.asarray(chunk)
            x_tr, x_te = h_train[:, chunk], h_test[:, chunk]
            mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
            std = np.where(std > 0, std, 1.0)
            x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
            if classes.size < 2:
                train_acc[k] = np.mean(y_train == classes[0])
                test_acc[k] = np.mean(y_test == classes[0])
                continue
            weight, bias = fit_logistic(x_tr, codes, c, max_iter)
            train_acc[k] = np.mean(classes[(x_tr @ weight + bias).argmax(axis=1)] == y_train)
            test_acc[k] = np.mean(classes[(x_te @ weight + bias).argmax(axis=1)] == y_test)
    return train_acc, test_acc


def _numpy64(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# Ridge R² and residual correlation
# ----------------------------------------------------------------------------------------------


def ridge_fit(x: torch.Tensor, y: torch.Tensor, alpha: float = 1e-8):
    """Ridge with intercept, exactly as scikit-learn's ``Ridge(alpha)`` (penalty α‖B‖², not
    scaled by n): returns (B, x_mean, y_mean), prediction = (x − x_mean) B + y_mean."""
    x_mean, y_mean = x.mean(dim=0), y.mean(dim=0)
    u, s, vh = torch.linalg.svd(x - x_mean, full_matrices=False)
    shrink = s / (s * s + alpha)
    coef = vh.T @ (shrink[:, None] * (u.T @ (y - y_mean)))
    return coef, x_mean, y_mean


def variance_weighted_r2(y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
    """scikit-learn's ``r2_score(multioutput="variance_weighted")``: 1 − Σ SSE_j / Σ SST_j over
    outputs with non-zero variance (zero-variance outputs carry zero weight)."""
    sst = ((y_true - y_true.mean(dim=0)) ** 2).sum(dim=0)
    sse = ((y_true - y_pred) ** 2).sum(dim=0)
    keep = sst > 0
    if not bool(keep.any()):
        return float("nan")
    return float(1.0 - sse[keep].sum() / sst[keep].sum())


def residual_correlation(
    residuals: torch.Tensor, outside: torch.Tensor | None = None, scale: float | None = None
) -> float:
    """Mean |off-diagonal Pearson correlation| between the residual columns ``outside`` (a bool
    mask or index; all columns if None). Columns whose residual variance is at most 1e-12 ×
    ``scale`` (the mean variance of the layer's units; by default of the residual columns) are
    dropped — their correlations are round-off; NaN with fewer than two columns left."""
    if outside is not None:
        residuals = residuals[:, outside]
    centred = residuals - residuals.mean(dim=0)
    var = (centred * centred).mean(dim=0)
    if var.numel() == 0:
        return float("nan")
    if scale is None:
        scale = float(var.mean())
    keep = var > 1e-12 * max(scale, np.finfo(np.float64).tiny)
    centred, var = centred[:, keep], var[keep]
    m = centred.shape[1]
    if m < 2:
        return float("nan")
    corr = (centred.T @ centred) / centred.shape[0] / torch.sqrt(var[:, None] * var[None, :])
    iu = torch.triu_indices(m, m, offset=1, device=corr.device)
    return float(corr[iu[0], iu[1]].abs().mean())


def chunk_regression(
    h_fit: ArrayLike,
    h_eval: ArrayLike,
    chunks: np.ndarray | Sequence[Sequence[int]],
    alpha: float = 1e-8,
    device=None,
    n_corr: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per chunk: variance-weighted R² of ridge chunk → full layer fitted on ``h_fit`` and scored
    on ``h_eval``, and the residual correlation of the units outside the chunk (on ``h_eval``;
    only for the first ``n_corr`` chunks, NaN for the rest; all if None).

    Batched over the chunks of one size: the ridge solution comes from the fit split's centred
    cross-product matrix S = Xᵀ X (computed once), B = (S_cc + α I)⁻¹ S_c·, through the eigen-
    decomposition of S_cc — exact ridge (the SVD solution V diag(s / (s² + α)) Uᵀ Y written with
    λ = s²), stable for collinear chunks: directions with λ ≤ 1e-12 · λ_max carry no signal
    (their Xᵀ Y component is round-off) and get coefficient 0. Residuals are formed directly on
    the evaluation split only for the residual correlation; the R² uses the evaluation Gram
    matrix G = Dᵀ D (D: evaluation split minus the fit mean), SSE = Σ_j (G − 2 Bᵀ G_c· +
    Bᵀ G_cc B)_jj, whose round-off (≈ 1e-13 relative) is far below any R² difference of note."""
    fit, ev = _t(h_fit, device), _t(h_eval, device)
    width = fit.shape[1]
    mean = fit.mean(dim=0)
    centred = fit - mean
    cross = centred.T @ centred  # W × W
    shifted = ev - mean  # evaluation split about the fit mean: residual = D − D_c B
    gram = shifted.T @ shifted
    sst = ((ev - ev.mean(dim=0)) ** 2).sum(dim=0)
    keep = sst > 0
    total = float(sst[keep].sum()) if bool(keep.any()) else float("nan")
    scale = float(ev.var(dim=0, unbiased=False).mean())
    n_corr = len(chunks) if n_corr is None else n_corr
    r2 = np.full(len(chunks), np.nan)
    corr = np.full(len(chunks), np.nan)
    for positions, block in _chunk_blocks(chunks, lambda size: (2 * size + 1) * width):
        idx = torch.as_tensor(block, device=fit.device)
        pair = (idx[:, :, None], idx[:, None, :])
        lam, vec = torch.linalg.eigh(cross[pair])  # S_cc, k × w × w
        top = lam.amax(dim=1, keepdim=True).clamp_min(0.0)
        inv = torch.where(lam > 1e-12 * top, 1.0 / (lam.clamp_min(0.0) + alpha), 0.0)
        coef = vec @ (inv[..., None] * (vec.mT @ cross[idx]))  # k × w × W
        if not math.isnan(total):
            # per output unit j: SSE_j = G_jj − 2 (Bᵀ G_c·)_jj + (Bᵀ G_cc B)_jj, G = Dᵀ D
            sse = (
                gram.diagonal()[None]
                - 2 * (coef * gram[idx]).sum(dim=1)
                + (coef * (gram[pair] @ coef)).sum(dim=1)
            )
            r2[positions] = (1.0 - sse[:, keep].sum(dim=1) / total).cpu().numpy()
        for row, k in enumerate(positions):
            if k >= n_corr:
                continue
            chunk = idx[row]
            resid = shifted - shifted[:, chunk] @ coef[row]
            outside = torch.ones(width, dtype=torch.bool, device=fit.device)
            outside[chunk] = False
            corr[k] = residual_correlation(resid, outside, scale)
    return r2, corr


# ----------------------------------------------------------------------------------------------
# Information imbalance
# ----------------------------------------------------------------------------------------------


def distances(x: ArrayLike, device=None) -> torch.Tensor:
    """Exact Euclidean distance matrix in float64 (differences, not the Gram shortcut, so equal
    points are at distance exactly 0 and equal pairs tie exactly)."""
    x = _t(x, device)
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


def ii_subsample(n: int, points: int, seed: int = 0) -> np.ndarray:
    """The (sorted) points used for the information imbalance: all if n ≤ points."""
    if n <= points:
        return np.arange(n)
    rng = np.random.default_rng([seed, n, points])
    return np.sort(rng.choice(n, size=points, replace=False))


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

    The full layer's distances and rank matrix are computed once; the chunks of one size are
    handled as a batch (their N × N distance matrices side by side)."""
    if ties not in ("average", "index"):
        raise ValueError(f"ties must be 'average' or 'index', not {ties!r}")
    x = _t(h, device)
    n = x.shape[0]
    if n < 2:
        raise ValueError("the information imbalance needs at least two points")
    full = distances(x)
    full_ranks = rank_matrix(full, ties)
    x_t = x.T.contiguous()
    to_full = np.empty(len(chunks))
    from_full = np.empty(len(chunks))
    for positions, block in _chunk_blocks(chunks, lambda size: n * (n + size)):
        idx = torch.as_tensor(block, device=x.device)
        points = x_t[idx].mT  # k × N × w
        part = torch.cdist(points, points, compute_mode="donot_use_mm_for_euclid_dist")
        to_full[positions] = _imbalance_to(full_ranks, part, ties).cpu().numpy()
        from_full[positions] = _imbalance_from(full, part, ties).cpu().numpy()
    return to_full, from_full


# ----------------------------------------------------------------------------------------------
# Per-model table
# ----------------------------------------------------------------------------------------------


def chunk_measurements(
    h_train: ArrayLike,
    y_train: ArrayLike,
    h_test: ArrayLike,
    y_test: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike,
    config: CloneConfig | None = None,
    log=None,
) -> pd.DataFrame:
    """One row per (chunk_size, chunk, metric, method, split): the raw per-chunk values."""
    cfg = config or CloneConfig()
    h_train = _t(h_train, cfg.device)
    h_test = _t(h_test, cfg.device)
    width = h_train.shape[1]
    if h_test.shape[1] != width or _t(weight, "cpu").shape[1] != width:
        raise ValueError(
            f"width mismatch: train {width}, test {h_test.shape[1]}, head {tuple(weight.shape)}"
        )
    sizes = list(cfg.chunk_sizes) if cfg.chunk_sizes else chunk_sizes(width)
    n_max = max(cfg.n_accuracy_chunks, cfg.n_readout_chunks, cfg.n_r2_chunks, cfg.n_ii_chunks)
    ii_idx = torch.as_tensor(ii_subsample(h_test.shape[0], cfg.ii_points, cfg.seed))
    h_ii = h_test[ii_idx.to(h_test.device)]
    r2_fit = h_train if cfg.r2_fit_split == "train" else h_test
    rows: list[dict] = []
    readouts_done = False

    def add(size, values, metric, method, split):
        for k, value in enumerate(values):
            rows.append(
                {
                    "chunk_size": size,
                    "chunk": k,
                    "metric": metric,
                    "method": method,
                    "split": split,
                    "value": float(value),
                }
            )

    for size in sizes:
        chunks = sample_chunks(width, size, n_max, cfg.seed)
        acc = chunks[: cfg.n_accuracy_chunks]
        for split, h, y in (("train", h_train, y_train), ("test", h_test, y_test)):
            plain, rescaled = head_accuracies(h, y, weight, bias, acc, cfg.device)
            add(size, plain, "accuracy", "head", split)
            add(size, rescaled, "accuracy", "head_rescaled", split)
        if cfg.n_readout_chunks > 0 and (not readouts_done or size == width):
            tr, te = readout_accuracy(
                h_train,
                y_train,
                h_test,
                y_test,
                chunks[: cfg.n_readout_chunks],
                cfg.readout_c,
                cfg.readout_max_iter,
            )
            add(size, tr, "accuracy", "readout", "train")
            add(size, te, "accuracy", "readout", "test")
            readouts_done = cfg.readout_stop and bool(np.all(tr == 1.0))
        if cfg.n_r2_chunks > 0:
            r2, corr = chunk_regression(
                r2_fit,
                h_test,
                chunks[: cfg.n_r2_chunks],
                cfg.ridge_alpha,
                cfg.device,
                n_corr=cfg.n_corr_chunks,
            )
            add(size, r2, "r2", "ridge", "test")
            add(size, corr[: cfg.n_corr_chunks], "residual_corr", "ridge", "test")
        if cfg.n_ii_chunks > 0:
            to_full, from_full = chunk_information_imbalance(
                h_ii, chunks[: cfg.n_ii_chunks], cfg.ii_ties, cfg.device
            )
            add(size, to_full, "ii_chunk_to_full", "euclidean", "test")
            add(size, from_full, "ii_full_to_chunk", "euclidean", "test")
        if log is not None:
            log(f"clones: chunk size {size}/{width} done ({len(chunks)} chunks)")
    return pd.DataFrame(rows)


def summarise_measurements(raw: pd.DataFrame) -> pd.DataFrame:
    """Per-chunk rows → one row per (chunk_size, metric, method, split): mean, std (ddof 0; 0
    for a single chunk), n_chunks. NaN values (e.g. an undefined residual correlation) are
    skipped; n_chunks counts the finite ones."""
    grouped = raw.groupby(["chunk_size", "metric", "method", "split"], sort=True)["value"]
    table = grouped.agg(
        mean="mean", std=lambda v: float(np.nanstd(v)) if v.notna().any() else np.nan
    )
    table["n_chunks"] = grouped.count()
    return table.reset_index()[TABLE_COLUMNS]


def per_model_table(
    h_train: ArrayLike,
    y_train: ArrayLike,
    h_test: ArrayLike,
    y_test: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike,
    config: CloneConfig | None = None,
    columns: Mapping | None = None,
    log=None,
) -> pd.DataFrame:
    """The tidy per-model clone table: ``columns`` (the model's, e.g. ``ModelSpec.columns()``)
    first, then ``chunk_size, metric, method, split, mean, std, n_chunks``; plus
    ``layer_width`` (W) and ``chunk_fraction`` (w / W)."""
    raw = chunk_measurements(h_train, y_train, h_test, y_test, weight, bias, config, log)
    table = summarise_measurements(raw)
    width = int(_t(weight, "cpu").shape[1])
    table["layer_width"] = width
    table["chunk_fraction"] = table["chunk_size"] / width
    return _with_columns(table, columns)


def _with_columns(table: pd.DataFrame, columns: Mapping | None) -> pd.DataFrame:
    if not columns:
        return table
    front = pd.DataFrame({k: [v] * len(table) for k, v in columns.items()}, index=table.index)
    return pd.concat([front, table], axis=1)


# ----------------------------------------------------------------------------------------------
# Clone size and number of clones
# ----------------------------------------------------------------------------------------------


def _series(table: pd.DataFrame, metric: str, method: str | None, split: str | None) -> pd.Series:
    sel = table["metric"] == metric
    if method is not None:
        sel &= table["method"] == method
    if split is not None:
        sel &= table["split"] == split
    return table[sel].groupby("chunk_size")["mean"].mean()


def clone_count(table: pd.DataFrame, thresholds: CloneThresholds | Mapping | None = None) -> dict:
    """w_c* (``clone_size``), ``n_clones`` = W / w_c* and ``flagged`` (no size qualified) for one
    model's table, with the criteria's values at w_c*. A missing or NaN criterion fails."""
    th = CloneThresholds.from_dict(thresholds)
    if "model" in table.columns and table["model"].nunique() > 1:
        raise ValueError("clone_count takes one model's table; group by model first")
    if "layer_width" in table.columns:
        width = int(table["layer_width"].iloc[0])
    else:
        width = int(table["chunk_size"].max())
    sizes = np.sort(table["chunk_size"].unique())
    ii = _series(table, "ii_chunk_to_full", None, "test")
    r2 = _series(table, "r2", None, "test")
    # sizes without rows of this method (readouts stop once every chunk fits the training set;
    # a superset of a separable chunk is separable) inherit the last fitted size's value
    train_acc = _series(table, "accuracy", th.accuracy_method, "train").reindex(sizes).ffill()
    ok = pd.Series(True, index=sizes)
    if th.ii_max is not None:
        ok &= ii.reindex(sizes) <= th.ii_max + 1e-12
    if th.r2_min is not None:
        ok &= r2.reindex(sizes) >= th.r2_min - 1e-12
    if th.train_error_max is not None:
        ok &= (1.0 - train_acc.reindex(sizes)) <= th.train_error_max + 1e-12
    qualified = ok[ok].index
    flagged = len(qualified) == 0
    size = width if flagged else int(qualified[0])
    return {
        "clone_size": size,
        "n_clones": width / size,
        "flagged": flagged,
        "layer_width": width,
        "ii_at_clone_size": float(ii.get(size, np.nan)),
        "r2_at_clone_size": float(r2.get(size, np.nan)),
        "train_error_at_clone_size": float(1.0 - train_acc.get(size, np.nan)),
        **{f"threshold_{k}": v for k, v in asdict(th).items()},
    }


def summary_table(
    tables: Iterable[pd.DataFrame] | pd.DataFrame,
    thresholds: CloneThresholds | Mapping | None = None,
    id_columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per model: its columns (everything before ``chunk_size`` in the per-model table,
    or ``id_columns``), the clone count, and the full-layer test accuracy of each method."""
    table = (
        tables if isinstance(tables, pd.DataFrame) else pd.concat(list(tables), ignore_index=True)
    )
    if id_columns is None:
        id_columns = list(table.columns[: list(table.columns).index("chunk_size")])
    if "model" not in id_columns:
        raise ValueError("the per-model tables need a 'model' column")
    rows = []
    for _, group in table.groupby("model", sort=True):
        row = {c: group[c].iloc[0] for c in id_columns}
        row.update(clone_count(group, thresholds))
        full = group[(group["chunk_size"] == group["chunk_size"].max())]
        for method in ACCURACY_METHODS:
            for split in ("train", "test"):
                sel = full[
                    (full["metric"] == "accuracy")
                    & (full["method"] == method)
                    & (full["split"] == split)
                ]
                row[f"full_{split}_acc_{method}"] = (
                    float(sel["mean"].iloc[0]) if len(sel) else np.nan
                )
        rows.append(row)
    return pd.DataFrame(rows)


class CloneGrowth(NamedTuple):
    slope: float
    intercept: float
    critical_width: float


def _hinge_sse(x: np.ndarray, y: np.ndarray, c: float) -> tuple[float, float]:
    """Best slope and SSE of f(x) = 1 for x ≤ c, 1 + s (x − c) above."""
    above = x > c
    sse_const = float(np.sum((y[~above] - 1.0) ** 2))
    if not above.any():
        return 0.0, sse_const
    dx, dy = x[above] - c, y[above] - 1.0
    slope = float(np.dot(dx, dy) / np.dot(dx, dx))
    return slope, sse_const + float(np.sum((dy - slope * dx) ** 2))


def fit_clone_growth(widths: Sequence[float], n_clones: Sequence[float]) -> CloneGrowth:
    """Least-squares continuous hinge: #clones = 1 for W ≤ W_crit, = intercept + slope · W above
    (intercept = 1 − slope · W_crit).

    For fixed W_crit the slope is a closed-form least-squares fit through (W_crit, 1), so the
    residual sum of squares is a function of W_crit alone; it is minimised over the candidates
    {every observed width} ∪ {the stationary point inside each gap between consecutive observed
    widths (and between 1 and the smallest), from an unconstrained line fit of the points above
    the gap} ∪ {1}: W_crit ≥ 1 (a one-unit layer is one clone; a line that reaches 1 only at a
    width below 1 is fitted through (1, 1) instead). Repeated widths (several seeds) are fine.
    If no hinge beats the constant 1 (no growth in the data), slope = 0, intercept = 1 and
    critical_width = NaN.
    """
    x = np.asarray(widths, dtype=np.float64)
    y = np.asarray(n_clones, dtype=np.float64)
    if x.shape != y.shape or x.size == 0:
        raise ValueError("widths and n_clones must be non-empty and of equal length")
    unique = np.unique(x)
    candidates = list(unique[:-1])  # a break at the largest width is "no growth"
    if unique[0] > 1:
        candidates.append(1.0)
    for k in range(len(unique) - 1):
        above = x >= unique[k]  # the points above a break inside (unique[k-1], unique[k])
        if np.unique(x[above]).size < 2:
            continue
        slope, icpt = np.polyfit(x[above], y[above], 1)
        if slope == 0:
            continue
        c = (1.0 - icpt) / slope
        lower = unique[k - 1] if k > 0 else 1.0
        if lower < c < unique[k]:
            candidates.append(float(c))
    best = (float(np.sum((y - 1.0) ** 2)), 0.0, np.nan)  # constant: no growth
    for c in candidates:
        slope, sse = _hinge_sse(x, y, c)
        if sse < best[0] * (1 - 1e-12) - 1e-15:
            best = (sse, slope, float(c))
    _, slope, c = best
    if np.isnan(c):
        return CloneGrowth(0.0, 1.0, float("nan"))
    return CloneGrowth(float(slope), float(1.0 - slope * c), float(c))


def growth_table(
    summary: pd.DataFrame, group_by: Sequence[str] = ("dataset", "arch", "depth", "weight_decay")
) -> pd.DataFrame:
    """``fit_clone_growth`` per group of the summary (one row per group, with n_models)."""
    group_by = [g for g in group_by if g in summary.columns]
    rows = []
    groups = summary.groupby(group_by, sort=True, dropna=False) if group_by else [((), summary)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        fit = fit_clone_growth(group["width"].to_numpy(), group["n_clones"].to_numpy())
        rows.append(
            {
                **dict(zip(group_by, key, strict=True)),
                **fit._asdict(),
                "n_models": len(group),
                "n_widths": group["width"].nunique(),
                "n_flagged": int(group["flagged"].sum()),
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# Ensembles
# ----------------------------------------------------------------------------------------------


def ensemble_error(logits: Sequence[ArrayLike], labels: ArrayLike) -> float:
    """Test error of the summed logits of the members (each n × C, same examples and order)."""
    total = sum(_numpy64(lg) for lg in logits)
    return float(np.mean(total.argmax(axis=1) != np.asarray(labels).reshape(-1)))


def ensemble_table(
    logits: Mapping[tuple[int, int], ArrayLike],
    labels: ArrayLike,
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


def error_infinity(ensembles: pd.DataFrame) -> tuple[float, dict]:
    """error_∞: the error of the largest ensemble available (largest total width; ties → more
    members). Returns the error and the row it came from."""
    if ensembles.empty:
        raise ValueError("no ensembles")
    best = ensembles.sort_values(["total_width", "members", "width"]).iloc[-1]
    return float(best["ensemble_error"]), best.to_dict()


def ensemble_gap_table(
    clone_tables: pd.DataFrame, error_inf: float, methods: Sequence[str] = ACCURACY_METHODS
) -> pd.DataFrame:
    """Chunk test error − error_∞ against chunk size, one row per (model, chunk_size, method);
    the model columns of the clone tables are kept."""
    sel = clone_tables[
        (clone_tables["metric"] == "accuracy")
        & (clone_tables["split"] == "test")
        & (clone_tables["method"].isin(list(methods)))
    ].copy()
    sel["test_error"] = 1.0 - sel["mean"]
    sel["error_infinity"] = error_inf
    sel["gap"] = sel["test_error"] - error_inf
    drop = ["metric", "split", "mean", "std"]
    return sel.drop(columns=[c for c in drop if c in sel.columns]).reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# One model (the per-model rule)
# ----------------------------------------------------------------------------------------------


def analyse_model(
    model: torch.nn.Module,
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_test: ArrayLike,
    y_test: ArrayLike,
    config: CloneConfig | Mapping | None = None,
    columns: Mapping | None = None,
    log=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-model clone table, test logits table) of one trained model: its last hidden layer
    on the train and test splits (eval mode, no augmentation) and its head."""
    cfg = config if isinstance(config, CloneConfig) else CloneConfig.from_dict(config)
    h_train, _ = last_hidden(model, x_train, device=cfg.device)
    h_test, logits = last_hidden(model, x_test, device=cfg.device)
    weight, bias = head_parameters(model.head)
    table = per_model_table(
        h_train, y_train, h_test, y_test, weight, bias, cfg, columns=columns, log=log
    )
    return table, logits_table(logits, y_test, columns)


def logits_table(logits: ArrayLike, labels: ArrayLike, columns: Mapping | None = None):
    """One row per test example: ``example`` (position in the test split), ``label``,
    ``logit_0 … logit_{C-1}`` (the model's columns first)."""
    logits = _numpy64(logits)
    table = pd.DataFrame({"example": np.arange(len(logits)), "label": np.asarray(labels)})
    names = [f"logit_{c}" for c in range(logits.shape[1])]
    table = pd.concat([table, pd.DataFrame(logits, columns=names)], axis=1)
    return _with_columns(table, columns)


# ----------------------------------------------------------------------------------------------
# Across models (the summary rule)
# ----------------------------------------------------------------------------------------------

PAPER = "Doimo et al. 2022"
#: the model columns that define a training condition (everything but width, seed and id)
CONDITION_COLUMNS = (
    "dataset",
    "arch",
    "depth",
    "bottleneck",
    "train_size",
    "weight_decay",
    "dropout",
    "init",
    "variant",
)


def _conditions(table: pd.DataFrame) -> list[str]:
    return [c for c in CONDITION_COLUMNS if c in table.columns]


def _groups(table: pd.DataFrame, by: Sequence[str]):
    """groupby that keeps None/NaN keys (variant, bottleneck, train_size are often None)."""
    by = list(by)
    if not by:
        yield (), table
        return
    for key, group in table.groupby(by, sort=True, dropna=False):
        yield (key if isinstance(key, tuple) else (key,)), group


def clone_size_by_criterion(table: pd.DataFrame, thresholds: CloneThresholds) -> dict:
    """The clone size each threshold alone would give (which one binds): ``clone_size_ii``,
    ``clone_size_r2``, ``clone_size_train`` (W when no size meets it; NaN if it is disabled)."""
    th = asdict(thresholds)
    out = {}
    for name, key in (("ii", "ii_max"), ("r2", "r2_min"), ("train", "train_error_max")):
        if th[key] is None:
            out[f"clone_size_{name}"] = np.nan
            continue
        alone = {k: (th[k] if k == key else None) for k in ("ii_max", "r2_min", "train_error_max")}
        alone["accuracy_method"] = thresholds.accuracy_method
        out[f"clone_size_{name}"] = clone_count(table, alone)["clone_size"]
    return out


def clones_summary(
    tables: Sequence[pd.DataFrame],
    thresholds: CloneThresholds | Mapping | None = None,
    grids: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per model: ``summary_table`` plus ``grid`` (from ``grids``: model → grid name),
    the clone size each criterion alone gives, and the network's own (full layer, trained
    head) train and test error and whether it interpolates (zero training error)."""
    th = CloneThresholds.from_dict(thresholds)
    summary = summary_table(tables, th)
    table = pd.concat(list(tables), ignore_index=True)
    extra = []
    for model, group in table.groupby("model", sort=True):
        row = {"model": model, **clone_size_by_criterion(group, th)}
        full = group[group["chunk_size"] == group["chunk_size"].max()]
        head = full[(full["metric"] == "accuracy") & (full["method"] == "head")]
        for split in ("train", "test"):
            acc = head[head["split"] == split]["mean"]
            row[f"{split}_error"] = float(1.0 - acc.iloc[0]) if len(acc) else np.nan
        extra.append(row)
    summary = summary.merge(pd.DataFrame(extra), on="model", how="left")
    summary["interpolating"] = summary["train_error"] <= 1e-12
    summary.insert(1, "grid", summary["model"].map(dict(grids or {})).fillna(""))
    return summary


def growth_exponent(widths: Sequence[float], n_clones: Sequence[float]) -> float:
    """Least-squares slope b of log2 #clones on log2 W (#clones ∝ W^b); NaN with < 2 widths."""
    x = np.log2(np.asarray(widths, dtype=np.float64))
    y = np.log2(np.asarray(n_clones, dtype=np.float64))
    if np.unique(x).size < 2:
        return float("nan")
    return float(np.polyfit(x, y, 1)[0])


def conditions_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per grid, condition and width: mean / min / max #clones and clone size over seeds, the
    number of seeds, the fraction that interpolates and the mean train and test error."""
    by = ["grid", *_conditions(summary), "width"]
    rows = []
    for key, group in _groups(summary, by):
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "n_models": len(group),
                "n_clones": float(group["n_clones"].mean()),
                "n_clones_min": float(group["n_clones"].min()),
                "n_clones_max": float(group["n_clones"].max()),
                "clone_size": float(group["clone_size"].mean()),
                "interpolating": float(group["interpolating"].mean()),
                "train_error": float(group["train_error"].mean()),
                "test_error": float(group["test_error"].mean()),
                "n_flagged": int(group["flagged"].sum()),
            }
        )
    return pd.DataFrame(rows)


def growth_fits(summary: pd.DataFrame) -> pd.DataFrame:
    """``fit_clone_growth`` per grid and condition (seeds pooled), with the log-log exponent b
    of #clones on W over the widths at and above the fitted critical width (all widths when the
    fit finds no growth), and the exponent each criterion alone would give (``exponent_ii``,
    ``exponent_r2``, ``exponent_train``: W / the clone size by that criterion, all widths)."""
    rows = []
    by = ["grid", *_conditions(summary)]
    for key, group in _groups(summary, by):
        fit = fit_clone_growth(group["width"].to_numpy(), group["n_clones"].to_numpy())
        above = (
            group if np.isnan(fit.critical_width) else group[group["width"] >= fit.critical_width]
        )
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                **fit._asdict(),
                "exponent": growth_exponent(above["width"], above["n_clones"]),
                **{
                    f"exponent_{name}": growth_exponent(
                        group["width"], group["width"] / group[f"clone_size_{name}"]
                    )
                    if f"clone_size_{name}" in group
                    else np.nan
                    for name in ("ii", "r2", "train")
                },
                "n_models": len(group),
                "n_widths": group["width"].nunique(),
                "n_flagged": int(group["flagged"].sum()),
            }
        )
    return pd.DataFrame(rows)


def _logit_matrix(table: pd.DataFrame) -> np.ndarray:
    names = sorted((c for c in table.columns if c.startswith("logit_")), key=lambda c: int(c[6:]))
    return table.sort_values("example")[names].to_numpy(dtype=np.float64)


def ensembles_by_condition(
    logits: Sequence[pd.DataFrame], summary: pd.DataFrame | None = None
) -> pd.DataFrame:
    """``ensemble_table`` per condition (models pooled over grids: a grid of extra seeds adds
    members), with the condition's columns and its ``error_infinity`` (the error of its largest
    ensemble) on every row. Every model must cover the same test examples in the same order."""
    if not logits:
        return pd.DataFrame()
    table = pd.concat(list(logits), ignore_index=True)
    by = _conditions(table)
    out = []
    for key, group in _groups(table, by):
        members, labels = {}, None
        for (width, seed), model in group.groupby(["width", "seed"], sort=True):
            model = model.sort_values("example")
            if labels is None:
                labels = model["label"].to_numpy()
            elif not np.array_equal(labels, model["label"].to_numpy()):
                raise ValueError(f"test labels differ between the models of condition {key}")
            members[(int(width), int(seed))] = _logit_matrix(model)
        ens = ensemble_table(members, labels)
        err_inf, _ = error_infinity(ens)
        for name, value in zip(by, key, strict=True):
            ens[name] = value
        ens["error_infinity"] = err_inf
        out.append(ens[[*by, *[c for c in ens.columns if c not in by]]])
    return pd.concat(out, ignore_index=True)


def gap_by_condition(
    tables: Sequence[pd.DataFrame], ensembles: pd.DataFrame, models: Iterable[str] | None = None
) -> pd.DataFrame:
    """``ensemble_gap_table`` of the chosen models (default all), each against the error_∞ of
    its own condition."""
    table = pd.concat(list(tables), ignore_index=True)
    if models is not None:
        table = table[table["model"].isin(set(models))]
    by = _conditions(table)
    out = []
    for key, group in _groups(table, by):
        sel = ensembles
        for name, value in zip(by, key, strict=True):
            sel = sel[(sel[name] == value) | (sel[name].isna() & pd.isna(value))]
        if sel.empty:
            continue
        out.append(ensemble_gap_table(group, float(sel["error_infinity"].iloc[0])))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


#: gaps at or below this are zero up to round-off (1 − mean accuracy − error_∞)
GAP_FLOOR = 1e-9


def gap_exponent(gap: pd.DataFrame) -> float:
    """Least-squares slope of log gap on log chunk size over the chunks smaller than the full
    layer whose gap is positive (> ``GAP_FLOOR``; the paper's w_c^(−1/2) decay gives −0.5);
    NaN with < 2 sizes."""
    sub = gap[(gap["chunk_size"] < gap["layer_width"]) & (gap["gap"] > GAP_FLOOR)]
    if sub["chunk_size"].nunique() < 2:
        return float("nan")
    return float(np.polyfit(np.log2(sub["chunk_size"]), np.log2(sub["gap"]), 1)[0])


# ----------------------------------------------------------------------------------------------
# Headline
# ----------------------------------------------------------------------------------------------


def _verdict_positive(values: np.ndarray, strong: float | None = None) -> str:
    """The rule shared by the ratio and growth claims. With two or more values: ``yes`` when the
    95 % t-interval lies above 0 and the mean is ≥ ``strong`` (if given), ``partly`` when the
    interval lies above 0 but the mean is below ``strong``, ``no`` when the interval reaches 0
    (no effect shown). With one value (no interval): ``partly`` if it is > 0, else ``no``.
    ``n/a`` without values."""
    from widthlab.headline import t_interval

    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "n/a"
    mean = values.mean()
    low, _ = t_interval(values)
    if values.size < 2:
        return "partly" if mean > 0 else "no"
    if not low > 0:
        return "no"
    return "yes" if strong is None or mean >= strong else "partly"


def _matched_log_ratio(a: pd.DataFrame, b: pd.DataFrame, on: Sequence[str]) -> pd.DataFrame:
    """log2(#clones in a / #clones in b) for the models of a and b that agree on ``on``."""
    keys = [c for c in on if c in a.columns and c in b.columns]
    left = a[[*keys, "n_clones", "train_error"]].astype({k: object for k in keys})
    right = b[[*keys, "n_clones", "train_error"]].astype({k: object for k in keys})
    left, right = left.fillna({k: "∅" for k in keys}), right.fillna({k: "∅" for k in keys})
    pairs = left.merge(right, on=keys, suffixes=("_a", "_b"))
    pairs["log2_ratio"] = np.log2(pairs["n_clones_a"] / pairs["n_clones_b"])
    return pairs


def _mean_by_width(summary: pd.DataFrame, column: str) -> str:
    means = summary.groupby("width")[column].mean()
    return ", ".join(f"{int(w)}: {v:.3g}" for w, v in means.items())


def headline(
    summary: pd.DataFrame,
    growth: pd.DataFrame,
    ensembles: pd.DataFrame,
    gap: pd.DataFrame,
    primary: str,
    gap_method: str = "head",
) -> pd.DataFrame:
    """The clones stage's rows of the headline contract (``widthlab.headline``), one per claim:

    1. growth: #clones ∝ W above a critical width. Quantity: the exponent b of #clones ∝ W^b
       per (condition, seed) of the primary grid at its largest weight decay, over the widths
       at and above the condition's fitted critical width. ``yes``: mean b ≥ 0.75 and its 95 %
       interval above 0; ``partly``: the interval above 0 but mean b < 0.75 (growth, slower
       than ∝ W), or a single series with b > 0; ``no``: the interval reaches 0.
    2. interpolation (one row per other grid whose models have another ``variant``): log2 of
       #clones (primary) / #clones (that grid) for models equal in every other column.
       ``yes`` when the 95 % interval lies above 0, ``no`` when it reaches 0, ``partly`` for
       a single pair with a ratio > 0; ``n/a`` when no such grid exists or it interpolates as
       often as the primary grid.
    3. weight decay: log2 #clones (largest weight decay) / #clones (none), matched models of
       the primary grid; the same rule as 2; ``n/a`` without both.
    4. ensemble gap: the log-log slope of chunk test error − error_∞ against chunk size
       (``gap_method`` chunks, sizes below W with a positive gap) per model of the primary
       grid at its largest weight decay. ``yes``: mean in [−0.75, −0.25] and interval below 0;
       ``partly``: mean < 0 otherwise; ``no``: mean ≥ 0.
    5. ensembles: error(one wide model) − error(ensemble of K ≥ 2 narrow ones) at the same total
       width, every condition. ``yes``: mean ≤ 0, or its interval contains 0; ``partly``:
       mean ≤ 0.01; ``no`` otherwise.
    """
    from widthlab.headline import headline_row, headline_table, t_interval

    rows = []
    main = summary[summary["grid"] == primary]
    wd_max = float(main["weight_decay"].max()) if len(main) else float("nan")
    regular = main[main["weight_decay"] == wd_max]
    conditions = [c for c in _conditions(summary) if c != "weight_decay"]

    # 1. growth
    values = []
    fits = growth[(growth["grid"] == primary) & (growth["weight_decay"] == wd_max)]
    for _, fit in fits.iterrows():
        sel = regular
        for c in conditions:
            sel = sel[(sel[c] == fit[c]) | (sel[c].isna() & pd.isna(fit[c]))]
        if not np.isnan(fit["critical_width"]):
            sel = sel[sel["width"] >= fit["critical_width"]]
        for _, seed in sel.groupby("seed"):
            values.append(growth_exponent(seed["width"], seed["n_clones"]))
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    holds = _verdict_positive(finite, strong=0.75)
    crit = ", ".join(f"{c:.0f}" for c in fits["critical_width"] if np.isfinite(c)) or "none"
    rows.append(
        headline_row(
            PAPER,
            "Above a critical width the last hidden layer splits into clones: #clones grows "
            "∝ W (clone size w_c* independent of W)",
            f"exponent b of #clones ∝ W^b (grid {primary}, weight decay {wd_max:g})",
            "log-log least squares per condition × seed over W ≥ W_crit; t-interval",
            finite,
            holds,
            f"b = {finite.mean() if finite.size else float('nan'):.2f} over {finite.size} "
            f"series; W_crit {crit}; mean w_c* by W: {_mean_by_width(regular, 'clone_size')}; "
            f"#clones by W: {_mean_by_width(regular, 'n_clones')}; b by one criterion alone: "
            + ", ".join(
                f"{label} {fits[f'exponent_{name}'].mean():.2f}"
                for name, label in (("ii", "Δ"), ("r2", "R²"), ("train", "train error"))
                if f"exponent_{name}" in fits
            ),
        )
    )

    # 2. interpolation: the other grids with another variant
    primary_variant = set(main["variant"].fillna("∅")) if "variant" in main else {"∅"}
    others = [
        g
        for g in sorted(set(summary["grid"]) - {primary})
        if "variant" in summary
        and set(summary[summary["grid"] == g]["variant"].fillna("∅")) - primary_variant
    ]
    for g in others:
        other = summary[summary["grid"] == g]
        keys = [c for c in _conditions(summary) if c != "variant"] + ["width", "seed"]
        pairs = _matched_log_ratio(main, other, keys)
        ratios = pairs["log2_ratio"].to_numpy()
        holds = _verdict_positive(ratios)
        note = ""
        if other["interpolating"].mean() >= main["interpolating"].mean():
            holds, note = "n/a", f" (grid {g} interpolates as often as {primary})"
        rows.append(
            headline_row(
                PAPER,
                "Clones need zero training error: interpolating networks hold more clones "
                "than the same networks stopped before interpolating",
                f"log2 #clones ({primary}) / #clones ({g}), matched models",
                "matched width, depth, weight decay, seed; t-interval",
                ratios,
                holds,
                f"{len(pairs)} pairs; train error {pairs['train_error_a'].mean():.3f} "
                f"({primary}) vs {pairs['train_error_b'].mean():.3f} ({g}); #clones "
                f"{pairs['n_clones_a'].mean():.2f} vs {pairs['n_clones_b'].mean():.2f}{note}",
            )
        )
    if not others:
        rows.append(
            headline_row(
                PAPER,
                "Clones need zero training error: interpolating networks hold more clones "
                "than the same networks stopped before interpolating",
                "log2 #clones (interpolating) / #clones (stopped early)",
                "matched models; t-interval",
                [],
                "n/a",
                "no grid of non-interpolating models (another variant) is analysed",
            )
        )

    # 3. weight decay
    if len(main) and wd_max > 0 and (main["weight_decay"] == 0).any():
        keys = [*conditions, "width", "seed"]
        pairs = _matched_log_ratio(regular, main[main["weight_decay"] == 0], keys)
        ratios = pairs["log2_ratio"].to_numpy()
        holds = _verdict_positive(ratios)
        detail = (
            f"{len(pairs)} pairs; #clones {pairs['n_clones_a'].mean():.2f} (wd {wd_max:g}) vs "
            f"{pairs['n_clones_b'].mean():.2f} (wd 0)"
        )
    else:
        ratios, holds = [], "n/a"
        detail = "the primary grid lacks models with and without weight decay"
    rows.append(
        headline_row(
            PAPER,
            "Regularisation favours clones: with weight decay the layer holds more clones",
            f"log2 #clones (weight decay {wd_max:g}) / #clones (none), matched models",
            "matched width, depth, seed; t-interval",
            ratios,
            holds,
            detail,
        )
    )

    # 4. ensemble gap exponent
    slopes = []
    if len(gap):
        sub = gap[(gap["method"] == gap_method) & gap["model"].isin(set(regular["model"]))]
        slopes = [gap_exponent(g) for _, g in sub.groupby("model")]
    slopes = np.asarray(slopes, dtype=np.float64)
    finite = slopes[np.isfinite(slopes)]
    if finite.size == 0:
        holds = "n/a"
    else:
        _, high = t_interval(finite)
        mean = finite.mean()
        decays = finite.size >= 2 and high < 0
        holds = "yes" if decays and -0.75 <= mean <= -0.25 else ("partly" if mean < 0 else "no")
    err_inf = (
        ", ".join(f"{e:.3f}" for e in sorted(set(ensembles["error_infinity"])))
        if len(ensembles)
        else "none"
    )
    rows.append(
        headline_row(
            PAPER,
            "Chunk test error − error_∞ falls like w_c^(−1/2) (the clones act as an ensemble)",
            f"log-log slope of chunk test error − error_∞ vs chunk size ({gap_method})",
            "least squares per model over chunks < W with a positive gap; t-interval",
            finite,
            holds,
            f"slope {finite.mean() if finite.size else float('nan'):.2f} over {finite.size} "
            f"models (−0.5 expected); error_∞ per condition {err_inf}",
        )
    )

    # 5. narrow ensembles vs one wide model
    if len(ensembles):
        comparable = ensembles[(ensembles["members"] >= 2) & ensembles["wide_error"].notna()]
    else:
        comparable = pd.DataFrame(columns=["wide_error", "ensemble_error"])
    diffs = (comparable["wide_error"] - comparable["ensemble_error"]).to_numpy(dtype=np.float64)
    if diffs.size == 0:
        holds = "n/a"
    else:
        low, high = t_interval(diffs)
        mean = diffs.mean()
        holds = "yes" if mean <= 0 or low <= 0 <= high else ("partly" if mean <= 0.01 else "no")
    rows.append(
        headline_row(
            PAPER,
            "One wide network is as accurate as an ensemble of narrow networks of the same "
            "total last-layer width",
            "test error (one wide model) − test error (K-seed narrow ensemble)",
            "K ≥ 2, equal total width K·w; t-interval over (condition, w, K)",
            diffs,
            holds,
            f"{diffs.size} comparisons; mean ensemble error "
            f"{comparable['ensemble_error'].mean():.3f}, wide {comparable['wide_error'].mean():.3f}"
            if diffs.size
            else "no ensemble with a trained single model of the same total width",
        )
    )
    return headline_table(rows)


def summarise(
    tables: Sequence[pd.DataFrame],
    logits: Sequence[pd.DataFrame],
    grids: Mapping[str, str],
    primary: str,
    thresholds: CloneThresholds | Mapping | None = None,
    gap_method: str = "head",
) -> dict[str, pd.DataFrame]:
    """Every summary table of the stage: ``summary`` (one row per model), ``growth`` (per grid
    and condition), ``conditions`` (per grid, condition and width), ``ensembles`` (per
    condition, member width and K), ``gap`` (chunk test error − error_∞ of the primary grid's
    models) and ``headline``."""
    if gap_method not in ACCURACY_METHODS:
        raise ValueError(f"gap_method must be one of {ACCURACY_METHODS}, not {gap_method!r}")
    summary = clones_summary(tables, thresholds, grids)
    growth = growth_fits(summary)
    ensembles = ensembles_by_condition(logits)
    main_models = summary.loc[summary["grid"] == primary, "model"]
    gap = gap_by_condition(tables, ensembles, main_models) if len(ensembles) else pd.DataFrame()
    return {
        "summary": summary,
        "growth": growth,
        "conditions": conditions_table(summary),
        "ensembles": ensembles,
        "gap": gap,
        "headline": headline(summary, growth, ensembles, gap, primary, gap_method),
    }
