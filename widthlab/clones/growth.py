"""How the number of clones grows with width: the hinge fit (1 clone up to a critical width,
linear above; numpy only). The log-log exponent is :func:`widthlab.stats.log2_growth_slope`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


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
