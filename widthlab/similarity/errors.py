"""Error patterns of two models: prediction agreement and per-class accuracy differences with a
permutation (sign-flip) or binomial test and Benjamini–Hochberg correction (numpy, scipy)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


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
