"""Ridge R² and residual correlation of a chunk against the full layer (split ``test``).

Ridge (α = 1e-8, intercept) from the chunk to the full layer. By default fitted on train and
evaluated on test (``r2_fit_split="train"``): an out-of-sample R², which cannot be inflated by a
chunk that is merely large compared with the number of examples. The official code fits and
scores on the test set itself (``r2_fit_split="test"`` reproduces it). The score is the
variance-weighted R² of scikit-learn, 1 − Σ_j SSE_j / Σ_j SST_j over output units with non-zero
variance on the evaluation split. The residual correlation is the mean |off-diagonal Pearson
correlation| of the evaluation residuals of the units *outside* the chunk (the official code
also includes the chunk's own, ≈ 0 residuals, which biases it towards 0); units whose residual
variance is at most 1e-12 × the mean variance of the layer's units (dead units, units the chunk
determines exactly) are left out, and with fewer than two units left the value is NaN. The
chunks of a size are solved together from the fit split's cross-product matrix
(:func:`chunk_regression`); the residual correlation (a W × W matrix per chunk) is computed for
the first ``n_corr_chunks`` of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from widthlab.clones.chunks import chunk_blocks
from widthlab.clones.tensors import ArrayLike, as_float64


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
    only for the first ``n_corr`` chunks of each size, NaN for the rest; all if None).

    The chunks may be of several sizes: the layer's cross-product matrices are computed once
    for all of them, and the chunks of one size are solved as a batch. The ridge solution
    comes from the fit split's centred cross-product matrix S = Xᵀ X, B = (S_cc + α I)⁻¹ S_c·,
    through the eigendecomposition of S_cc — exact ridge (the SVD solution
    V diag(s / (s² + α)) Uᵀ Y written with λ = s²), stable for collinear chunks: directions
    with λ ≤ 1e-12 · λ_max carry no signal (their Xᵀ Y component is round-off) and get
    coefficient 0. Residuals are formed directly on
    the evaluation split only for the residual correlation; the R² uses the evaluation Gram
    matrix G = Dᵀ D (D: evaluation split minus the fit mean), SSE = Σ_j (G − 2 Bᵀ G_c· +
    Bᵀ G_cc B)_jj, whose round-off (≈ 1e-13 relative) is far below any R² difference of note."""
    fit, ev = as_float64(h_fit, device), as_float64(h_eval, device)
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
    ordinal, seen = [], {}  # each chunk's rank among the chunks of its size
    for chunk in chunks:
        ordinal.append(seen.get(len(chunk), 0))
        seen[len(chunk)] = ordinal[-1] + 1
    r2 = np.full(len(chunks), np.nan)
    corr = np.full(len(chunks), np.nan)
    for positions, block in chunk_blocks(chunks, lambda size: (2 * size + 1) * width):
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
            if ordinal[k] >= n_corr:
                continue
            chunk = idx[row]
            resid = shifted - shifted[:, chunk] @ coef[row]
            outside = torch.ones(width, dtype=torch.bool, device=fit.device)
            outside[chunk] = False
            corr[k] = residual_correlation(resid, outside, scale)
    return r2, corr
