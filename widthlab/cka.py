"""The one CKA: centred kernel alignment between every pair of layers, and PC1 removal.

Estimators (all give every layer pair at once; conv maps n×C×H×W are flattened per example):

- ``linear``: linear CKA with the biased HSIC (Kornblith et al. 2019), HSIC(K, L) ∝ tr(HKH HLH).
  Rises with width even for independent features (≈ p/(p+n)), so never use it to compare widths.
- ``debiased``: linear CKA with the unbiased HSIC₁ of Song et al. (2012), computed through the
  U-centred Gram of Székely & Rizzo (2014): zero the diagonal, subtract row/column means with the
  U-statistic normalisation, zero the diagonal again. ⟨Ũ(K), Ũ(L)⟩ / (n(n−3)) = HSIC₁(K, L).
- ``rbf``: RBF-kernel CKA (biased HSIC), K_ij = exp(−‖x_i − x_j‖² / (2 t² m)) with m the median
  of all n² squared distances (diagonal included) and t = ``rbf_threshold`` — exactly the
  ``gram_rbf`` of Kornblith's representation_similarity notebook.
- ``minibatch``: Nguyen et al.'s minibatch CKA. Each pass reshuffles the examples and cuts them
  into ⌈n / batch_size⌉ nearly equal batches (sizes differ by ≤ 1, all ≤ batch_size); per batch
  one U-centred Gram per layer is built and the Grams are stacked (layers × m²); the stack's
  product with itself (or with the other model's stack) gives HSIC₁ for every layer pair at once
  and is accumulated (each batch's product is divided by m(m−3), i.e. each batch contributes its
  HSIC₁ estimate; with equal batch sizes this is exactly their raw accumulation). The CKA ratio
  is taken once at the end, never per batch.

Precision: features are centred (their means subtracted) and everything from the Gram on is
float64, on CPU or GPU. HSIC and CKA are invariant to feature shifts, so centring only removes
the cancellation that makes float32 Song-formula implementations fail on large-mean ReLU features.

Memory: full-data estimators hold at most ``max_gram_bytes`` of stacked n×n float64 Grams; beyond
that the layers are processed in chunks (Grams of a chunk are recomputed for each partner chunk).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from widthlab.device import resolve_device
from widthlab.similarity.settings import PC1_REMOVED_SUFFIX

ESTIMATORS = ("linear", "debiased", "minibatch", "rbf")
DEFAULT_MAX_GRAM_BYTES = 2 * 1024**3

ArrayLike = np.ndarray | torch.Tensor


# ----------------------------------------------------------------------------------------------
# Features and Grams
# ----------------------------------------------------------------------------------------------


def flatten(x: ArrayLike) -> ArrayLike:
    """n×… → n×p (conv maps n×C×H×W are flattened per example)."""
    if x.ndim == 1:
        return x.reshape(-1, 1)
    return x.reshape(x.shape[0], -1)


def features(x: ArrayLike, device: str | torch.device | None = None) -> torch.Tensor:
    """``x`` as a centred float64 n×p tensor on ``device`` (feature means subtracted)."""
    x = flatten(x)
    if isinstance(x, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(x))
    else:
        tensor = x
    tensor = tensor.to(device=resolve_device(device), dtype=torch.float64)
    return tensor - tensor.mean(dim=0, keepdim=True)


def _zero_diagonal(gram: torch.Tensor) -> torch.Tensor:
    gram.diagonal().zero_()
    return gram


def center_gram(gram: torch.Tensor) -> torch.Tensor:
    """H K H (biased HSIC), in place."""
    means = gram.mean(dim=0)
    means -= means.mean() / 2
    gram -= means[:, None]
    gram -= means[None, :]
    return gram


def u_center_gram(gram: torch.Tensor) -> torch.Tensor:
    """Székely–Rizzo U-centring, in place: ⟨Ũ(K), Ũ(L)⟩ / (n(n−3)) is Song's unbiased HSIC₁."""
    n = gram.shape[0]
    if n < 4:
        raise ValueError(f"the unbiased HSIC needs at least 4 examples, got {n}")
    _zero_diagonal(gram)
    means = gram.sum(dim=0) / (n - 2)
    means -= means.sum() / (2 * (n - 1))
    gram -= means[:, None]
    gram -= means[None, :]
    return _zero_diagonal(gram)


def rbf_gram(x: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    """exp(−d² / (2 t² median(d²))), median over all n² squared distances (notebook definition)."""
    dots = x @ x.T
    norms = dots.diagonal().clone()
    sq = -2 * dots + norms[:, None] + norms[None, :]
    sq.clamp_(min=0)
    flat = sq.reshape(-1)
    k = flat.numel()
    low = flat.kthvalue((k + 1) // 2).values
    median = low if k % 2 else (low + flat.kthvalue(k // 2 + 1).values) / 2
    return torch.exp(sq / (-2 * threshold**2 * median))


def gram(
    x: torch.Tensor, estimator: str, rbf_threshold: float = 1.0, out: torch.Tensor | None = None
) -> torch.Tensor:
    """The centred Gram a CKA estimator uses, from centred float64 features (written into the
    n×n tensor ``out`` when given, e.g. a row of a preallocated stack)."""
    if estimator in ("linear", "debiased", "minibatch"):
        product = x @ x.T if out is None else torch.matmul(x, x.T, out=out)
        # features are centred, so centring again is exact
        return center_gram(product) if estimator == "linear" else u_center_gram(product)
    if estimator == "rbf":
        centred = center_gram(rbf_gram(x, rbf_threshold))
        return centred if out is None else out.copy_(centred)
    raise ValueError(f"unknown CKA estimator {estimator!r}; choose one of {ESTIMATORS}")


def hsic1(k: ArrayLike, l: ArrayLike) -> float:  # noqa: E741
    """Song et al.'s unbiased HSIC₁ of two n×n kernel matrices (float64)."""
    k, l = (torch.as_tensor(g).to(torch.float64).clone() for g in (k, l))  # noqa: E741
    n = k.shape[0]
    return float((u_center_gram(k) * u_center_gram(l)).sum() / (n * (n - 3)))


# ----------------------------------------------------------------------------------------------
# All layer pairs
# ----------------------------------------------------------------------------------------------


def _check_layers(layers: Sequence[ArrayLike], name: str) -> int:
    if len(layers) == 0:
        raise ValueError(f"{name}: no layers given")
    sizes = {int(x.shape[0]) for x in layers}
    if len(sizes) != 1:
        raise ValueError(f"{name}: layers disagree on the number of examples: {sorted(sizes)}")
    return sizes.pop()


def _stack(layers, idx, estimator, rbf_threshold, device) -> torch.Tensor:
    """Flattened centred Grams of the layers ``idx``, one row each, built in place."""
    n = int(layers[idx[0]].shape[0])
    out = torch.empty(len(idx), n * n, dtype=torch.float64, device=resolve_device(device))
    for row, i in enumerate(idx):
        gram(features(layers[i], device), estimator, rbf_threshold, out=out[row].view(n, n))
    return out


def _squared_norms(stack: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(stack, dim=1).square()


def _chunks(count: int, size: int) -> list[range]:
    return [range(start, min(count, start + size)) for start in range(0, count, size)]


def _full_products(layers_a, layers_b, estimator, rbf_threshold, device, max_gram_bytes):
    """(⟨Ga_i, Gb_j⟩, ‖Ga_i‖², ‖Gb_j‖²) for every pair, from stacks of flattened Grams."""
    n = _check_layers(layers_a, "layers_a")
    symmetric = layers_b is None
    if not symmetric and _check_layers(layers_b, "layers_b") != n:
        raise ValueError("the two models were probed on different numbers of examples")
    la = len(layers_a)
    lb = la if symmetric else len(layers_b)
    per_chunk = max(1, int(max_gram_bytes // (2 * n * n * 8)))
    cross = torch.zeros(la, lb, dtype=torch.float64)
    self_a = torch.zeros(la, dtype=torch.float64)
    self_b = torch.zeros(lb, dtype=torch.float64)
    source_b = layers_a if symmetric else layers_b
    chunks_a = _chunks(la, per_chunk)
    chunks_b = chunks_a if symmetric else _chunks(lb, per_chunk)
    for ia, block_a in enumerate(chunks_a):
        ga = _stack(layers_a, block_a, estimator, rbf_threshold, device)
        self_a[block_a.start : block_a.stop] = _squared_norms(ga).cpu()
        for ib, block_b in enumerate(chunks_b):
            if symmetric and ib < ia:
                continue
            if symmetric and ib == ia:
                gb = ga
            else:
                gb = _stack(source_b, block_b, estimator, rbf_threshold, device)
            product = (ga @ gb.T).cpu()
            cross[block_a.start : block_a.stop, block_b.start : block_b.stop] = product
            if symmetric:
                cross[block_b.start : block_b.stop, block_a.start : block_a.stop] = product.T
            elif ia == 0:
                self_b[block_b.start : block_b.stop] = _squared_norms(gb).cpu()
            del gb
        del ga
    return cross, self_a, self_a.clone() if symmetric else self_b


def _to_device_stack(layers, device, max_bytes):
    """Layers as flat float32 tensors on ``device`` if they fit in ``max_bytes``, else as-is."""
    total = sum(int(np.prod(x.shape)) * 4 for x in layers)
    if total > max_bytes:
        return list(layers), False
    out = []
    for x in layers:
        x = flatten(x)
        t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
        out.append(t.to(device) if t.dtype == torch.float64 else t.to(device, torch.float32))
    return out, True


def _batch_stack(layers, idx, on_device, device) -> torch.Tensor:
    m = len(idx)
    out = torch.empty(len(layers), m * m, dtype=torch.float64, device=device)
    for row, x in enumerate(layers):
        if on_device:
            rows = x[torch.as_tensor(idx, device=x.device)]
        else:
            flat = flatten(x)
            rows = flat[idx] if isinstance(x, np.ndarray) else flat[torch.as_tensor(idx)]
        gram(features(rows, device), "minibatch", out=out[row].view(m, m))
    return out


def _minibatch_products(layers_a, layers_b, batch_size, passes, seed, device, max_gram_bytes):
    n = _check_layers(layers_a, "layers_a")
    symmetric = layers_b is None
    if not symmetric and _check_layers(layers_b, "layers_b") != n:
        raise ValueError("the two models were probed on different numbers of examples")
    n_batches = max(1, math.ceil(n / batch_size))
    if n // n_batches < 4:
        raise ValueError(f"batches of {n // n_batches} examples are too small for HSIC₁ (≥ 4)")
    a, a_dev = _to_device_stack(layers_a, device, max_gram_bytes)
    b, b_dev = (a, a_dev) if symmetric else _to_device_stack(layers_b, device, max_gram_bytes)
    la, lb = len(a), len(b)
    cross = torch.zeros(la, lb, dtype=torch.float64, device=device)
    self_a = torch.zeros(la, dtype=torch.float64, device=device)
    self_b = torch.zeros(lb, dtype=torch.float64, device=device)
    rng = np.random.default_rng(seed)
    for _ in range(passes if n_batches > 1 else 1):
        for idx in np.array_split(rng.permutation(n), n_batches):
            idx = np.sort(idx)  # same examples for every layer; order within a batch is irrelevant
            m = len(idx)
            ga = _batch_stack(a, idx, a_dev, device)
            gb = ga if symmetric else _batch_stack(b, idx, b_dev, device)
            scale = 1.0 / (m * (m - 3))
            cross += (ga @ gb.T) * scale
            self_a += _squared_norms(ga) * scale
            if not symmetric:
                self_b += _squared_norms(gb) * scale
    if symmetric:
        self_b = self_a
    return cross.cpu(), self_a.cpu(), self_b.cpu()


def _ratio(cross: torch.Tensor, self_a: torch.Tensor, self_b: torch.Tensor) -> np.ndarray:
    norm = torch.sqrt(self_a.clamp(min=0))[:, None] * torch.sqrt(self_b.clamp(min=0))[None, :]
    out = cross / norm
    out[norm == 0] = float("nan")
    return out.numpy()


@dataclass(frozen=True)
class CKAOptions:
    """How a CKA is estimated. ``estimator``: one of :data:`ESTIMATORS`, optionally suffixed
    ``_pc1_removed`` (every layer's first principal component removed first); ``batch_size``,
    ``passes`` and ``seed`` are used by ``minibatch`` only, ``rbf_threshold`` by ``rbf`` only;
    ``max_gram_bytes`` bounds the stacked Grams held at once."""

    estimator: str = "debiased"
    batch_size: int = 256
    passes: int = 10
    seed: int = 0
    device: str | torch.device | None = None
    rbf_threshold: float = 1.0
    max_gram_bytes: int = DEFAULT_MAX_GRAM_BYTES


def _products(layers_a, layers_b, options: CKAOptions):
    device = resolve_device(options.device)
    estimator = options.estimator
    if estimator.endswith(PC1_REMOVED_SUFFIX):
        layers_a = [remove_pc1(x, device) for x in layers_a]
        layers_b = None if layers_b is None else [remove_pc1(x, device) for x in layers_b]
        estimator = estimator.removesuffix(PC1_REMOVED_SUFFIX)
    if estimator == "minibatch":
        return _minibatch_products(
            layers_a,
            layers_b,
            options.batch_size,
            options.passes,
            options.seed,
            device,
            options.max_gram_bytes,
        )
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown CKA estimator {estimator!r}; choose one of {ESTIMATORS}")
    return _full_products(
        layers_a, layers_b, estimator, options.rbf_threshold, device, options.max_gram_bytes
    )


def cka_matrix(layers: Sequence[ArrayLike], estimator: str = "debiased", **options) -> np.ndarray:
    """CKA between every pair of ``layers`` (each n×… on the same examples): an L×L array.
    ``options`` are the other fields of :class:`CKAOptions`."""
    return _ratio(*_products(layers, None, CKAOptions(estimator, **options)))


def cross_cka(
    layers_a: Sequence[ArrayLike],
    layers_b: Sequence[ArrayLike],
    estimator: str = "debiased",
    **options,
) -> np.ndarray:
    """CKA between every layer of model A and every layer of model B (same examples, same order):
    an La×Lb array. Minibatches use the same examples for both models. ``options`` are the other
    fields of :class:`CKAOptions`."""
    return _ratio(*_products(layers_a, layers_b, CKAOptions(estimator, **options)))


def cka(x: ArrayLike, y: ArrayLike, estimator: str = "debiased", **kwargs) -> float:
    """CKA of two representations of the same examples."""
    return float(cross_cka([x], [y], estimator, **kwargs)[0, 0])


# ----------------------------------------------------------------------------------------------
# Principal components and probes
# ----------------------------------------------------------------------------------------------


def _spectrum_side(x: torch.Tensor) -> torch.Tensor:
    """The smaller of XᵀX and XXᵀ (same nonzero eigenvalues)."""
    return x.T @ x if x.shape[1] <= x.shape[0] else x @ x.T


def _eigh(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric eigendecomposition; falls back to NumPy's LAPACK driver where torch's fails
    (degenerate spectra, e.g. layers with many dead units)."""
    if not bool(torch.isfinite(matrix).all()):
        raise ValueError("features contain NaN or infinite values (did training diverge?)")
    try:
        return torch.linalg.eigh(matrix)
    except torch.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(matrix.cpu().numpy())
        return (
            torch.from_numpy(values).to(matrix.device),
            torch.from_numpy(vectors).to(matrix.device),
        )


def pc1_share(x: ArrayLike, device: str | torch.device | None = None) -> float:
    """Share of the total variance on the first principal component (features centred)."""
    xc = features(x, device)
    eig = _eigh(_spectrum_side(xc))[0].clamp(min=0)
    total = eig.sum()
    return float(eig[-1] / total) if total > 0 else float("nan")


def remove_pc1(x: ArrayLike, device: str | torch.device | None = None) -> torch.Tensor:
    """Centred n×p float64 features with their first principal component projected out."""
    xc = features(x, device)
    _, vectors = _eigh(_spectrum_side(xc))
    top = vectors[:, -1:]
    if xc.shape[1] <= xc.shape[0]:  # top right-singular vector v: X − X v vᵀ
        return xc - (xc @ top) @ top.T
    return xc - top @ (top.T @ xc)  # top left-singular vector u: X − u uᵀ X


def gram_cka(gram_a: ArrayLike, gram_b: ArrayLike) -> float:
    """Linear CKA (biased HSIC) of two n×n kernel matrices: the centred kernel alignment
    ⟨HAH, HBH⟩_F / (‖HAH‖_F ‖HBH‖_F); NaN when either centred kernel is zero."""
    a = center_gram(torch.as_tensor(gram_a).to(torch.float64).clone())
    b = center_gram(torch.as_tensor(gram_b).to(torch.float64).clone())
    denom = torch.linalg.norm(a) * torch.linalg.norm(b)
    return float((a * b).sum() / denom) if denom > 0 else float("nan")
