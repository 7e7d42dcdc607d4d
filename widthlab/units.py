"""Frivolous units (Casper et al., AAAI 2021): prunable and redundant units, and how they grow.

Method facts follow the official code (``xboix/frivolous_dnns``); where this module decides
something the code leaves open, the choice is written here.

Prunability (zero-ablation)
    A unit is switched off by zeroing its post-activation output (a whole channel in a conv map),
    through the ``masks`` argument of :class:`TappedModel.forward`. For each of ``orders`` random
    orders one permutation per tap is drawn (seeded); at fraction ``f`` the first
    ``floor(f · units + 1e-9)`` units of that permutation are ablated (as ``int(f · n)`` in the
    official code, with a tolerance so ``f · n`` a hair below an integer is not rounded down).
    The ablated sets are nested along ``f``. Scope ``"all"`` ablates every tap at once at the same
    fraction; scope ``<tap>`` ablates only that tap (the per-layer curves). The metric is the share
    of the examples whose predicted label equals the intact model's prediction.
    Batching: one forward pass serves many masks. The examples are repeated along the batch and
    every copy gets its own ``(batch, units)`` mask row, so up to ``batch_size`` rows
    (configurations × examples) go through the model at once, on the model's device.

Prunability (a number)
    :func:`crossing` finds the fraction where an agreement curve first falls below ``threshold``
    (default 0.8), linearly interpolated between the last grid point at or above it and the first
    below it. Curves that never fall below give the largest fraction of the grid (1.0 on the
    default grid) with flag ``never_crosses``; curves that start below (agreement at the smallest
    fraction < threshold) give 0.0 with flag ``starts_below``. The per-model prunability is read
    off the curve averaged over orders; the spread over orders (one crossing per order) is kept as
    ``prunability_sd``.

Redundancy (PCA compressibility)
    Per tap, PCA of the test activations (conv maps: every spatial position is a sample; rows are
    subsampled to at most ``max_rows`` = 50 000, seeded). ``n_pcs`` = the smallest number of
    principal components whose variance is ≥ 95 % of the total; compressibility =
    ``(units − n_pcs) / units``, the fraction of dimensions that can be dropped keeping 95 % of the
    variance (``[10, 10, 1e-6 × 8]`` → 0.8). A layer whose units all have zero variance has
    ``n_pcs = 0`` and compressibility 1 (flag ``no_variance``). (The official
    ``get_compressability95`` returns one more dimension than can be dropped, because its loop
    counts the eigenvalue that crosses 5 %; here the count is exact.)
    Auxiliary: the mean over units of the number of *other* units with |Pearson r| ≥ 0.5. Dead units
    (zero variance, relative tolerance ``1e-12`` of the layer's largest variance) have no defined
    correlation; they count 0 and are counted for nobody (the official code's NaN correlations
    would count them −1). Their number is kept as ``dead_units``.

Unit counts (per layer and for the whole network)
    ``prunable = prunability × units``; ``non_prunable = units − prunable``. Redundant units are
    counted among the non-prunable ones. Two rules (``redundancy_rule``):

    - ``"product"`` (default, Casper et al.'s counting): ``redundant = compressibility ×
      non_prunable``; the compressibility of the whole layer stands in for that of its
      non-prunable units (prunability identifies a *number* of units, not which ones).
    - ``"pcs"``: ``non_redundant = min(n_pcs, non_prunable)``, ``redundant = non_prunable −
      non_redundant``: the non-prunable units need at least ``n_pcs`` dimensions, the rest are
      linear combinations of those. Exact on hand-built layers that mix dead units (prunable and
      compressible at once, which ``"product"`` counts twice) with duplicated units.

    ``non_redundant = non_prunable − redundant``. Network rows (``layer == "all"``) take the
    prunability of the all-layer curve, sum units and counts over the taps (each tap loses the same
    fraction of units) and unit-weight the compressibility and the correlation count.

Growth statistic g
    Counts of one quantity along a width series ``W, 2W, 4W, …`` (a ×2 series is required); ``g``
    = mean of ``count(2W) / count(W)`` over the successive doublings. Normalising to the widest
    model does not change the ratios. ``g = 2`` grows like the width, ``g > 2`` faster, ``g = 1``
    stays constant. Doublings whose smaller count is 0 have no ratio and are skipped (if none is
    left, g is NaN).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # torch is imported where it is used, so the summary never loads it
    import torch

DEFAULT_FRACTIONS = tuple(float(f) for f in np.linspace(0.0, 1.0, 7))
DEFAULT_THRESHOLD = 0.8
DEFAULT_ENERGY = 0.95
DEFAULT_CORR_THRESHOLD = 0.5
DEFAULT_MAX_ROWS = 50_000
REDUNDANCY_RULES = ("product", "pcs")
COUNT_QUANTITIES = ("units", "prunable", "non_prunable", "redundant", "non_redundant")
ALL = "all"
_DEAD_TOL = 1e-12

Orders = int | Sequence[Mapping[str, Sequence[int]]]


# ----------------------------------------------------------------------------------------------
# Ablation
# ----------------------------------------------------------------------------------------------


def _no_grad(fn):
    """``torch.no_grad()`` around ``fn``, importing torch only when ``fn`` runs."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper


def model_device(model: torch.nn.Module) -> torch.device:
    import torch

    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def n_ablated(fraction: float, units: int) -> int:
    """Units switched off at ``fraction``: ``floor(fraction · units)`` (with float tolerance)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"ablation fractions lie in [0, 1], got {fraction}")
    return min(units, int(math.floor(fraction * units + 1e-9)))


def random_orders(
    sizes: Mapping[str, int], n_orders: int, seed: int
) -> list[dict[str, np.ndarray]]:
    """``n_orders`` random ablation orders: one permutation of each tap's units per order."""
    if n_orders < 1:
        raise ValueError(f"need at least one ablation order, got {n_orders}")
    rng = np.random.default_rng(seed)
    return [{tap: rng.permutation(int(n)) for tap, n in sizes.items()} for _ in range(n_orders)]


def _as_tensor(x, device: torch.device) -> torch.Tensor:
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if not torch.is_floating_point(tensor):
        tensor = tensor.float()
    return tensor.to(device)


@_no_grad
def tap_sizes(model: torch.nn.Module, x) -> dict[str, int]:
    """{tap: units} (channels for conv maps), in tap order, from a forward pass on one example."""
    logits, taps = model(_as_tensor(x[:1], model_device(model)), return_taps=True)
    return {name: int(taps[name].shape[1]) for name in model.tap_names}


@_no_grad
def predict(model: torch.nn.Module, x, batch_size: int = 4096, masks=None) -> torch.Tensor:
    """Predicted labels (on the model's device) of the intact (or uniformly masked) model."""
    import torch

    device = model_device(model)
    out = []
    for start in range(0, len(x), batch_size):
        batch = _as_tensor(x[start : start + batch_size], device)
        out.append(model(batch, masks=masks).argmax(dim=1))
    return torch.cat(out)


def _check_orders(orders: Orders, sizes: dict[str, int], seed: int) -> list[dict[str, np.ndarray]]:
    if isinstance(orders, int):
        return random_orders(sizes, orders, seed)
    checked = []
    for i, order in enumerate(orders):
        perms = {}
        for tap, n in sizes.items():
            perm = np.asarray(order[tap], dtype=np.int64)
            if sorted(perm.tolist()) != list(range(n)):
                raise ValueError(f"order {i}, tap {tap!r}: not a permutation of its {n} units")
            perms[tap] = perm
        checked.append(perms)
    if not checked:
        raise ValueError("need at least one ablation order")
    return checked


def ablation_configs(
    sizes: dict[str, int],
    orders: list[dict[str, np.ndarray]],
    fractions: Sequence[float],
    per_layer: bool = True,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Every (scope, order, fraction) as a row, and per tap a (configs × units) keep-mask.

    Row ``i`` of the table is configuration ``i`` of the masks; ``n_units_ablated`` counts the
    units switched off over the ablated taps, ``units`` all units of those taps.
    """
    scopes = [ALL] + (list(sizes) if per_layer else [])
    rows, masks = [], {tap: [] for tap in sizes}
    for scope in scopes:
        taps = list(sizes) if scope == ALL else [scope]
        for k, order in enumerate(orders):
            for fraction in fractions:
                ablated = 0
                for tap, n in sizes.items():
                    keep = np.ones(n, dtype=np.float32)
                    if tap in taps:
                        m = n_ablated(float(fraction), n)
                        keep[order[tap][:m]] = 0.0
                        ablated += m
                    masks[tap].append(keep)
                rows.append(
                    {
                        "scope": scope,
                        "order": k,
                        "fraction": float(fraction),
                        "n_units_ablated": ablated,
                        "units": sum(sizes[t] for t in taps),
                    }
                )
    return pd.DataFrame(rows), {tap: np.stack(v) for tap, v in masks.items()}


@_no_grad
def masked_agreement(
    model: torch.nn.Module,
    x,
    masks: Mapping[str, np.ndarray],
    batch_size: int = 4096,
    reference: torch.Tensor | None = None,
) -> np.ndarray:
    """Share of examples whose prediction under each mask configuration equals ``reference``
    (default: the intact model's). ``masks[tap]`` is (configs × units).

    The examples are tiled along the batch: a forward pass carries ``c`` configurations of ``b``
    examples, ``c · b ≤ batch_size`` rows (at least one configuration), each row with its own mask.
    """
    import torch

    device = model_device(model)
    x_all = _as_tensor(x, device)
    n = len(x_all)
    if reference is None:
        reference = predict(model, x_all, batch_size)
    reference = reference.to(device)
    mask_t = {tap: torch.as_tensor(m, device=device, dtype=x_all.dtype) for tap, m in masks.items()}
    n_configs = len(next(iter(mask_t.values())))
    b = max(1, min(n, batch_size))
    c = max(1, batch_size // b)
    agree = torch.zeros(n_configs, dtype=torch.float64, device=device)
    for start in range(0, n, b):
        xb = x_all[start : start + b]
        rb = reference[start : start + b]
        nb = len(xb)
        for cstart in range(0, n_configs, c):
            cc = min(c, n_configs - cstart)
            tiled = xb.repeat(cc, *([1] * (xb.dim() - 1)))
            row_masks = {
                tap: m[cstart : cstart + cc].repeat_interleave(nb, dim=0)
                for tap, m in mask_t.items()
            }
            pred = model(tiled, masks=row_masks).argmax(dim=1).view(cc, nb)
            agree[cstart : cstart + cc] += (pred == rb.view(1, nb)).sum(dim=1).double()
    return (agree / n).cpu().numpy()


def ablation_curves(
    model: torch.nn.Module,
    x,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    orders: Orders = 3,
    seed: int = 0,
    batch_size: int = 4096,
    per_layer: bool = True,
) -> pd.DataFrame:
    """Agreement with the intact model under nested random zero-ablation.

    Returns one row per (scope, order, fraction): ``scope`` (``"all"`` or a tap name), ``order``,
    ``fraction``, ``agreement``, ``n_units_ablated``, ``units``. ``orders`` is a number of random
    orders (drawn with ``seed``) or explicit orders ``[{tap: permutation}, …]``. Runs on the
    device the model is on; the model is put in eval mode for the passes.
    """
    fractions = sorted({float(f) for f in fractions})
    was_training = model.training
    model.eval()
    try:
        sizes = tap_sizes(model, x)
        perms = _check_orders(orders, sizes, seed)
        table, masks = ablation_configs(sizes, perms, fractions, per_layer)
        # identical keep-masks (fraction 0 everywhere, or fractions that round to the same count)
        # are evaluated once
        stacked = np.concatenate([masks[tap] for tap in sizes], axis=1)
        unique, inverse = np.unique(stacked, axis=0, return_inverse=True)
        bounds = np.cumsum([0] + [sizes[tap] for tap in sizes])
        unique_masks = {tap: unique[:, bounds[i] : bounds[i + 1]] for i, tap in enumerate(sizes)}
        agreement = masked_agreement(model, x, unique_masks, batch_size)
        table["agreement"] = agreement[np.asarray(inverse).reshape(-1)]
    finally:
        model.train(was_training)
    return table[["scope", "order", "fraction", "agreement", "n_units_ablated", "units"]]


# ----------------------------------------------------------------------------------------------
# Prunability from curves
# ----------------------------------------------------------------------------------------------


def crossing(
    fractions: Sequence[float], agreement: Sequence[float], threshold: float = DEFAULT_THRESHOLD
) -> tuple[float, str]:
    """(fraction where ``agreement`` first falls below ``threshold``, flag).

    Linear interpolation between the last grid point at or above the threshold and the first one
    below it. Flags: ``crosses``; ``never_crosses`` (returns the largest fraction of the grid);
    ``starts_below`` (agreement at the smallest fraction already below: returns 0.0).
    """
    f = np.asarray(fractions, dtype=np.float64)
    a = np.asarray(agreement, dtype=np.float64)
    if f.shape != a.shape or f.ndim != 1 or len(f) == 0:
        raise ValueError("fractions and agreement must be 1-d and of the same, non-zero length")
    order = np.argsort(f, kind="stable")
    f, a = f[order], a[order]
    below = np.flatnonzero(a < threshold)
    if len(below) == 0:
        return float(f[-1]), "never_crosses"
    i = int(below[0])
    if i == 0:
        return 0.0, "starts_below"
    f0, f1, a0, a1 = f[i - 1], f[i], a[i - 1], a[i]
    return float(f0 + (a0 - threshold) / (a0 - a1) * (f1 - f0)), "crosses"


def prunability(
    fractions: Sequence[float], agreement: Sequence[float], threshold: float = DEFAULT_THRESHOLD
) -> float:
    """Fraction of units that can be zeroed before agreement falls below ``threshold``; see
    :func:`crossing` for the interpolation and the never-crosses (→ largest fraction, 1.0 on the
    default grid) and starts-below (→ 0.0) cases."""
    return crossing(fractions, agreement, threshold)[0]


def prunability_table(curves: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Per scope: prunability of the order-averaged curve, its flag, and the mean / sd over orders
    of the per-order crossings."""
    rows = []
    for scope, sub in curves.groupby("scope", sort=False):
        mean_curve = sub.groupby("fraction")["agreement"].mean()
        value, flag = crossing(mean_curve.index, mean_curve.to_numpy(), threshold)
        per_order = [
            crossing(o["fraction"], o["agreement"], threshold)[0]
            for _, o in sub.groupby("order", sort=True)
        ]
        rows.append(
            {
                "scope": scope,
                "prunability": value,
                "prunability_flag": flag,
                "prunability_order_mean": float(np.mean(per_order)),
                "prunability_sd": float(np.std(per_order, ddof=1)) if len(per_order) > 1 else 0.0,
                "n_orders": len(per_order),
                "units": int(sub["units"].iloc[0]),
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# Redundancy
# ----------------------------------------------------------------------------------------------


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


@_no_grad
def layer_activations(model: torch.nn.Module, x, batch_size: int = 1024) -> dict[str, np.ndarray]:
    """{tap: float32 array} of the intact model on ``x`` (when no activation file is at hand)."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    parts: dict[str, list] = {tap: [] for tap in model.tap_names}
    try:
        for start in range(0, len(x), batch_size):
            _, taps = model(_as_tensor(x[start : start + batch_size], device), return_taps=True)
            for tap in model.tap_names:
                parts[tap].append(taps[tap].float().cpu().numpy())
    finally:
        model.train(was_training)
    return {tap: np.concatenate(v) for tap, v in parts.items()}


# ----------------------------------------------------------------------------------------------
# Unit counts
# ----------------------------------------------------------------------------------------------


def unit_counts(
    units: float,
    prunability_value: float,
    compressibility_value: float,
    n_pcs: float,
    rule: str = "product",
) -> dict:
    """Prunable / non-prunable / redundant / non-redundant units of a layer (see module doc)."""
    if rule not in REDUNDANCY_RULES:
        raise ValueError(f"unknown redundancy rule {rule!r}; choose one of {REDUNDANCY_RULES}")
    prunable = prunability_value * units
    non_prunable = units - prunable
    if rule == "product":
        redundant = compressibility_value * non_prunable
    else:
        redundant = non_prunable - min(float(n_pcs), non_prunable)
    return {
        "prunable": prunable,
        "non_prunable": non_prunable,
        "redundant": redundant,
        "non_redundant": non_prunable - redundant,
    }


def _flags(*parts: str) -> str:
    return ";".join(p for p in parts if p and p != "crosses")


def per_model_table(
    curves: pd.DataFrame,
    redundancy: pd.DataFrame,
    threshold: float = DEFAULT_THRESHOLD,
    rule: str = "product",
    columns: Mapping[str, object] | None = None,
) -> pd.DataFrame:
    """One row per tap (per-layer ablation curve) and one ``layer == "all"`` row (all-layer curve).

    Columns: the model ``columns`` (e.g. ``ModelSpec.columns()``), ``layer``, ``layer_index``
    (−1 for ``all``), ``scope`` (``layer``/``network``), ``units``, ``prunability``,
    ``prunability_sd``, ``prunable``, ``non_prunable``, ``compressibility``, ``n_pcs``,
    ``redundant``, ``non_redundant``, ``mean_abs_corr_count``, ``dead_units``, ``threshold``,
    ``redundancy_rule``, ``flags`` (``never_crosses``, ``starts_below``, ``no_variance``,
    ``dead_units``; ``;``-joined, empty when none).
    """
    prune = prunability_table(curves, threshold).set_index("scope")
    red = redundancy.set_index("layer")
    rows = []
    for tap, r in red.iterrows():
        if tap not in prune.index:
            raise ValueError(f"no per-layer ablation curve for tap {tap!r}")
        p = prune.loc[tap]
        if int(p["units"]) != int(r["units"]):
            raise ValueError(f"tap {tap!r}: {p['units']} units ablated but {r['units']} in PCA")
        counts = unit_counts(r["units"], p["prunability"], r["compressibility"], r["n_pcs"], rule)
        rows.append(
            {
                "layer": tap,
                "layer_index": int(r["layer_index"]),
                "scope": "layer",
                "units": int(r["units"]),
                "prunability": p["prunability"],
                "prunability_sd": p["prunability_sd"],
                **counts,
                "compressibility": r["compressibility"],
                "n_pcs": int(r["n_pcs"]),
                "mean_abs_corr_count": r["mean_abs_corr_count"],
                "dead_units": int(r["dead_units"]),
                "flags": _flags(
                    p["prunability_flag"],
                    "no_variance" if r["n_pcs"] == 0 else "",
                    "dead_units" if r["dead_units"] else "",
                ),
            }
        )
    p = prune.loc[ALL]
    units = red["units"].astype(float)
    per_tap = [
        unit_counts(u, p["prunability"], c, k, rule)
        for u, c, k in zip(units, red["compressibility"], red["n_pcs"], strict=True)
    ]
    total = float(units.sum())
    network = {
        "layer": ALL,
        "layer_index": -1,
        "scope": "network",
        "units": int(total),
        "prunability": p["prunability"],
        "prunability_sd": p["prunability_sd"],
        **{q: float(sum(c[q] for c in per_tap)) for q in per_tap[0]},
        "compressibility": float((red["compressibility"] * units).sum() / total),
        "n_pcs": int(red["n_pcs"].sum()),
        "mean_abs_corr_count": float((red["mean_abs_corr_count"] * units).sum() / total),
        "dead_units": int(red["dead_units"].sum()),
        "flags": _flags(p["prunability_flag"], "dead_units" if red["dead_units"].any() else ""),
    }
    table = pd.DataFrame([*rows, network])
    table["threshold"] = threshold
    table["redundancy_rule"] = rule
    if columns:
        for i, (name, value) in enumerate(columns.items()):
            table.insert(i, name, [value] * len(table))
    return table


# ----------------------------------------------------------------------------------------------
# One model (the per-model job)
# ----------------------------------------------------------------------------------------------

# Defaults of the per-model analysis; the config keys of the same names (analyses.units) override.
MODEL_SETTINGS = {
    "fractions": 7,
    "orders": 3,
    "threshold": DEFAULT_THRESHOLD,
    "energy": DEFAULT_ENERGY,
    "corr_threshold": DEFAULT_CORR_THRESHOLD,
    "max_rows": DEFAULT_MAX_ROWS,
    "redundancy_rule": "product",
    "batch_size": None,
    "seed": 0,
}
# batch_size None: as many rows per forward pass as keep the largest tap's activations within
# this many bytes (CPU: cache-sized; 2048 rows of a 512-unit layer ran in half the time of 32768
# on the digits MLPs), at most AUTO_BATCH_MAX_ROWS
AUTO_BATCH_BYTES = {"cpu": 4 << 20, "cuda": 1 << 30}
AUTO_BATCH_MAX_ROWS = 1 << 16


@_no_grad
def auto_batch_size(model: torch.nn.Module, x, batch_size: int | None = None) -> int:
    """``batch_size``, or when None the rows per pass that keep the largest tap of one example
    times the rows within :data:`AUTO_BATCH_BYTES` of the model's device type (float32), between
    1 and :data:`AUTO_BATCH_MAX_ROWS`."""
    if batch_size is not None:
        return int(batch_size)
    device = model_device(model)
    _, taps = model(_as_tensor(x[:1], device), return_taps=True)
    largest = max(int(tap[0].numel()) for tap in taps.values()) * 4
    budget = AUTO_BATCH_BYTES.get(device.type, AUTO_BATCH_BYTES["cpu"])
    return int(min(AUTO_BATCH_MAX_ROWS, max(1, budget // largest)))


def fraction_grid(fractions: int | Sequence[float]) -> list[float]:
    """Ablation fractions: an integer ``n`` is ``linspace(0, 1, n)``, a list is used sorted."""
    if isinstance(fractions, bool):
        raise ValueError(f"ablation fractions: a count or a list, got {fractions!r}")
    if isinstance(fractions, int | np.integer):
        if fractions < 2:
            raise ValueError(f"need at least 2 ablation fractions, got {fractions}")
        return [float(f) for f in np.linspace(0.0, 1.0, int(fractions))]
    values = sorted({float(f) for f in fractions})
    if len(values) < 2 or values[0] < 0.0 or values[-1] > 1.0:
        raise ValueError(f"ablation fractions: at least 2 distinct values in [0, 1], got {values}")
    return values


def model_seed(base: int, seed: int) -> int:
    """The seed of one model's ablation orders and row subsampling, from the stage's ``seed`` and
    the model's training seed (models of different seeds get independent orders)."""
    return int(np.random.SeedSequence([int(base), int(seed)]).generate_state(1)[0])


@_no_grad
def unit_sample_sets(
    model: torch.nn.Module,
    x,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
    batch_size: int = 1024,
) -> dict[str, np.ndarray]:
    """Per tap, the intact model's activations on ``x`` as a float32 (samples × units) matrix.

    Dense taps: one row per example. Conv maps (``n × C × H × W``): every spatial position is a
    sample, but only ``ceil(max_rows / n)`` positions per example are kept (drawn without
    replacement with a CPU generator seeded by ``seed``, so the draw does not depend on the
    device), which keeps about ``max_rows`` rows without ever holding every position of the test
    set; :func:`unit_samples` then subsamples to ``max_rows`` exactly.
    """
    import torch

    was_training = model.training
    model.eval()
    device = model_device(model)
    per_example = max(1, math.ceil(max_rows / max(len(x), 1)))
    generator = torch.Generator().manual_seed(int(seed))
    parts: dict[str, list] = {tap: [] for tap in model.tap_names}
    try:
        for start in range(0, len(x), batch_size):
            _, taps = model(_as_tensor(x[start : start + batch_size], device), return_taps=True)
            for tap in model.tap_names:
                h = taps[tap].float()
                if h.dim() > 2:
                    flat = h.flatten(2)  # b × C × positions
                    b, c, p = flat.shape
                    if per_example < p:
                        pick = torch.rand(b, p, generator=generator).argsort(dim=1)
                        pick = pick[:, :per_example].to(flat.device)
                        flat = torch.gather(flat, 2, pick.unsqueeze(1).expand(b, c, per_example))
                    h = flat.transpose(1, 2).reshape(-1, c)
                parts[tap].append(h.cpu().numpy())
    finally:
        model.train(was_training)
    return {tap: np.concatenate(v) for tap, v in parts.items()}


def analyse_model(
    model: torch.nn.Module,
    x,
    y=None,
    settings: Mapping | None = None,
    columns: Mapping[str, object] | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prunability and redundancy of one model on ``x`` (the test split): ``(units table,
    ablation curves)``, both led by ``columns`` (``ModelSpec.columns()``).

    ``settings`` overrides :data:`MODEL_SETTINGS` (``batch_size`` None: :func:`auto_batch_size`);
    ``seed`` draws the ablation orders and the
    PCA row subsample (see :func:`model_seed`). The model runs where it is (move it to the GPU
    first to use one). With labels ``y`` the intact model's accuracy on ``x`` is kept as
    ``intact_accuracy``; ``examples`` is the number of examples the agreement is measured on.
    """
    s = {**MODEL_SETTINGS, **(settings or {})}
    unknown = sorted(set(s) - set(MODEL_SETTINGS))
    if unknown:
        raise ValueError(f"unknown units settings {unknown}; known: {sorted(MODEL_SETTINGS)}")
    if len(x) < 2:
        raise ValueError(f"the units analysis needs at least 2 examples, got {len(x)}")
    batch_size = auto_batch_size(model, x, s["batch_size"])
    curves = ablation_curves(
        model, x, fraction_grid(s["fractions"]), s["orders"], seed, batch_size, True
    )
    samples = unit_sample_sets(model, x, s["max_rows"], seed, batch_size)
    redundancy = redundancy_table(samples, s["energy"], s["corr_threshold"], s["max_rows"], seed)
    table = per_model_table(curves, redundancy, s["threshold"], s["redundancy_rule"], columns)
    table["examples"] = len(x)
    table["pca_rows"] = [*redundancy["pca_rows"].astype(int), int(redundancy["pca_rows"].sum())]
    if y is not None:
        predicted = predict(model, x, batch_size).cpu().numpy()
        table["intact_accuracy"] = float((predicted == np.asarray(y)).mean())
    if columns:
        for i, (name, value) in enumerate(columns.items()):
            curves.insert(i, name, [value] * len(curves))
    return table, curves


# ----------------------------------------------------------------------------------------------
# Across the grid
# ----------------------------------------------------------------------------------------------


def model_columns() -> list[str]:
    """The model columns every per-model table leads with (``ModelSpec.columns()`` keys), so that
    axes added to the grid flow through the summary without being listed here."""
    from widthlab.grid import DataSpec, ModelSpec

    return list(ModelSpec(DataSpec("digits"), "mlp", 1, 1).columns())


def series_axes() -> list[str]:
    """Model axes that define a width series: every model column except model, width and seed."""
    return [c for c in model_columns() if c not in ("model", "width", "seed")]


def _check_model_columns(table: pd.DataFrame, what: str) -> None:
    missing = [c for c in model_columns() if c not in table]
    if missing:
        raise ValueError(f"{what} lacks the model columns {missing}")


def growth_statistic(widths: Sequence[float], counts: Sequence[float]) -> float:
    """Mean ratio ``count(2W) / count(W)`` over the successive doublings of a ×2 width series.

    Raises ``ValueError`` unless the sorted widths form a ×2 series of at least two widths.
    Doublings whose smaller-width count is 0 are skipped; NaN if none is left.
    """
    w = np.asarray(widths, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    if w.shape != c.shape or w.ndim != 1:
        raise ValueError("widths and counts must be 1-d and of the same length")
    if len(w) < 2:
        raise ValueError(f"the growth statistic needs at least two widths, got {w.tolist()}")
    order = np.argsort(w)
    w, c = w[order], c[order]
    if not np.allclose(w[1:], 2.0 * w[:-1]):
        raise ValueError(f"widths must form a ×2 series (W, 2W, 4W, …), got {w.tolist()}")
    valid = c[:-1] > 0
    if not valid.any():
        return float("nan")
    return float(np.mean(c[1:][valid] / c[:-1][valid]))


def summary_table(
    per_model_tables: Sequence[pd.DataFrame],
    specs: Sequence | None = None,
    quantities: Sequence[str] = COUNT_QUANTITIES,
) -> pd.DataFrame:
    """Long table of unit counts across the grid.

    One row per (model, layer, quantity): the model columns, ``layer``, ``quantity``, ``count``,
    ``fraction`` (count / units) and ``normalised`` (count / the same count of the widest model of
    its series: same :func:`series_axes`, same seed, same layer). ``specs`` (``ModelSpec``s
    aligned with the tables) supply the model columns when the tables do not carry them.
    """
    frames = []
    for i, table in enumerate(per_model_tables):
        table = table.copy()
        if specs is not None:
            for name, value in specs[i].columns().items():
                table[name] = value
        _check_model_columns(table, f"per-model table {i}")
        frames.append(table)
    if not frames:
        raise ValueError("no per-model tables to summarise")
    wide = pd.concat(frames, ignore_index=True)
    columns = model_columns()
    wide["layer_units"] = wide["units"]
    keep = [*columns, "layer", "layer_index", "layer_units", "prunability"]
    long = wide.melt(
        id_vars=keep, value_vars=list(quantities), var_name="quantity", value_name="count"
    )
    long = long.rename(columns={"layer_units": "units"})
    long["count"] = long["count"].astype(float)
    long["fraction"] = long["count"] / long["units"]
    series = [*series_axes(), "seed", "layer", "quantity"]
    widest = long.loc[long.groupby(series, dropna=False)["width"].idxmax(), [*series, "count"]]
    widest = widest.rename(columns={"count": "widest_count"})
    long = long.merge(widest, on=series, how="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        long["normalised"] = np.where(
            long["widest_count"] > 0, long["count"] / long["widest_count"], np.nan
        )
    return long.drop(columns="widest_count")


def seed_growth(summary: pd.DataFrame, layer: str | None = ALL) -> pd.DataFrame:
    """g of every (series, seed, layer, quantity) width series; ``layer=None`` for every layer.

    Columns: the :func:`series_axes`, ``seed``, ``layer``, ``quantity``, ``widths``, ``g``,
    ``flag`` (why g is NaN: not a ×2 series, or only zero counts).
    """
    sub = summary if layer is None else summary[summary["layer"] == layer]
    keys = [*series_axes(), "seed", "layer", "quantity"]
    rows = []
    for key, grp in sub.groupby(keys, dropna=False, sort=True):
        try:
            g, flag = growth_statistic(grp["width"], grp["count"]), ""
        except ValueError as err:
            g, flag = float("nan"), str(err)
        if not flag and not np.isfinite(g):
            flag = "zero counts in a series"
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "widths": ",".join(str(int(w)) for w in sorted(grp["width"].unique())),
                "g": g,
                "flag": flag,
            }
        )
    return pd.DataFrame(rows, columns=[*keys, "widths", "g", "flag"])


def growth_table(
    summary: pd.DataFrame, layer: str | None = ALL, level: float = 0.95
) -> pd.DataFrame:
    """g per (series, layer, quantity): the mean over seeds of the per-seed g with a ``level``
    t-interval, and g of the seed-averaged counts (``g_of_mean``). ``layer=None`` for every layer.
    Series that are not a ×2 width series of ≥ 2 widths get NaN and a flag."""
    from widthlab.headline import t_interval

    per_seed = seed_growth(summary, layer)
    sub = summary if layer is None else summary[summary["layer"] == layer]
    keys = [*series_axes(), "layer", "quantity"]
    rows = []
    for key, grp in per_seed.groupby(keys, dropna=False, sort=True):
        values = grp["g"].to_numpy(dtype=np.float64)
        finite = values[np.isfinite(values)]
        mask = np.ones(len(sub), dtype=bool)
        for name, value in zip(keys, key, strict=True):
            column = sub[name]
            mask &= column.isna().to_numpy() if pd.isna(value) else (column == value).to_numpy()
        mean_counts = sub[mask].groupby("width")["count"].mean()
        try:
            g_of_mean = growth_statistic(mean_counts.index, mean_counts.to_numpy())
        except ValueError:
            g_of_mean = float("nan")
        low, high = t_interval(values, level)
        flags = sorted({f for f in grp["flag"] if f})
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "widths": ",".join(sorted(set(grp["widths"]), key=len)),
                "n_seeds": int(grp["seed"].nunique()),
                "g": float(finite.mean()) if len(finite) else float("nan"),
                "g_sd": float(finite.std(ddof=1)) if len(finite) > 1 else float("nan"),
                "g_ci_low": low,
                "g_ci_high": high,
                "g_of_mean": g_of_mean,
                "faster_than_width": bool(len(finite) and finite.mean() > 2.0),
                "flag": "; ".join(flags),
            }
        )
    return pd.DataFrame(rows)


def network_rows(layers: pd.DataFrame) -> pd.DataFrame:
    """The ``layer == "all"`` rows of stacked per-model tables, with the fractions of units that
    are prunable, redundant and non-redundant, and the prunable share of the frivolous units
    ``prunable / (prunable + redundant)`` (NaN when a model has none)."""
    net = layers[layers["layer"] == ALL].copy()
    net["prunable_fraction"] = net["prunable"] / net["units"]
    net["redundant_fraction"] = net["redundant"] / net["units"]
    net["non_redundant_fraction"] = net["non_redundant"] / net["units"]
    frivolous = net["prunable"] + net["redundant"]
    net["prunable_share"] = (net["prunable"] / frivolous.where(frivolous > 0)).astype(float)
    return net


def prunability_slopes(layers: pd.DataFrame) -> pd.DataFrame:
    """Per (series, seed): the least-squares slope of the network prunability on ``log2(width)``
    (change of the prunable fraction per width doubling), with the prunability at the narrowest
    and widest width. Series with fewer than two widths get NaN."""
    net = network_rows(layers)
    keys = [*series_axes(), "seed"]
    rows = []
    for key, grp in net.groupby(keys, dropna=False, sort=True):
        grp = grp.sort_values("width")
        lw = np.log2(grp["width"].to_numpy(dtype=np.float64))
        p = grp["prunability"].to_numpy(dtype=np.float64)
        slope = float(np.polyfit(lw, p, 1)[0]) if len(np.unique(lw)) > 1 else float("nan")
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "widths": len(grp),
                "narrowest": int(grp["width"].iloc[0]),
                "widest": int(grp["width"].iloc[-1]),
                "prunability_narrowest": float(p[0]),
                "prunability_widest": float(p[-1]),
                "slope": slope,
            }
        )
    return pd.DataFrame(rows)


EFFECT_MEASURES = ("prunable_fraction", "redundant_fraction", "prunable_share")
EFFECT_COLUMNS = [
    "axis", "baseline", "level", "measure", "pairs", "baseline_mean", "level_mean", "diffs"
]  # fmt: skip
# series axes compared level by level at matched width and seed (training factors, and the
# dataset variant: random labels); arch, depth and bottleneck are the architecture
NOT_FACTORS = ("arch", "depth", "bottleneck")


def factor_axes() -> list[str]:
    return [c for c in series_axes() if c not in NOT_FACTORS]


def factor_effects(layers: pd.DataFrame, axis: str) -> pd.DataFrame:
    """How one training factor shifts the split between prunable and redundant units.

    Every level of ``axis`` is compared with its lowest level (``baseline``; a missing value such
    as no ``variant`` or ``train_size`` all comes first) on pairs of models
    that agree on every other model column (width and seed included). One row per (level,
    measure) of :data:`EFFECT_MEASURES`: ``pairs``, ``baseline_mean``, ``level_mean`` and
    ``diffs`` (the per-pair differences level − baseline, as a list). Empty when the axis has one
    level.
    """
    net = network_rows(layers)
    columns = EFFECT_COLUMNS
    missing = net[axis].isna()
    levels = ([None] if missing.any() else []) + sorted(net.loc[~missing, axis].unique())
    if len(levels) < 2:
        return pd.DataFrame(columns=columns)
    keys = [c for c in model_columns() if c not in ("model", axis)]

    def at(level_value) -> pd.DataFrame:
        rows = missing if level_value is None else net[axis] == level_value
        return net[rows][[*keys, *EFFECT_MEASURES]]

    base = at(levels[0])
    rows = []
    for level_value in levels[1:]:
        other = at(level_value)
        pairs = other.merge(base, on=keys, suffixes=("", "_base"))
        for measure in EFFECT_MEASURES:
            diffs = (pairs[measure] - pairs[f"{measure}_base"]).to_numpy(dtype=np.float64)
            rows.append(
                {
                    "axis": axis,
                    "baseline": levels[0],
                    "level": level_value,
                    "measure": measure,
                    "pairs": len(pairs),
                    "baseline_mean": float(pairs[f"{measure}_base"].mean()),
                    "level_mean": float(pairs[measure].mean()),
                    "diffs": diffs.tolist(),
                }
            )
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------------------------
# Headline
# ----------------------------------------------------------------------------------------------

PAPER = "Casper et al. 2021"


def _fmt_ci(row: dict) -> str:
    if np.isfinite(row["ci_low"]):
        return f"{row['value']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
    return f"{row['value']:.2f} (no CI)"


def _axis_text(axis: str, value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "train size all" if axis == "train_size" else f"no {axis.replace('_', ' ')}"
    return f"{axis.replace('_', ' ')} {value:g}" if isinstance(value, float) else f"{axis} {value}"


GROWTH_CLAIMS = (
    (
        "prunable",
        1,
        "Prunable units proliferate with width: their number grows faster than the width (g > 2).",
    ),
    (
        "redundant",
        1,
        "Redundant units proliferate with width: their number grows faster than the width (g > 2).",
    ),
    (
        "non_redundant",
        -1,
        "Wider networks are not really that wide: the non-frivolous (non-redundant) units grow "
        "slower than the width (g < 2).",
    ),
)


def headline(layers: pd.DataFrame, summary: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """The stage's headline table (:mod:`widthlab.headline`): one row per claim of Casper et al.

    1. the prunable fraction rises with width: slope of prunability per width doubling > 0;
    2.–4. growth statistics of prunable (> 2), redundant (> 2) and non-redundant (< 2) units of
       the whole network;
    5. per training factor (weight decay always; any other factor axis the grid varies): the
       factor shifts the prunable share of frivolous units (two-sided, per matched pair).

    Values are per (series, seed) (per matched pair for 5.), ``holds`` follows :func:`verdict`.
    """
    from widthlab.headline import headline_row, headline_table, verdict

    estimator = f"mean over (series, seed), {level:.0%} t-interval"
    rows = []
    slopes = prunability_slopes(layers)
    values = slopes["slope"].to_numpy(dtype=np.float64)
    row = headline_row(
        PAPER,
        "The fraction of prunable units rises with width.",
        "slope of the prunable fraction (all hidden layers ablated) per width doubling",
        f"least-squares slope on log2 width; {estimator}",
        values,
        verdict(values, 0.0, 1, level),
        "",
        level,
    )
    row["detail"] = (
        f"prunable fraction {slopes['prunability_narrowest'].mean():.2f} at the narrowest width "
        f"(W={slopes['narrowest'].min()}) → {slopes['prunability_widest'].mean():.2f} at the "
        f"widest (W={slopes['widest'].max()}), slope {_fmt_ci(row)} per doubling over "
        f"{row['n']} (series, seed)."
    )
    rows.append(row)
    growth = seed_growth(summary, ALL)
    for quantity, direction, claim in GROWTH_CLAIMS:
        values = growth.loc[growth["quantity"] == quantity, "g"].to_numpy(dtype=np.float64)
        row = headline_row(
            PAPER,
            claim,
            f"growth statistic g of {quantity.replace('_', '-')} units (whole network)",
            f"mean ratio between width doublings; {estimator}",
            values,
            verdict(values, 2.0, direction, level),
            "",
            level,
        )
        row["detail"] = (
            f"g = {_fmt_ci(row)} over {row['n']} (series, seed) (2 = grows like the width)."
            if row["n"]
            else "no width series with a ×2 doubling and non-zero counts."
        )
        rows.append(row)
    factors = [
        a for a in factor_axes() if a == "weight_decay" or layers[a].nunique(dropna=False) > 1
    ]
    for axis in factors:
        effects = factor_effects(layers, axis)
        claim = (
            f"Training factors shift the split between prunable and redundant units "
            f"({axis.replace('_', ' ')})."
        )
        quantity = (
            "change of the prunable share of frivolous units, prunable / (prunable + redundant)"
        )
        how = f"difference per pair matched on every other model column, {level:.0%} t-interval"
        if effects.empty:
            rows.append(
                headline_row(
                    PAPER,
                    claim,
                    quantity,
                    how,
                    [],
                    "n/a",
                    f"the grid has a single {axis.replace('_', ' ')} level.",
                    level,
                )  # fmt: skip
            )
            continue
        for level_value, sub in effects.groupby("level", sort=True):
            by = sub.set_index("measure")
            share = by.loc["prunable_share"]
            row = headline_row(
                PAPER,
                claim,
                f"{quantity}: {_axis_text(axis, level_value)} vs "
                f"{_axis_text(axis, share['baseline'])}",
                how,
                share["diffs"],
                verdict(share["diffs"], 0.0, 0, level),
                "",
                level,
            )
            parts = [
                f"{m.replace('_', ' ')} {by.loc[m, 'baseline_mean']:.2f} → "
                f"{by.loc[m, 'level_mean']:.2f}"
                for m in EFFECT_MEASURES
            ]
            row["detail"] = (
                f"{_axis_text(axis, share['baseline'])} → {_axis_text(axis, level_value)} over "
                f"{int(share['pairs'])} matched pairs: {', '.join(parts)} (change {_fmt_ci(row)})."
            )
            rows.append(row)
    return headline_table(rows)


def summarise(
    layer_tables: Sequence[pd.DataFrame],
    curve_tables: Sequence[pd.DataFrame],
    level: float = 0.95,
) -> dict[str, pd.DataFrame]:
    """Every table of the summary rule from the per-model tables: ``layers`` and ``curves``
    (stacked), ``summary`` (:func:`summary_table`), ``growth`` (:func:`growth_table`, every
    layer), ``slopes``, ``effects`` (every factor axis with more than one level, diffs
    summarised by mean and interval) and ``headline``."""
    from widthlab.headline import t_interval

    for i, table in enumerate(curve_tables):
        _check_model_columns(table, f"ablation-curve table {i}")
    layers = pd.concat(list(layer_tables), ignore_index=True)
    curves = pd.concat(list(curve_tables), ignore_index=True)
    summary = summary_table(layer_tables)
    effects = [factor_effects(layers, axis) for axis in factor_axes()]
    effects = [e for e in effects if not e.empty]
    effects = (
        pd.concat(effects, ignore_index=True) if effects else pd.DataFrame(columns=EFFECT_COLUMNS)
    )
    intervals = [t_interval(d, level) for d in effects["diffs"]]
    effects["change"] = [float(np.mean(d)) if len(d) else float("nan") for d in effects["diffs"]]
    effects["ci_low"] = [lo for lo, _ in intervals]
    effects["ci_high"] = [hi for _, hi in intervals]
    for column in ("baseline", "level"):
        effects[column] = effects[column].astype(str)
    return {
        "layers": layers,
        "curves": curves,
        "summary": summary,
        "growth": growth_table(summary, None, level),
        "slopes": prunability_slopes(layers),
        "effects": effects.drop(columns="diffs"),
        "headline": headline(layers, summary, level),
    }
