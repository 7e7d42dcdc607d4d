"""Zero-ablation of hidden units: nested random orders, agreement curves with the intact model,
and prunability read off a curve (see :mod:`widthlab.units` for the method)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # torch is imported where it is used, so tables and figures never load it
    import torch

from widthlab.units.settings import ALL, DEFAULT_THRESHOLD

DEFAULT_FRACTIONS = tuple(float(f) for f in np.linspace(0.0, 1.0, 7))

Orders = int | Sequence[Mapping[str, Sequence[int]]]


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
