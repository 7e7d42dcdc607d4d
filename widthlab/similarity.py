"""Representation similarity (Nguyen, Raghu & Kornblith 2021): CKA, PC1, probes, blocks, errors.

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
import pandas as pd
import torch

ESTIMATORS = ("linear", "debiased", "minibatch", "rbf")
PC1_REMOVED_SUFFIX = "_pc1_removed"
DEFAULT_MAX_GRAM_BYTES = 2 * 1024**3

ArrayLike = np.ndarray | torch.Tensor


# ----------------------------------------------------------------------------------------------
# Features and Grams
# ----------------------------------------------------------------------------------------------


def _device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _flat(x: ArrayLike) -> ArrayLike:
    """n×… → n×p (conv maps n×C×H×W are flattened per example)."""
    if x.ndim == 1:
        return x.reshape(-1, 1)
    return x.reshape(x.shape[0], -1)


def features(x: ArrayLike, device: str | torch.device | None = None) -> torch.Tensor:
    """``x`` as a centred float64 n×p tensor on ``device`` (feature means subtracted)."""
    x = _flat(x)
    if isinstance(x, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(x))
    else:
        tensor = x
    tensor = tensor.to(device=_device(device), dtype=torch.float64)
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


def gram(x: torch.Tensor, estimator: str, rbf_threshold: float = 1.0) -> torch.Tensor:
    """The centred Gram a CKA estimator uses, from centred float64 features."""
    if estimator == "linear":
        return center_gram(x @ x.T)  # features are centred, so this is exact re-centring
    if estimator in ("debiased", "minibatch"):
        return u_center_gram(x @ x.T)
    if estimator == "rbf":
        return center_gram(rbf_gram(x, rbf_threshold))
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
    return torch.stack(
        [gram(features(layers[i], device), estimator, rbf_threshold).reshape(-1) for i in idx]
    )


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
        self_a[block_a.start : block_a.stop] = (ga * ga).sum(dim=1).cpu()
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
                self_b[block_b.start : block_b.stop] = (gb * gb).sum(dim=1).cpu()
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
        x = _flat(x)
        t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
        out.append(t.to(device) if t.dtype == torch.float64 else t.to(device, torch.float32))
    return out, True


def _batch_stack(layers, idx, on_device, device) -> torch.Tensor:
    grams = []
    for x in layers:
        if on_device:
            rows = x[torch.as_tensor(idx, device=x.device)]
        else:
            rows = _flat(x)[idx] if isinstance(x, np.ndarray) else _flat(x)[torch.as_tensor(idx)]
        grams.append(gram(features(rows, device), "minibatch").reshape(-1))
    return torch.stack(grams)


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
            self_a += (ga * ga).sum(dim=1) * scale
            if not symmetric:
                self_b += (gb * gb).sum(dim=1) * scale
    if symmetric:
        self_b = self_a
    return cross.cpu(), self_a.cpu(), self_b.cpu()


def _ratio(cross: torch.Tensor, self_a: torch.Tensor, self_b: torch.Tensor) -> np.ndarray:
    norm = torch.sqrt(self_a.clamp(min=0))[:, None] * torch.sqrt(self_b.clamp(min=0))[None, :]
    out = cross / norm
    out[norm == 0] = float("nan")
    return out.numpy()


def _products(layers_a, layers_b, estimator, batch_size, passes, seed, device, rbf_threshold, mgb):
    device = _device(device)
    if estimator.endswith(PC1_REMOVED_SUFFIX):
        base = estimator.removesuffix(PC1_REMOVED_SUFFIX)
        layers_a = [remove_pc1(x, device) for x in layers_a]
        layers_b = None if layers_b is None else [remove_pc1(x, device) for x in layers_b]
        estimator = base
    if estimator == "minibatch":
        return _minibatch_products(layers_a, layers_b, batch_size, passes, seed, device, mgb)
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown CKA estimator {estimator!r}; choose one of {ESTIMATORS}")
    return _full_products(layers_a, layers_b, estimator, rbf_threshold, device, mgb)


def cka_matrix(
    layers: Sequence[ArrayLike],
    estimator: str = "debiased",
    batch_size: int = 256,
    passes: int = 10,
    seed: int = 0,
    device: str | torch.device | None = None,
    rbf_threshold: float = 1.0,
    max_gram_bytes: int = DEFAULT_MAX_GRAM_BYTES,
) -> np.ndarray:
    """CKA between every pair of ``layers`` (each n×… on the same examples): an L×L array.

    ``estimator``: one of :data:`ESTIMATORS`, optionally suffixed ``_pc1_removed`` (the first
    principal component of every layer is removed before the CKA). ``batch_size``, ``passes``
    and ``seed`` are used by ``minibatch`` only; ``rbf_threshold`` by ``rbf`` only.
    """
    cross, sa, sb = _products(
        layers, None, estimator, batch_size, passes, seed, device, rbf_threshold, max_gram_bytes
    )
    return _ratio(cross, sa, sb)


def cross_cka(
    layers_a: Sequence[ArrayLike],
    layers_b: Sequence[ArrayLike],
    estimator: str = "debiased",
    batch_size: int = 256,
    passes: int = 10,
    seed: int = 0,
    device: str | torch.device | None = None,
    rbf_threshold: float = 1.0,
    max_gram_bytes: int = DEFAULT_MAX_GRAM_BYTES,
) -> np.ndarray:
    """CKA between every layer of model A and every layer of model B (same examples, same order):
    an La×Lb array. Minibatches use the same examples for both models."""
    cross, sa, sb = _products(
        layers_a,
        layers_b,
        estimator,
        batch_size,
        passes,
        seed,
        device,
        rbf_threshold,
        max_gram_bytes,
    )
    return _ratio(cross, sa, sb)


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


def linear_probe_accuracy(
    x: ArrayLike,
    y: np.ndarray,
    seed: int = 0,
    test_fraction: float = 0.3,
    max_iter: int = 5000,
    c: float = 1.0,
) -> float:
    """Held-out accuracy of a logistic-regression probe on standardised features.

    Stratified split of the examples (``test_fraction`` held out, seeded); scikit-learn
    ``LogisticRegression`` (L2, ``C=c``, lbfgs) after ``StandardScaler`` fitted on the train part.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = _flat(x)
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    x = x.astype(np.float64)
    y = np.asarray(y)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
    probe.fit(x_train, y_train)
    return float(probe.score(x_test, y_test))


# ----------------------------------------------------------------------------------------------
# Block structure
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Error patterns
# ----------------------------------------------------------------------------------------------


def prediction_agreement(pred_a: np.ndarray, pred_b: np.ndarray) -> np.ndarray:
    """Per example: do the two models predict the same class? (bool array)."""
    pred_a, pred_b = np.asarray(pred_a), np.asarray(pred_b)
    if pred_a.shape != pred_b.shape:
        raise ValueError(f"prediction arrays differ in shape: {pred_a.shape} vs {pred_b.shape}")
    return pred_a == pred_b


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values); NaNs pass through."""
    from scipy.stats import false_discovery_control

    p = np.asarray(p_values, dtype=np.float64)
    q = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        q[ok] = false_discovery_control(p[ok], method="bh")
    return q


def _sign_flip_p(d: np.ndarray, n_permutations: int, rng: np.random.Generator) -> float:
    """Two-sided paired permutation p-value of mean(d) = 0, flipping each example's sign."""
    observed = abs(d.mean())
    exceed, done, chunk = 0, 0, max(1, 2_000_000 // max(len(d), 1))
    while done < n_permutations:
        k = min(chunk, n_permutations - done)
        signs = rng.integers(0, 2, size=(k, len(d)), dtype=np.int8) * 2 - 1
        null = np.abs(signs @ d) / len(d)
        exceed += int((null >= observed - 1e-12).sum())
        done += k
    return (1 + exceed) / (1 + n_permutations)


def per_class_difference(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    labels: np.ndarray,
    method: str = "permutation",
    n_permutations: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Per-class accuracy difference of model (group) A minus B, tested and FDR-corrected.

    ``correct_a`` / ``correct_b``: per-example correctness, shape (n,) or (k, n) for k seeds
    (averaged over seeds per example). Null: A and B are exchangeable per example. ``method``:
    ``permutation`` (paired sign-flip test of the mean per-example difference, two-sided,
    p = (1 + #{|null| ≥ |obs|}) / (1 + n_permutations)) or ``mcnemar`` (exact two-sided binomial
    test on the discordant pairs; needs 1-D boolean inputs). Benjamini–Hochberg across classes.
    """
    from scipy.stats import binomtest

    a = np.atleast_2d(np.asarray(correct_a, dtype=np.float64)).mean(axis=0)
    b = np.atleast_2d(np.asarray(correct_b, dtype=np.float64)).mean(axis=0)
    labels = np.asarray(labels)
    if not (a.shape == b.shape == labels.shape):
        raise ValueError("correct_a, correct_b and labels must describe the same examples")
    rng = np.random.default_rng(seed)
    rows = []
    for cls in np.unique(labels):
        mask = labels == cls
        d = a[mask] - b[mask]
        if method == "permutation":
            p = _sign_flip_p(d, n_permutations, rng) if np.any(d != 0) else 1.0
        elif method == "mcnemar":
            if np.asarray(correct_a).ndim != 1 or np.asarray(correct_b).ndim != 1:
                raise ValueError("mcnemar needs one model per side (1-D correctness)")
            wins, losses = int((d > 0).sum()), int((d < 0).sum())
            p = binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else 1.0
        else:
            raise ValueError(f"unknown test {method!r}; choose 'permutation' or 'mcnemar'")
        rows.append(
            {
                "class": cls.item() if hasattr(cls, "item") else cls,
                "n": int(mask.sum()),
                "acc_a": float(a[mask].mean()),
                "acc_b": float(b[mask].mean()),
                "diff": float(d.mean()),
                "p_value": float(p),
            }
        )
    table = pd.DataFrame(rows)
    table["q_value"] = benjamini_hochberg(table["p_value"])
    table["significant"] = table["q_value"] < alpha
    table["test"] = method
    return table


# ----------------------------------------------------------------------------------------------
# Tidy tables for the workflow stage
# ----------------------------------------------------------------------------------------------


def _long(matrix: np.ndarray, names_i, names_j, estimator: str, suffix=("i", "j")):
    li, lj = matrix.shape
    ii, jj = np.meshgrid(np.arange(li), np.arange(lj), indexing="ij")
    si, sj = suffix
    return pd.DataFrame(
        {
            f"layer_{si}": ii.ravel(),
            f"layer_{sj}": jj.ravel(),
            f"name_{si}": np.asarray(names_i, dtype=object)[ii.ravel()],
            f"name_{sj}": np.asarray(names_j, dtype=object)[jj.ravel()],
            "estimator": estimator,
            "cka": matrix.ravel(),
        }
    )


def within_model_table(
    tap_names: Sequence[str],
    layers: Sequence[ArrayLike],
    estimators: Sequence[str] = ("debiased", "linear"),
    **kwargs,
) -> pd.DataFrame:
    """Long table of CKA between every pair of a model's layers, one block per estimator:
    layer_i, layer_j, name_i, name_j, estimator, cka (``<est>_pc1_removed`` estimators allowed)."""
    tables = [
        _long(cka_matrix(layers, est, **kwargs), tap_names, tap_names, est) for est in estimators
    ]
    return pd.concat(tables, ignore_index=True)


def cross_model_table(
    tap_names_a: Sequence[str],
    layers_a: Sequence[ArrayLike],
    tap_names_b: Sequence[str],
    layers_b: Sequence[ArrayLike],
    estimators: Sequence[str] = ("debiased",),
    **kwargs,
) -> pd.DataFrame:
    """Long table of CKA between every layer of A and every layer of B:
    layer_a, layer_b, name_a, name_b, estimator, cka."""
    tables = [
        _long(
            cross_cka(layers_a, layers_b, est, **kwargs), tap_names_a, tap_names_b, est, ("a", "b")
        )
        for est in estimators
    ]
    return pd.concat(tables, ignore_index=True)


def layer_table(
    tap_names: Sequence[str],
    layers: Sequence[ArrayLike],
    labels: np.ndarray | None = None,
    seed: int = 0,
    test_fraction: float = 0.3,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """One row per layer: layer, name, units, pc1_share, probe_accuracy (NaN without labels)."""
    rows = []
    for i, (name, x) in enumerate(zip(tap_names, layers, strict=True)):
        rows.append(
            {
                "layer": i,
                "name": name,
                "units": int(np.prod(x.shape[1:])),
                "pc1_share": pc1_share(x, device),
                "probe_accuracy": (
                    linear_probe_accuracy(x, labels, seed, test_fraction)
                    if labels is not None
                    else float("nan")
                ),
            }
        )
    return pd.DataFrame(rows)


def matrix_from_table(table: pd.DataFrame, estimator: str, suffix=("i", "j")) -> np.ndarray:
    """The square (or La×Lb) CKA matrix of one estimator back from a long table."""
    sub = table[table["estimator"] == estimator]
    si, sj = suffix
    return sub.pivot(index=f"layer_{si}", columns=f"layer_{sj}", values="cka").to_numpy()
