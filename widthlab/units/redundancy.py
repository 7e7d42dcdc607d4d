"""Redundancy of a layer: PCA compressibility (the share of dimensions that can be dropped keeping
``energy`` of the variance) and the auxiliary count of similar units (numpy only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from widthlab.units.settings import DEFAULT_CORR_THRESHOLD, DEFAULT_ENERGY, DEFAULT_MAX_ROWS

_DEAD_TOL = 1e-12  # a unit whose variance is below this share of the layer's largest is dead


def unit_samples(acts, max_rows: int = DEFAULT_MAX_ROWS, seed: int = 0) -> np.ndarray:
    """A tap's activations as a float64 (samples × units) matrix.

    Dense taps (n × units) are used as they are; conv maps (n × C × …) make every spatial position
    a sample. More than ``max_rows`` rows are subsampled without replacement (seeded).
    """
    arr = acts.detach().cpu().numpy() if hasattr(acts, "detach") else np.asarray(acts)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    elif arr.ndim > 2:
        arr = np.moveaxis(arr, 1, -1).reshape(-1, arr.shape[1])
    if len(arr) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(arr), max_rows, replace=False))
        arr = arr[rows]
    return np.asarray(arr, dtype=np.float64)


def pca_spectrum(samples: np.ndarray) -> np.ndarray:
    """Eigenvalues (descending, ≥ 0) of the sample covariance of (samples × units)."""
    x = np.asarray(samples, dtype=np.float64)
    if len(x) < 2:
        raise ValueError("PCA needs at least two samples")
    x = x - x.mean(axis=0, keepdims=True)
    n, units = x.shape
    if n < units:  # the nonzero eigenvalues of XᵀX are those of the smaller XXᵀ; the rest are 0
        values = np.concatenate([np.linalg.eigvalsh(x @ x.T / (n - 1)), np.zeros(units - n)])
    else:
        values = np.linalg.eigvalsh(x.T @ x / (n - 1))
    return np.clip(np.sort(values)[::-1], 0.0, None)


def n_components(eigenvalues: Sequence[float], energy: float = DEFAULT_ENERGY) -> int:
    """Smallest number of leading components holding ≥ ``energy`` of the variance (0 if none)."""
    values = np.sort(np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None))[::-1]
    total = values.sum()
    if total <= 0.0:
        return 0
    cumulative = np.cumsum(values) / total
    k = int(np.searchsorted(cumulative, energy * (1.0 - 1e-12), side="left")) + 1
    return min(k, len(values))


def compressibility(eigenvalues: Sequence[float], energy: float = DEFAULT_ENERGY) -> float:
    """Fraction of dimensions that can be dropped while keeping ``energy`` of the variance."""
    n = len(eigenvalues)
    return (n - n_components(eigenvalues, energy)) / n


def dead_units(samples: np.ndarray) -> np.ndarray:
    """Boolean mask of units with (numerically) zero variance."""
    var = np.asarray(samples, dtype=np.float64).var(axis=0)
    top = var.max() if var.size else 0.0
    return var <= _DEAD_TOL * top if top > 0 else np.ones_like(var, dtype=bool)


def similar_unit_counts(
    samples: np.ndarray, threshold: float = DEFAULT_CORR_THRESHOLD
) -> np.ndarray:
    """Per unit, the number of other units with |Pearson r| ≥ ``threshold``; dead units get 0 and
    are counted for nobody."""
    x = np.asarray(samples, dtype=np.float64)
    dead = dead_units(x)
    counts = np.zeros(x.shape[1], dtype=np.int64)
    live = np.flatnonzero(~dead)
    if len(live) > 1:
        z = x[:, live] - x[:, live].mean(axis=0)
        z /= np.linalg.norm(z, axis=0)
        r = z.T @ z
        counts[live] = (np.abs(r) >= threshold).sum(axis=1) - 1
    return counts


def layer_redundancy(
    acts,
    energy: float = DEFAULT_ENERGY,
    corr_threshold: float = DEFAULT_CORR_THRESHOLD,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
) -> dict:
    """PCA compressibility, components for ``energy``, correlation count and dead units of a tap."""
    samples = unit_samples(acts, max_rows, seed)
    values = pca_spectrum(samples)
    k = n_components(values, energy)
    units = samples.shape[1]
    return {
        "units": units,
        "n_pcs": k,
        "compressibility": (units - k) / units,
        "mean_abs_corr_count": float(similar_unit_counts(samples, corr_threshold).mean()),
        "dead_units": int(dead_units(samples).sum()),
        "pca_rows": len(samples),
    }


def redundancy_table(
    layers: Mapping[str, object],
    energy: float = DEFAULT_ENERGY,
    corr_threshold: float = DEFAULT_CORR_THRESHOLD,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`layer_redundancy` of every tap (``{tap: activations}`` in tap order)."""
    rows = []
    for i, (tap, acts) in enumerate(layers.items()):
        rows.append(
            {
                "layer": tap,
                "layer_index": i,
                **layer_redundancy(acts, energy, corr_threshold, max_rows, seed + i),
            }
        )
    return pd.DataFrame(rows)
