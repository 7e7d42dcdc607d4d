"""Exact infinite-width kernels of ReLU MLPs in NTK parameterisation and kernel gradient descent.

``h = σ_w W a / √fan_in + σ_b b`` with all entries N(0, 1): the NNGP ``K`` and NTK ``Θ`` by the
arc-cosine recursion (:func:`nngp_ntk`); the stability limit ``2N/λ_max(Θ)`` of GD on the loss
``1/(2N) Σ_i ‖f(x_i) − y_i‖²`` (:func:`stability_limit`); kernel gradient descent / gradient
flow for that loss in closed form through the eigendecomposition of ``Θ(X, X)``
(:class:`KernelDynamics`, :func:`kernel_dynamics`); and the representation measures the study
reports (:func:`target_alignment`, :func:`relative_change`). Kernels are float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from widthlab.cka import gram_cka

KERNEL_DTYPE = torch.float64
# the NTK baselines are closed forms: their steps to a threshold are found up to this many times
# the simulated steps, so a speed-up is defined even when the lazy limit is far too slow
CLOSED_FORM_HORIZON = 1000


# --------------------------------------------------------------------------------------------
# Analytic NNGP / NTK of a ReLU MLP (arc-cosine recursion)
# --------------------------------------------------------------------------------------------


def _as_kernel_tensor(x) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=KERNEL_DTYPE)
    return x.reshape(x.shape[0], -1)


def _relu_moments(cross, var1, var2, same):
    """E[φ(u)φ(v)] and E[φ'(u)φ'(v)] for (u, v) ~ N(0, [[var1, cross], [cross, var2]]), φ = ReLU.

    ``same`` marks entries that are the same input on both sides: θ = 0 there exactly (arccos of
    a rounded 1 would leave θ ≈ 1e-8).
    """
    norm = torch.sqrt(var1[:, None] * var2[None, :]).clamp_min(torch.finfo(KERNEL_DTYPE).tiny)
    cos = (cross / norm).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)
    if same is not None:
        theta = torch.where(same, torch.zeros_like(theta), theta)
        cos = torch.where(same, torch.ones_like(cos), cos)
    e_phi = norm / (2 * math.pi) * (torch.sin(theta) + (math.pi - theta) * cos)
    e_dphi = (math.pi - theta) / (2 * math.pi)
    return e_phi, e_dphi


def nngp_ntk(
    x1,
    x2=None,
    depth: int = 2,
    sigma_w2: float = 2.0,
    sigma_b2: float = 0.0,
    return_layers: bool = False,
    linear_layers: Sequence[int] = (),
):
    """NNGP ``K`` and NTK ``Θ`` (per output unit) of an infinitely wide ReLU MLP.

    ``depth`` hidden layers, NTK parameterisation with weight variance ``sigma_w2`` and bias
    variance ``sigma_b2``; inputs are flattened. ``x2=None`` means ``x2 = x1`` (a symmetric Gram
    whose diagonal has θ = 0 exactly). With ``return_layers`` also the list of pre-activation NNGP
    kernels ``[K¹, …, K^{depth+1}]`` (``K^{l+1}`` belongs to hidden layer ``l``, 0-based; the
    last one is the output's, equal to ``K``). Hidden layers listed in ``linear_layers`` (0-based)
    have no activation (E[uv] and E[1·1] replace the ReLU moments).
    """
    if depth < 0:
        raise ValueError(f"depth must be ≥ 0, got {depth}")
    a = _as_kernel_tensor(x1)
    symmetric = x2 is None
    b = a if symmetric else _as_kernel_tensor(x2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"input dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    d0 = a.shape[1]
    cross = sigma_w2 * (a @ b.T) / d0 + sigma_b2
    var1 = sigma_w2 * (a * a).sum(1) / d0 + sigma_b2
    var2 = var1 if symmetric else sigma_w2 * (b * b).sum(1) / d0 + sigma_b2
    same = torch.eye(len(a), dtype=torch.bool) if symmetric else None
    if symmetric:
        cross = torch.where(same, var1[:, None].expand_as(cross), cross)
    theta = cross.clone()
    layers = [cross]
    for layer in range(depth):
        if layer in linear_layers:
            e_phi, e_dphi, keep = cross, 1.0, 1.0
        else:
            e_phi, e_dphi = _relu_moments(cross, var1, var2, same)
            keep = 0.5  # the diagonal: θ = 0, E[φ(u)²] = var / 2
        cross_next = sigma_w2 * e_phi + sigma_b2
        theta = cross_next + sigma_w2 * e_dphi * theta
        var1, var2 = (
            sigma_w2 * keep * var1 + sigma_b2,
            var1 if symmetric else sigma_w2 * keep * var2 + sigma_b2,
        )
        if symmetric:
            var2 = var1
        cross = cross_next
        layers.append(cross)
    if return_layers:
        return cross, theta, layers
    return cross, theta


# --------------------------------------------------------------------------------------------
# Kernel gradient descent / gradient flow with MSE
# --------------------------------------------------------------------------------------------


def stability_limit(theta_train) -> float:
    """Largest stable GD step ``2N / λ_max(Θ)`` for the loss ``1/(2N) Σ ‖r_i‖²``."""
    theta_train = torch.as_tensor(theta_train, dtype=KERNEL_DTYPE)
    lam_max = float(torch.linalg.eigvalsh(theta_train)[-1])
    return 2 * theta_train.shape[0] / lam_max


def _check_stable(lam_max: float, n: int, lr: float) -> None:
    limit = 2 * n / lam_max
    if not lr < limit:
        raise ValueError(
            f"learning rate {lr:g} is not below the stability limit 2N/λ_max(Θ) = {limit:g} "
            f"(N={n}, λ_max={lam_max:g}): kernel gradient descent would diverge; "
            f"use lr < {limit:g}"
        )


def _decay_factors(lam, steps, lr, n, flow):
    """F_t = (1 − ηλ/N)^t (GD) or exp(−ηλt/N) (flow), and G_t = (1 − F_t)/λ, shape T × N."""
    a = lr * lam / n  # (N,)
    t = steps[:, None]
    if flow:
        log_f = -a[None, :] * t
        one_minus = -torch.expm1(log_f)
        factor = torch.exp(log_f)
    else:
        factor = torch.pow((1 - a)[None, :], t)
        # 1 − (1 − a)^t without cancellation for small a; for a ≥ 1/2 (stable up to a < 2, where
        # the base turns negative) the direct form has no cancellation to fear
        accurate = -torch.expm1(t * torch.log1p(-a.clamp(max=0.5))[None, :])
        one_minus = torch.where((a < 0.5)[None, :], accurate, 1 - factor)
    tiny = lam.abs() <= 1e-12 * lam.abs().max()
    safe = torch.where(tiny, torch.ones_like(lam), lam)
    g = torch.where(tiny[None, :], lr * t / n * torch.ones_like(one_minus), one_minus / safe)
    return factor, g


def _targets(y, num_classes=None):
    """(float targets N × C, labels or None): int labels become one-hot."""
    y = torch.as_tensor(y)
    if y.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8) and y.ndim == 1:
        c = int(num_classes or int(y.max()) + 1)
        return torch.nn.functional.one_hot(y.long(), c).to(KERNEL_DTYPE), y.long()
    y = y.to(KERNEL_DTYPE)
    return (y[:, None] if y.ndim == 1 else y), None


def _accuracy(pred, labels):
    if labels is None:
        return torch.full(pred.shape[:-2], float("nan"), dtype=KERNEL_DTYPE)
    return (pred.argmax(-1) == labels).to(KERNEL_DTYPE).mean(-1)


@dataclass
class KernelDynamics:
    """Closed-form kernel GD / flow for fixed ``Θ(X, X)``; evaluate at any step set."""

    theta_train: torch.Tensor
    y_train: torch.Tensor  # N × C float targets
    lr: float
    flow: bool = False
    f0_train: torch.Tensor | None = None

    def __post_init__(self):
        self.theta_train = torch.as_tensor(self.theta_train, dtype=KERNEL_DTYPE)
        self.n = self.theta_train.shape[0]
        lam, vec = torch.linalg.eigh(self.theta_train)
        self.lam = lam.clamp_min(0.0)
        self.vec = vec
        if not self.flow:
            _check_stable(float(self.lam[-1]), self.n, self.lr)
        f0 = torch.zeros_like(self.y_train) if self.f0_train is None else self.f0_train
        self.f0_train = torch.as_tensor(f0, dtype=KERNEL_DTYPE)
        self.coef = vec.T @ (self.y_train - self.f0_train)  # N × C
        self.coef_sq = (self.coef**2).sum(1)

    def _steps(self, steps):
        return torch.as_tensor(np.asarray(steps, dtype=np.float64), dtype=KERNEL_DTYPE)

    def train_loss(self, steps) -> torch.Tensor:
        factor, _ = _decay_factors(self.lam, self._steps(steps), self.lr, self.n, self.flow)
        return (factor**2 * self.coef_sq[None, :]).sum(1) / (2 * self.n)

    def train_residual(self, steps) -> torch.Tensor:
        """r_t = f_t(X) − y, shape T × N × C (note the sign: prediction minus target)."""
        factor, _ = _decay_factors(self.lam, self._steps(steps), self.lr, self.n, self.flow)
        return -torch.einsum("nj,tj,jc->tnc", self.vec, factor, self.coef)

    def predict(self, theta_test_train, steps, f0_test=None) -> torch.Tensor:
        """f_t(x*) = f_0(x*) + Θ(x*, X) Θ⁻¹ (I − (I − ηΘ/N)^t)(y − f_0(X)), shape T × M × C."""
        theta_test_train = torch.as_tensor(theta_test_train, dtype=KERNEL_DTYPE)
        _, g = _decay_factors(self.lam, self._steps(steps), self.lr, self.n, self.flow)
        proj = theta_test_train @ self.vec  # M × N
        pred = torch.einsum("mj,tj,jc->tmc", proj, g, self.coef)
        if f0_test is not None:
            pred = pred + torch.as_tensor(f0_test, dtype=KERNEL_DTYPE)[None]
        return pred

    def steps_to_threshold(self, threshold: float, max_steps: int) -> float:
        """First integer step with train loss ≤ threshold (loss is monotone); NaN if > max_steps."""
        return first_step_below(lambda t: float(self.train_loss([t])[0]), threshold, max_steps)


def first_step_below(loss_at, threshold: float, max_steps: int) -> float:
    """First integer step t ≤ ``max_steps`` with ``loss_at(t) ≤ threshold`` for a loss that does
    not increase with t (bisection); NaN if there is none."""
    if loss_at(0) <= threshold:
        return 0.0
    if loss_at(int(max_steps)) > threshold:
        return float("nan")
    lo, hi = 0, int(max_steps)  # loss(lo) > threshold ≥ loss(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if loss_at(mid) <= threshold:
            hi = mid
        else:
            lo = mid
    return float(hi)


def kernel_dynamics(
    thetas, ys, lr: float, steps, flow: bool = False, f0=(None, None), num_classes=None
) -> pd.DataFrame:
    """Train / test loss and accuracy of kernel GD (or flow) at the given steps.

    ``thetas = (Θ(X, X), Θ(X*, X))``, ``ys = (y_train, y_test)``: int labels (one-hot targets,
    argmax accuracy) or float targets (accuracy NaN). Loss is ``1/(2N) Σ ‖f − y‖²`` on both
    splits. ``f0 = (f_0(X), f_0(X*))`` is the function at t = 0 (None: the mean prediction, 0).
    Columns: step, split, loss, accuracy.
    """
    (theta_train, theta_test_train), (y_train, y_test), (f0_train, f0_test) = thetas, ys, f0
    if num_classes is None and torch.as_tensor(y_train).ndim == 1:
        labels_all = torch.cat([torch.as_tensor(y_train), torch.as_tensor(y_test)])
        if not torch.is_floating_point(labels_all):
            num_classes = int(labels_all.max()) + 1
    ytr, ltr = _targets(y_train, num_classes)
    yte, lte = _targets(y_test, num_classes)
    dyn = KernelDynamics(theta_train, ytr, lr, flow=flow, f0_train=f0_train)
    steps = np.asarray(steps)
    residual = dyn.train_residual(steps)
    train_pred = ytr[None] + residual
    test_pred = dyn.predict(theta_test_train, steps, f0_test)
    rows = []
    for split, pred, y, labels in (
        ("train", train_pred, ytr, ltr),
        ("test", test_pred, yte, lte),
    ):
        loss = ((pred - y[None]) ** 2).sum(-1).mean(-1) / 2
        acc = _accuracy(pred, labels)
        rows.append(
            pd.DataFrame(
                {"step": steps, "split": split, "loss": loss.numpy(), "accuracy": acc.numpy()}
            )
        )
    return pd.concat(rows, ignore_index=True)


def gp_sample(kernel, num_outputs: int, seed: int, jitter: float = 1e-10) -> torch.Tensor:
    """``num_outputs`` independent draws of a zero-mean GP with this Gram (columns)."""
    kernel = torch.as_tensor(kernel, dtype=KERNEL_DTYPE)
    scale = float(kernel.diagonal().mean())
    chol = torch.linalg.cholesky(
        kernel + jitter * scale * torch.eye(len(kernel), dtype=KERNEL_DTYPE)
    )
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(len(kernel), num_outputs, generator=gen, dtype=KERNEL_DTYPE)
    return chol @ noise


def log_steps(max_steps: int, num: int = 40) -> np.ndarray:
    """0 and ~num log-spaced integer steps up to max_steps (inclusive), unique and sorted."""
    grid = np.unique(np.round(np.logspace(0, np.log10(max(max_steps, 1)), num)).astype(int))
    return np.unique(np.concatenate([[0], grid, [max_steps]]))


def steps_to_threshold(losses: Sequence[float], threshold: float) -> float:
    """First index whose loss is ≤ threshold (losses recorded at every step), else NaN."""
    losses = np.asarray(losses)
    hit = np.flatnonzero(losses <= threshold)
    return float(hit[0]) if hit.size else float("nan")


def target_alignment(gram, y) -> float:
    """Centred alignment of a Gram with the target Gram ``Y Yᵀ`` (int labels → one-hot)."""
    targets, _ = _targets(y)
    return gram_cka(gram, targets @ targets.T)


def relative_change(a, b) -> float:
    """‖b − a‖_F / ‖a‖_F."""
    a = torch.as_tensor(a, dtype=KERNEL_DTYPE)
    b = torch.as_tensor(b, dtype=KERNEL_DTYPE)
    return float(torch.linalg.norm(b - a) / torch.linalg.norm(a))
