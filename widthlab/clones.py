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
    training error).

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
    exactly) are left out, and with fewer than two units left the value is NaN.

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
    chunk size (the paper's w_c^(−1/2) decay).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

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
    n_readout_chunks: int = 20  # retrained readouts (one LogisticRegression fit per chunk)
    n_r2_chunks: int = 40  # ridge R² and residual correlation
    n_ii_chunks: int = 10  # information imbalance (one N×N distance matrix per chunk)
    ridge_alpha: float = 1e-8
    r2_fit_split: str = "train"  # "train": out of sample on test; "test": the official code
    ii_points: int = 1000
    ii_ties: str = "average"
    readout_c: float = 100.0
    readout_max_iter: int = 2000
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


def _device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _t(x: ArrayLike, device=None, dtype=torch.float64) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return x.to(device=_device(device), dtype=dtype)


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
    dev = _device(device)
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
    h, w, y = _t(h, device), _t(weight, device), _labels(y, device)
    b = _t(bias, device).reshape(-1)
    width = h.shape[1]
    out = np.empty(len(chunks))
    for k, chunk in enumerate(chunks):
        idx = torch.as_tensor(np.asarray(chunk), device=h.device, dtype=torch.int64)
        logits = h[:, idx] @ w[:, idx].T
        if rescale:
            logits = logits * (width / len(idx))
        out[k] = ((logits + b).argmax(dim=1) == y).double().mean().item()
    return out


def readout_accuracy(
    h_train: ArrayLike,
    y_train: ArrayLike,
    h_test: ArrayLike,
    y_test: ArrayLike,
    chunks: np.ndarray | Sequence[Sequence[int]],
    c: float = 100.0,
    max_iter: int = 2000,
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test accuracy of a multinomial logistic regression refitted on each chunk.

    Units are standardised with train statistics (constant units are left at zero); lbfgs with
    scikit-learn's default tolerance, convergence warnings silenced. A single-class training set
    predicts that class.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    h_train = _numpy64(h_train)
    h_test = _numpy64(h_test)
    y_train = np.asarray(y_train).reshape(-1)
    y_test = np.asarray(y_test).reshape(-1)
    train_acc = np.empty(len(chunks))
    test_acc = np.empty(len(chunks))
    classes = np.unique(y_train)
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
        model = LogisticRegression(C=c, max_iter=max_iter)
        # one BLAS thread: these fits are small, and threaded BLAS on them is many times slower
        # (and oversubscribes the cores that parallel jobs share)
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x_tr, y_train)
        train_acc[k] = np.mean(model.predict(x_tr) == y_train)
        test_acc[k] = np.mean(model.predict(x_te) == y_test)
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
) -> tuple[np.ndarray, np.ndarray]:
    """Per chunk: variance-weighted R² of ridge chunk → full layer fitted on ``h_fit`` and scored
    on ``h_eval``, and the residual correlation of the units outside the chunk (on ``h_eval``)."""
    fit, ev = _t(h_fit, device), _t(h_eval, device)
    width = fit.shape[1]
    scale = float(ev.var(dim=0, unbiased=False).mean())
    r2 = np.empty(len(chunks))
    corr = np.empty(len(chunks))
    for k, chunk in enumerate(chunks):
        idx = torch.as_tensor(np.asarray(chunk), device=fit.device, dtype=torch.int64)
        coef, x_mean, y_mean = ridge_fit(fit[:, idx], fit, alpha)
        pred = (ev[:, idx] - x_mean) @ coef + y_mean
        r2[k] = variance_weighted_r2(ev, pred)
        outside = torch.ones(width, dtype=torch.bool, device=fit.device)
        outside[idx] = False
        corr[k] = residual_correlation(ev - pred, outside, scale)
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


def chunk_information_imbalance(
    h: ArrayLike,
    chunks: np.ndarray | Sequence[Sequence[int]],
    ties: str = "average",
    device=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per chunk: Δ(chunk → full) and Δ(full → chunk) on the given points (already subsampled)."""
    x = _t(h, device)
    full = distances(x)
    to_full = np.empty(len(chunks))
    from_full = np.empty(len(chunks))
    for k, chunk in enumerate(chunks):
        idx = torch.as_tensor(np.asarray(chunk), device=x.device, dtype=torch.int64)
        part = distances(x[:, idx])
        to_full[k] = information_imbalance_from_distances(part, full, ties)
        from_full[k] = information_imbalance_from_distances(full, part, ties)
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
            for method, rescale in (("head", False), ("head_rescaled", True)):
                values = head_accuracy(h, y, weight, bias, acc, rescale, cfg.device)
                add(size, values, "accuracy", method, split)
        if cfg.n_readout_chunks > 0:
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
        if cfg.n_r2_chunks > 0:
            r2, corr = chunk_regression(
                r2_fit, h_test, chunks[: cfg.n_r2_chunks], cfg.ridge_alpha, cfg.device
            )
            add(size, r2, "r2", "ridge", "test")
            add(size, corr, "residual_corr", "ridge", "test")
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
    train_acc = _series(table, "accuracy", th.accuracy_method, "train")
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
    widths (and below the smallest), from an unconstrained line fit of the points above the gap}.
    Repeated widths (several seeds) are fine. If no hinge beats the constant 1 (no growth in
    the data), slope = 0, intercept = 1 and critical_width = NaN.
    """
    x = np.asarray(widths, dtype=np.float64)
    y = np.asarray(n_clones, dtype=np.float64)
    if x.shape != y.shape or x.size == 0:
        raise ValueError("widths and n_clones must be non-empty and of equal length")
    unique = np.unique(x)
    candidates = list(unique[:-1])  # a break at the largest width is "no growth"
    for k in range(len(unique) - 1):
        above = x >= unique[k]  # the points above a break inside (unique[k-1], unique[k])
        if np.unique(x[above]).size < 2:
            continue
        slope, icpt = np.polyfit(x[above], y[above], 1)
        if slope == 0:
            continue
        c = (1.0 - icpt) / slope
        lower = unique[k - 1] if k > 0 else -np.inf
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
