"""Infinite width with a bottleneck (Littwin et al. 2021): the NTK limit vs bottleneck networks.

Three views of the same question — does one narrow layer inside an otherwise infinitely wide
network make it learn features, and train faster or slower than the lazy NTK limit?

* **Exact infinite-width baseline.** ReLU MLPs in NTK parameterisation
  (``h = σ_w W a / √fan_in + σ_b b``, all entries N(0, 1)): the NNGP ``K`` and NTK ``Θ`` by the
  arc-cosine recursion (:func:`nngp_ntk`), and kernel gradient descent / gradient flow for the
  loss ``1/(2N) Σ_i ‖f(x_i) − y_i‖²`` in closed form through the eigendecomposition of
  ``Θ(X, X)`` (:func:`kernel_dynamics`).
* **Finite networks** in the same parameterisation (:class:`NTKMLP`): wide hidden layers except
  one layer of ``k`` units (index ``depth // 2``, as the ``bmlp`` arch), trained with plain
  full-batch GD at the same step size; their empirical NTK (:func:`mlp_empirical_ntk`, exact and
  cheap through the layer structure; :func:`jacobian_ntk` the generic Jacobian version).
* **Deep linear theory.** An infinitely wide deep linear net with one width-``d`` bottleneck is
  the two-layer model ``F(x) = A·B·x`` (:func:`reduced_linear`); :func:`simulate_linear_net`
  trains the finite wide net it is the limit of; :func:`scalar_bottleneck_rhs` is the scalar
  closed form.

:func:`run_study` (ReLU on real data) and :func:`run_linear_study` (deep linear on ill-conditioned
synthetic inputs) return tidy tables; the stage script only writes them. Kernels are float64;
everything runs on CPU by default (``device`` moves the finite networks).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from widthlab.bottleneck_jobs import (  # noqa: F401  (the stage's settings, re-exported)
    REGIME_DEFAULTS,
    bottleneck_index,
    hidden_widths,
    job_names,
    job_settings,
    linear_settings,
)
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
    theta_train,
    theta_test_train,
    y_train,
    y_test,
    lr: float,
    steps,
    flow: bool = False,
    f0_train=None,
    f0_test=None,
    num_classes: int | None = None,
) -> pd.DataFrame:
    """Train / test loss and accuracy of kernel GD (or flow) at the given steps.

    ``y`` may be int labels (one-hot targets, argmax accuracy) or float targets (accuracy NaN).
    Loss is ``1/(2N) Σ ‖f − y‖²`` on both splits. ``f0_*`` is the function at t = 0 (None: the
    mean prediction, 0). Columns: step, split, loss, accuracy.
    """
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


# --------------------------------------------------------------------------------------------
# Finite networks in NTK parameterisation
# --------------------------------------------------------------------------------------------


class NTKMLP(nn.Module):
    """ReLU MLP in NTK parameterisation: ``h_l = σ_w W_l a_l / √fan_in + σ_b b_l``, N(0,1) init.

    ``forward(x, return_pre=True)`` also returns the hidden pre-activations (one per hidden
    layer). With ``sigma_b2 = 0`` there are no bias parameters. ``activation=None`` gives a deep
    linear net; hidden layers in ``linear_layers`` have no activation (a linear bottleneck).
    """

    def __init__(
        self,
        d_in: int,
        widths: Sequence[int],
        d_out: int,
        sigma_w2: float = 2.0,
        sigma_b2: float = 0.0,
        seed: int = 0,
        dtype=torch.float32,
        activation: str | None = "relu",
        linear_layers: Sequence[int] = (),
    ):
        super().__init__()
        self.linear_layers = frozenset(int(i) for i in linear_layers)
        self.sizes = [int(d_in), *[int(w) for w in widths], int(d_out)]
        self.sigma_w = math.sqrt(sigma_w2)
        self.sigma_b = math.sqrt(sigma_b2)
        self.activation = activation
        gen = torch.Generator().manual_seed(int(seed))
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(n_out, n_in, generator=gen, dtype=dtype))
            for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:], strict=True)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.randn(n_out, generator=gen, dtype=dtype))
            for n_out in self.sizes[1:]
            if sigma_b2 > 0
        )

    def act(self, h, layer: int):
        """The activation of hidden layer ``layer`` (0-based)."""
        if self.activation == "relu" and layer not in self.linear_layers:
            return torch.relu(h)
        return h

    def forward(self, x, return_pre: bool = False):
        a = x.reshape(x.shape[0], -1)
        pre = []
        last = len(self.weights) - 1
        for i, weight in enumerate(self.weights):
            h = (self.sigma_w / math.sqrt(weight.shape[1])) * (a @ weight.T)
            if len(self.biases):
                h = h + self.sigma_b * self.biases[i]
            if i == last:
                return (h, pre) if return_pre else h
            pre.append(h)
            a = self.act(h, i)


def mlp_empirical_ntk(model: NTKMLP, x) -> torch.Tensor:
    """Empirical NTK ``Θ_ij = (1/C) Σ_c ⟨∂f_c(x_i)/∂θ, ∂f_c(x_j)/∂θ⟩`` of an :class:`NTKMLP`.

    Exact, through the layer structure: for layer ``l`` with input ``a`` and output
    pre-activation ``h``, ``∂f_c/∂W_l = σ_w δ aᵀ / √fan_in`` with ``δ = ∂f_c/∂h``, so its share of
    the kernel is ``σ_w²/fan_in (a_i·a_j)(δ_i·δ_j) + σ_b² δ_i·δ_j``. Costs C backward passes.
    """
    x = x.reshape(x.shape[0], -1).to(model.weights[0].dtype).to(model.weights[0].device)
    with torch.enable_grad():
        out, pre = model(x, return_pre=True)
        inputs = [x] + [model.act(h, i) for i, h in enumerate(pre)]
        grams = [a @ a.T for a in inputs]
        num_out = out.shape[1]
        total = torch.zeros(len(x), len(x), dtype=torch.float64, device=x.device)
        for c in range(num_out):
            deltas = (
                list(torch.autograd.grad(out[:, c].sum(), pre, retain_graph=True)) if pre else []
            )
            deltas.append(torch.nn.functional.one_hot(torch.full((len(x),), c), num_out).to(x))
            for a_gram, delta, weight in zip(grams, deltas, model.weights, strict=True):
                d_gram = delta @ delta.T
                term = model.sigma_w**2 / weight.shape[1] * a_gram * d_gram
                if len(model.biases):
                    term = term + model.sigma_b**2 * d_gram
                total += term.double()
    return (total / num_out).detach()


def jacobian_ntk(model: nn.Module, x, output: int = 0) -> torch.Tensor:
    """Empirical NTK of one output unit from Jacobian products (generic, memory O(#params)).

    Column j is ``J (Jᵀ e_j)``: one vector-Jacobian and one Jacobian-vector product per example,
    so very wide networks fit in memory.
    """
    from torch.func import functional_call, jvp, vjp

    params = {name: p.detach() for name, p in model.named_parameters()}

    def f(p):
        return functional_call(model, p, (x,))[:, output]

    out, vjp_fn = vjp(f, params)
    cols = []
    for j in range(len(out)):
        basis = torch.zeros_like(out)
        basis[j] = 1
        (cotangent,) = vjp_fn(basis)
        _, col = jvp(f, (params,), (cotangent,))
        cols.append(col)
    return torch.stack(cols, 1).double()


# --------------------------------------------------------------------------------------------
# Representation metrics
# --------------------------------------------------------------------------------------------


def linear_cka(x, y) -> float:
    """Linear CKA (biased HSIC) of two representations of the same examples (rows)."""
    x = torch.as_tensor(x, dtype=KERNEL_DTYPE).reshape(len(x), -1)
    y = torch.as_tensor(y, dtype=KERNEL_DTYPE).reshape(len(y), -1)
    return gram_cka(x @ x.T, y @ y.T)


def target_alignment(gram, y) -> float:
    """Centred alignment of a Gram with the target Gram ``Y Yᵀ`` (int labels → one-hot)."""
    targets, _ = _targets(y)
    return gram_cka(gram, targets @ targets.T)


def relative_change(a, b) -> float:
    """‖b − a‖_F / ‖a‖_F."""
    a = torch.as_tensor(a, dtype=KERNEL_DTYPE)
    b = torch.as_tensor(b, dtype=KERNEL_DTYPE)
    return float(torch.linalg.norm(b - a) / torch.linalg.norm(a))


# --------------------------------------------------------------------------------------------
# Training a finite network with full-batch GD
# --------------------------------------------------------------------------------------------


@dataclass
class FiniteRun:
    curves: pd.DataFrame  # step, split, loss, accuracy
    kernel: pd.DataFrame  # step, lambda_max, kernel_change
    summary: dict
    train_loss: np.ndarray  # every step 0..steps


def _prepare_targets(y_train, y_test, device, dtype):
    """(train targets, test targets, train labels | None, test labels | None) on ``device``."""
    num_classes = None
    if not torch.is_floating_point(torch.as_tensor(y_train)):
        num_classes = int(max(np.max(y_train), np.max(y_test))) + 1
    ytr, ltr = _targets(y_train, num_classes)
    yte, lte = _targets(y_test, num_classes)
    move = (lambda t: t.to(device)) if ltr is not None else (lambda t: None)
    return ytr.to(device, dtype), yte.to(device, dtype), move(ltr), move(lte)


class _FiniteSystem:
    """A finite :class:`NTKMLP` trained with plain GD (all parameters, step ``lr``)."""

    def __init__(self, model: NTKMLP, xtr, xte, layer: int, lr: float, kernel_subset: int):
        self.model, self.xtr, self.xte, self.layer = model, xtr, xte, layer
        self.opt = torch.optim.SGD(model.parameters(), lr=lr)
        self.kx = xtr[:kernel_subset]

    def train_out(self):
        return self.model(self.xtr)

    def test_out(self):
        return self.model(self.xte)

    def step(self, loss):
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def ntk(self):
        return mlp_empirical_ntk(self.model, self.kx).cpu()

    def representation(self):
        _, pre = self.model(self.xte, return_pre=True)
        return pre[self.layer].double().cpu() if pre else None


class _LimitSystem:
    """Infinitely wide encoder, explicit wide decoder: the tractable bottleneck limit.

    The encoder ``g: x → R^k`` is lazy with the fixed per-coordinate NTK ``Θ_g`` and starts
    from a GP sample ``z_0`` (its NNGP); its outputs move by ``z ← z − η Θ_g(·, X) ∂L/∂z(X)``
    (exact in the limit). The decoder is an explicit :class:`NTKMLP` on ``z`` trained by GD.
    """

    def __init__(self, decoder: NTKMLP, z0, theta_g, n_train, lr, kernel_subset):
        self.decoder = decoder
        self.z = z0.clone()  # (N + M) × k
        self.theta_g = theta_g[:, :n_train]  # (N + M) × N
        self.n, self.lr, self.sub = n_train, lr, min(kernel_subset, n_train)
        self.opt = torch.optim.SGD(decoder.parameters(), lr=lr)
        self.z_train = None

    def train_out(self):
        self.z_train = self.z[: self.n].clone().requires_grad_(True)
        return self.decoder(self.z_train)

    def test_out(self):
        return self.decoder(self.z[self.n :])

    def step(self, loss):
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            self.z -= self.lr * self.theta_g @ self.z_train.grad
        self.opt.step()

    def ntk(self):
        """Trace-averaged NTK of the composition: Θ_f(z, z′) + ⟨∂f/∂z, ∂f/∂z′⟩ Θ_g(x, x′)."""
        z = self.z[: self.sub].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = self.decoder(z)
            grads = [
                torch.autograd.grad(out[:, c].sum(), z, retain_graph=True)[0]
                for c in range(out.shape[1])
            ]
        jac = sum(g @ g.T for g in grads).double() / out.shape[1]
        encoder = jac * self.theta_g[: self.sub, : self.sub].double()
        return (mlp_empirical_ntk(self.decoder, z.detach()).double() + encoder).cpu()

    def representation(self):
        return self.z[self.n :].double().cpu()


def _gd_loop(
    system,
    ytr,
    yte,
    ltr,
    lte,
    steps: int,
    center: bool,
    record_steps,
    kernel_steps,
    divergence_factor: float,
    raise_on_divergence: bool,
    name: str,
) -> FiniteRun:
    """Full-batch GD on ``1/(2N) Σ ‖f(x_i) − f_0(x_i) − y_i‖²`` (f_0 = 0 unless ``center``)."""
    record_steps = set(log_steps(steps) if record_steps is None else np.asarray(record_steps))
    kernel_steps = set(log_steps(steps, 8) if kernel_steps is None else np.asarray(kernel_steps))
    with torch.no_grad():
        f0_tr = system.train_out().detach() if center else torch.zeros_like(ytr)
        f0_te = system.test_out() if center else torch.zeros_like(yte)
        rep0 = system.representation()
    losses = np.empty(steps + 1)
    curve_rows, kernel_rows = [], []
    theta0, diverged = None, None
    for t in range(steps + 1):
        out = system.train_out() - f0_tr
        loss = 0.5 * ((out - ytr) ** 2).sum(1).mean()
        losses[t] = loss.item()
        if not np.isfinite(losses[t]) or losses[t] > divergence_factor * max(losses[0], 1e-12):
            message = f"{name} diverged at step {t} (train loss {losses[t]:.3g})"
            if raise_on_divergence:
                raise FloatingPointError(message + "; lower the learning rate")
            diverged = t
            losses[t:] = np.inf
            break
        if t in record_steps:
            with torch.no_grad():
                out_te = system.test_out() - f0_te
                te_loss = float(0.5 * ((out_te - yte) ** 2).sum(1).mean())
                tr_acc, te_acc = np.nan, np.nan
                if ltr is not None:
                    tr_acc = float((out.argmax(1) == ltr).double().mean())
                    te_acc = float((out_te.argmax(1) == lte).double().mean())
            curve_rows += [(t, "train", losses[t], tr_acc), (t, "test", te_loss, te_acc)]
        if t in kernel_steps:
            theta = system.ntk()
            theta0 = theta if theta0 is None else theta0
            kernel_rows.append(
                (t, float(torch.linalg.eigvalsh(theta)[-1]), relative_change(theta0, theta))
            )
        if t == steps:
            break
        system.step(loss)

    ok = diverged is None
    with torch.no_grad():
        rep = system.representation() if ok else None
    target = lte.cpu() if lte is not None else yte.cpu().double()

    def align(r):
        return target_alignment(r @ r.T, target) if r is not None else np.nan

    summary = {
        "diverged_at": np.nan if ok else float(diverged),
        "final_train_loss": losses[-1] if ok else np.nan,
        "final_train_acc": curve_rows[-2][3] if ok else np.nan,
        "final_test_loss": curve_rows[-1][2] if ok else np.nan,
        "final_test_acc": curve_rows[-1][3] if ok else np.nan,
        "alignment_init": align(rep0),
        "alignment_trained": align(rep),
        "cka_init_trained": linear_cka(rep0, rep) if rep is not None else np.nan,
        "kernel_change": kernel_rows[-1][2] if kernel_rows and ok else np.nan,
        "lambda_max_init": kernel_rows[0][1] if kernel_rows else np.nan,
        "lambda_max_final": kernel_rows[-1][1] if kernel_rows and ok else np.nan,
        "lambda_max_peak": max(r[1] for r in kernel_rows) if kernel_rows else np.nan,
    }
    return FiniteRun(
        curves=pd.DataFrame(curve_rows, columns=["step", "split", "loss", "accuracy"]),
        kernel=pd.DataFrame(kernel_rows, columns=["step", "lambda_max", "kernel_change"]),
        summary=summary,
        train_loss=losses,
    )


def train_finite(
    x_train,
    y_train,
    x_test,
    y_test,
    widths: Sequence[int],
    lr: float,
    steps: int,
    seed: int = 0,
    sigma_w2: float = 2.0,
    sigma_b2: float = 0.0,
    center: bool = True,
    record_steps=None,
    kernel_steps=None,
    kernel_subset: int = 256,
    layer: int | None = None,
    device: str = "cpu",
    dtype=torch.float32,
    activation: str | None = "relu",
    linear_layers: Sequence[int] = (),
    divergence_factor: float = 1e3,
    raise_on_divergence: bool = False,
) -> FiniteRun:
    """Full-batch GD with step ``lr`` on ``1/(2N) Σ ‖f(x_i) − y_i‖²`` for an :class:`NTKMLP`.

    ``center``: train ``f(x) − f(x; θ_0)`` (θ_0 frozen), so every net starts from f = 0 like the
    kernel mean prediction and initial losses agree. The train loss is kept at every step;
    test loss/accuracy at ``record_steps``; the empirical NTK on the first ``kernel_subset``
    training examples at ``kernel_steps`` (λ_max and change from init). ``layer`` (default the
    bottleneck index) is the representation compared at init and at the end (pre-activations
    on the test set): CKA, and its centred alignment with the target Gram. A run whose loss
    exceeds ``divergence_factor`` × its initial loss (or is not finite) stops there: its later
    losses are inf and ``summary["diverged_at"]`` is that step (NaN otherwise), unless
    ``raise_on_divergence``.
    """
    device = torch.device(device)
    ytr, yte, ltr, lte = _prepare_targets(y_train, y_test, device, dtype)
    xtr = torch.as_tensor(x_train).reshape(len(x_train), -1).to(device, dtype)
    xte = torch.as_tensor(x_test).reshape(len(x_test), -1).to(device, dtype)
    model = NTKMLP(
        xtr.shape[1],
        widths,
        ytr.shape[1],
        sigma_w2,
        sigma_b2,
        seed,
        dtype,
        activation,
        linear_layers,
    ).to(device)
    layer = bottleneck_index(len(widths)) if layer is None else layer
    system = _FiniteSystem(model, xtr, xte, layer, lr, kernel_subset)
    return _gd_loop(
        system,
        ytr,
        yte,
        ltr,
        lte,
        steps,
        center,
        record_steps,
        kernel_steps,
        divergence_factor,
        raise_on_divergence,
        name=f"finite net widths={list(widths)} seed={seed} lr={lr:g}",
    )


def train_bottleneck_limit(
    x_train,
    y_train,
    x_test,
    y_test,
    depth: int,
    k: int,
    decoder_width: int,
    lr: float,
    steps: int,
    seed: int = 0,
    sigma_w2: float = 2.0,
    sigma_b2: float = 0.0,
    center: bool = True,
    record_steps=None,
    kernel_steps=None,
    kernel_subset: int = 256,
    device: str = "cpu",
    dtype=torch.float32,
    divergence_factor: float = 1e3,
    raise_on_divergence: bool = False,
) -> FiniteRun:
    """The bottleneck net with an infinitely wide encoder (hidden layers before layer
    ``depth // 2``, exact through its kernels) and a decoder of width ``decoder_width``; the
    bottleneck (``k`` units) is linear, as in the study. Same loop and outputs as
    :func:`train_finite`; the representation is the bottleneck ``z`` on the test set.
    """
    device = torch.device(device)
    b = bottleneck_index(depth)
    if b < 1:
        raise ValueError(f"depth {depth} has no wide encoder before the bottleneck; use ≥ 2")
    ytr, yte, ltr, lte = _prepare_targets(y_train, y_test, device, dtype)
    x_all = np.concatenate(
        [np.asarray(x_train).reshape(len(x_train), -1), np.asarray(x_test).reshape(len(x_test), -1)]
    )
    k_g, theta_g = nngp_ntk(x_all, None, b, sigma_w2, sigma_b2)
    z0 = gp_sample(k_g, k, seed=seed).to(device, dtype)
    decoder = NTKMLP(
        k, [decoder_width] * (depth - b - 1), ytr.shape[1], sigma_w2, sigma_b2, seed + 7919, dtype
    ).to(device)
    system = _LimitSystem(decoder, z0, theta_g.to(device, dtype), len(ytr), lr, kernel_subset)
    return _gd_loop(
        system,
        ytr,
        yte,
        ltr,
        lte,
        steps,
        center,
        record_steps,
        kernel_steps,
        divergence_factor,
        raise_on_divergence,
        name=f"bottleneck limit k={k} decoder width={decoder_width} seed={seed} lr={lr:g}",
    )


# --------------------------------------------------------------------------------------------
# The study on real data
# --------------------------------------------------------------------------------------------

VARIANTS = ("ntk", "finite", "bottleneck", "limit")
CURVE_COLUMNS = ["variant", "width", "k", "seed", "step", "split", "loss", "accuracy"]
KERNEL_COLUMNS = ["variant", "width", "k", "seed", "step", "lambda_max", "kernel_change"]
SUMMARY_COLUMNS = [
    "variant",
    "width",
    "k",
    "seed",
    "lr",
    "threshold",
    "steps_to_threshold",
    "diverged_at",
    "final_train_loss",
    "final_test_loss",
    "final_test_acc",
    "alignment_init",
    "alignment_trained",
    "cka_init_trained",
    "kernel_change",
    "lambda_max_init",
    "lambda_max_final",
    "lambda_max_peak",
    "seconds",
]


def _tidy(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    df = df.reindex(columns=columns)
    for col in ("width", "k"):
        if col in df:
            df[col] = df[col].astype("Int64")
    if "seed" in df:
        df["seed"] = df["seed"].astype("int64")
    return df.reset_index(drop=True)


def make_targets(
    x_train,
    y_train,
    x_test,
    y_test,
    target: str = "onehot",
    component: int = 0,
    scale: float = 1.0,
):
    """Targets derived from a labelled dataset: ``(y_train, y_test)``.

    * ``onehot``: the int labels themselves (MSE on ``scale`` × one-hot is not offered: labels
      stay labels, so accuracy is defined); ``scale`` must be 1.
    * ``pc``: regression on the training inputs' principal component ``component`` (0 = largest
      variance), standardised on the training split and times ``scale`` (N × 1 floats). A low-
      variance component is slow for the NTK, which learns input directions at rates set by
      their variance; a bottleneck can learn that one direction as its feature.
    """
    if target == "onehot":
        if scale != 1.0:
            raise ValueError("target 'onehot' keeps int labels; use scale 1")
        return np.asarray(y_train), np.asarray(y_test)
    if target != "pc":
        raise ValueError(f"unknown target {target!r}; choose 'onehot' or 'pc'")
    xtr = np.asarray(x_train, dtype=np.float64).reshape(len(x_train), -1)
    xte = np.asarray(x_test, dtype=np.float64).reshape(len(x_test), -1)
    mean = xtr.mean(0)
    _, _, vt = np.linalg.svd(xtr - mean, full_matrices=False)
    if not 0 <= component < len(vt):
        raise ValueError(f"component {component} out of range 0..{len(vt) - 1}")
    direction = vt[component] * np.sign(vt[component].sum() or 1.0)
    p_tr, p_te = (xtr - mean) @ direction, (xte - mean) @ direction
    std = p_tr.std()
    return scale * p_tr[:, None] / std, scale * p_te[:, None] / std


def run_study(
    x_train,
    y_train,
    x_test,
    y_test,
    widths: Sequence[int],
    bottlenecks: Sequence[int],
    depth: int,
    lr: float | None,
    steps: int,
    seeds: Sequence[int],
    device: str = "cpu",
    sigma_w2: float = 2.0,
    sigma_b2: float = 0.0,
    lr_fraction: float = 0.25,
    threshold: float | None = None,
    threshold_fraction: float = 0.05,
    center: bool = True,
    ntk_init: str = "mean",
    linear_bottleneck: bool = True,
    finite_no_bottleneck: bool = True,
    finite_max_width: int | None = None,
    limit_decoder_width: int | None = None,
    kernel_subset: int = 256,
    curve_points: int = 40,
    dtype=torch.float32,
    log=None,
    variants: Sequence[str] = VARIANTS,
) -> dict[str, pd.DataFrame]:
    """NTK limit vs finite nets with and without a bottleneck, all trained with the same step.

    ``y`` int labels (one-hot MSE, argmax accuracy) or float targets. ``lr=None`` means
    ``lr_fraction × 2N/λ_max(Θ_NTK)``. The loss threshold (absolute) defaults to
    ``threshold_fraction`` × the loss at f = 0.

    Variants: ``ntk`` (exact infinite width, no bottleneck; ``ntk_init="mean"``: the mean
    prediction f_0 = 0, one seed-free row; ``"sample"``: f_0 a GP sample per seed),
    ``finite`` (every hidden layer ``width`` wide; only up to ``finite_max_width``),
    ``bottleneck`` (layer ``depth // 2`` has ``k`` units) and, with ``limit_decoder_width``,
    ``limit`` (:func:`train_bottleneck_limit`: infinitely wide encoder, decoder of that width,
    reported as its width). ``linear_bottleneck``: layer ``depth // 2`` has no activation in
    every variant (Littwin et al.'s F = f∘g, where g's k outputs feed f directly), so the NTK is
    the k → ∞ limit of the same architecture. ``center`` trains f − f(·; θ_0) so that all
    variants start from f = 0 (the NTK's mean prediction). Returns tidy tables:

    * ``curves``: variant, width, k, seed, step, split, loss, accuracy
    * ``kernel``: variant, width, k, seed, step, lambda_max, kernel_change (empirical NTK on the
      first ``kernel_subset`` training examples; the NTK variant is constant)
    * ``summary``: one row per run (see ``SUMMARY_COLUMNS``)

    ``variants`` selects which of :data:`VARIANTS` to run (the stage runs them as separate jobs;
    the step size and threshold depend only on the data and the NTK, so every job agrees).
    """
    log = log or (lambda msg: None)
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    x_train = np.asarray(x_train).reshape(len(x_train), -1)
    x_test = np.asarray(x_test).reshape(len(x_test), -1)
    n = len(x_train)
    b = bottleneck_index(depth)
    linear_layers = (b,) if linear_bottleneck and depth else ()
    k_all, theta_all, layers = nngp_ntk(
        np.concatenate([x_train, x_test]),
        None,
        depth,
        sigma_w2,
        sigma_b2,
        return_layers=True,
        linear_layers=linear_layers,
    )
    theta_tr, theta_te = theta_all[:n, :n], theta_all[n:, :n]
    lam = torch.linalg.eigvalsh(theta_tr)
    limit = 2 * n / float(lam[-1])
    if lr is None:
        lr = lr_fraction * limit
    log(f"NTK λ_max={float(lam[-1]):.4g}, stability limit 2N/λ_max={limit:.4g}, lr={lr:.4g}")

    num_classes = None
    if not np.issubdtype(np.asarray(y_train).dtype, np.floating):
        num_classes = int(max(np.max(y_train), np.max(y_test))) + 1
    ytr, _ = _targets(np.asarray(y_train), num_classes)
    if threshold is None:
        threshold = threshold_fraction * float((ytr**2).sum(1).mean() / 2)
    record = log_steps(steps, curve_points)
    kernel_record = log_steps(steps, 8)

    curves, kernels, summaries = [], [], []

    # exact infinite width, no bottleneck: the mean prediction (f0 = 0, one seed-free row) or,
    # with ntk_init="sample", f0 a GP sample of the output NNGP per seed
    # λ_max on the same examples as the finite nets' empirical NTK
    lam_sub = float(torch.linalg.eigvalsh(theta_tr[:kernel_subset, :kernel_subset])[-1])
    gram_b = layers[b][n:, n:] if depth else None  # bottleneck layer's NNGP on the test set
    align = target_alignment(gram_b, np.asarray(y_test)) if gram_b is not None else np.nan
    if ntk_init not in ("mean", "sample"):
        raise ValueError(f"ntk_init must be 'mean' or 'sample', got {ntk_init!r}")
    for seed in ([0] if ntk_init == "mean" else seeds) if "ntk" in variants else []:
        t0 = time.perf_counter()
        f0 = None if ntk_init == "mean" else gp_sample(k_all, ytr.shape[1], seed=seed)
        f0_tr, f0_te = (None, None) if f0 is None else (f0[:n], f0[n:])
        dyn = KernelDynamics(theta_tr, ytr, lr, f0_train=f0_tr)
        ntk_curve = kernel_dynamics(
            theta_tr,
            theta_te,
            y_train,
            y_test,
            lr,
            record,
            f0_train=f0_tr,
            f0_test=f0_te,
            num_classes=num_classes,
        )
        ntk_curve = ntk_curve.assign(variant="ntk", width=pd.NA, k=pd.NA, seed=seed)
        curves.append(ntk_curve)
        kernels.append(
            pd.DataFrame(
                {"variant": "ntk", "width": pd.NA, "k": pd.NA, "seed": seed, "step": kernel_record}
            ).assign(lambda_max=lam_sub, kernel_change=0.0)
        )
        last = ntk_curve[ntk_curve.step == steps].set_index("split")
        summaries.append(
            {
                "variant": "ntk",
                "width": pd.NA,
                "k": pd.NA,
                "seed": seed,
                "lr": lr,
                "threshold": threshold,
                # closed form: exact also beyond the simulated steps (see CLOSED_FORM_HORIZON)
                "steps_to_threshold": dyn.steps_to_threshold(
                    threshold, CLOSED_FORM_HORIZON * steps
                ),
                "diverged_at": np.nan,
                "final_train_loss": last.loc["train", "loss"],
                "final_test_loss": last.loc["test", "loss"],
                "final_test_acc": last.loc["test", "accuracy"],
                "alignment_init": align,
                "alignment_trained": align,
                "cka_init_trained": 1.0,
                "kernel_change": 0.0,
                "lambda_max_init": lam_sub,
                "lambda_max_final": lam_sub,
                "lambda_max_peak": lam_sub,
                "seconds": time.perf_counter() - t0,
            }
        )

    jobs = []
    for width in widths:
        if finite_no_bottleneck and not (finite_max_width and width > finite_max_width):
            jobs += [("finite", width, None, seed) for seed in seeds if "finite" in variants]
        if "bottleneck" in variants:
            jobs += [("bottleneck", width, k, seed) for k in bottlenecks for seed in seeds]
    if limit_decoder_width and linear_bottleneck and "limit" in variants:
        jobs += [("limit", limit_decoder_width, k, seed) for k in bottlenecks for seed in seeds]
    common = dict(
        sigma_w2=sigma_w2,
        sigma_b2=sigma_b2,
        center=center,
        record_steps=record,
        kernel_steps=kernel_record,
        kernel_subset=kernel_subset,
        device=device,
        dtype=dtype,
    )
    for variant, width, k, seed in jobs:
        t0 = time.perf_counter()
        if variant == "limit":
            run = train_bottleneck_limit(
                x_train, y_train, x_test, y_test, depth, k, width, lr, steps, seed, **common
            )
        else:
            run = train_finite(
                x_train,
                y_train,
                x_test,
                y_test,
                hidden_widths(width, depth, k),
                lr,
                steps,
                seed,
                linear_layers=linear_layers,
                **common,
            )
        seconds = time.perf_counter() - t0
        tags = {"variant": variant, "width": width, "k": k, "seed": seed}
        curves.append(run.curves.assign(**tags))
        kernels.append(run.kernel.assign(**tags))
        summaries.append(
            {
                **tags,
                "lr": lr,
                "threshold": threshold,
                "steps_to_threshold": steps_to_threshold(run.train_loss, threshold),
                **run.summary,
                "seconds": seconds,
            }
        )
        log(
            f"{variant} width={width} k={k} seed={seed}: "
            f"steps to threshold={summaries[-1]['steps_to_threshold']}, "
            f"test loss={run.summary['final_test_loss']:.4g}, {seconds:.1f}s"
        )
    return {
        "curves": _tidy(_concat(curves), CURVE_COLUMNS),
        "kernel": _tidy(_concat(kernels), KERNEL_COLUMNS),
        "summary": _tidy(pd.DataFrame(summaries), SUMMARY_COLUMNS),
    }


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --------------------------------------------------------------------------------------------
# Deep linear theory
# --------------------------------------------------------------------------------------------


def linear_lrs(lr: float, d: int, d_in: int, enc_layers: int, dec_layers: int) -> tuple:
    """Step sizes (η_A, η_B) = (η·L_f/d, η·L_g/d₀) of the reduced model F = A·B."""
    return lr * dec_layers / d, lr * enc_layers / d_in


def _linear_loss(pred, y):
    return 0.5 * ((pred - y) ** 2).sum(1).mean()


def reduced_linear(x, y, a0, b0, eta_a: float, eta_b: float, steps: int, record=None) -> dict:
    """GD on ``1/(2N) Σ ‖A B x_i − y_i‖²`` with per-factor steps; float64.

    Returns ``loss`` (every step 0..steps) and ``product`` (A·B at ``record`` steps, R × C × d₀).
    """
    x = torch.as_tensor(x, dtype=KERNEL_DTYPE)
    y = torch.as_tensor(y, dtype=KERNEL_DTYPE)
    a = torch.as_tensor(a0, dtype=KERNEL_DTYPE).clone()
    b = torch.as_tensor(b0, dtype=KERNEL_DTYPE).clone()
    n = len(x)
    sxx = x.T @ x / n
    syx = y.T @ x / n
    record = set(np.arange(steps + 1) if record is None else np.asarray(record))
    losses, products = np.empty(steps + 1), []
    for t in range(steps + 1):
        m = a @ b
        losses[t] = float(_linear_loss(x @ m.T, y))
        if t in record:
            products.append(m.clone())
        if t == steps:
            break
        grad_m = m @ sxx - syx  # ∂L/∂M
        a, b = a - eta_a * grad_m @ b.T, b - eta_b * a.T @ grad_m
    return {"loss": losses, "product": torch.stack(products)}


def linear_regression_gd(x, y, m0, eta: float, steps: int, at=None) -> np.ndarray:
    """GD on ``1/(2N) Σ ‖M x_i − y_i‖²`` (the infinitely wide deep linear net without bottleneck,
    η = lr·L/d₀), in closed form by the eigendecomposition of XᵀX/N; loss at every step
    0..steps, or at the steps ``at`` (any, also beyond ``steps``)."""
    x = torch.as_tensor(x, dtype=KERNEL_DTYPE)
    y = torch.as_tensor(y, dtype=KERNEL_DTYPE)
    n = len(x)
    sxx = x.T @ x / n
    lam, vec = torch.linalg.eigh(sxx)
    if not eta * float(lam[-1]) < 2:
        raise ValueError(
            f"step {eta:g} is not below the stability limit 2/λ_max(XᵀX/N) = {2 / float(lam[-1]):g}"
        )
    m0 = torch.as_tensor(m0, dtype=KERNEL_DTYPE)
    # residual r_t = X M_tᵀ − Y: M_t − M* decays mode-wise by (1 − ηλ)^t; loss from the
    # minimum-norm optimum plus the modes.
    m_star = torch.linalg.lstsq(x, y).solution.T
    e0 = (m0 - m_star) @ vec  # C × d0, in the eigenbasis
    floor = float(_linear_loss(x @ m_star.T, y))
    t = np.arange(steps + 1) if at is None else np.asarray(at, dtype=np.float64)
    t = torch.as_tensor(t, dtype=KERNEL_DTYPE)[:, None]
    factor = torch.pow((1 - eta * lam.clamp_min(0))[None, :], t)  # T × d0
    loss = floor + 0.5 * (factor**2 * (lam[None, :] * (e0**2).sum(0)[None, :])).sum(1)
    return loss.numpy()


def _linear_ntk_steps(x, y, m0, eta: float, threshold: float, steps: int) -> float:
    """Steps of :func:`linear_regression_gd` to ``threshold``, closed form, up to
    :data:`CLOSED_FORM_HORIZON` × ``steps``."""

    def loss_at(t):
        return float(linear_regression_gd(x, y, m0, eta, 0, at=[t])[0])

    return first_step_below(loss_at, threshold, CLOSED_FORM_HORIZON * steps)


def simulate_linear_net(
    x,
    y,
    width: int,
    d: int | None,
    enc_layers: int,
    dec_layers: int,
    lr: float,
    steps: int,
    seed: int = 0,
    record=None,
    dtype=torch.float64,
    device: str = "cpu",
) -> dict:
    """Train a finite deep linear net in NTK parameterisation with full-batch GD.

    ``enc_layers`` matrices map x → the bottleneck of ``d`` units, ``dec_layers`` matrices map
    it → output, all inner layers ``width`` wide (``d=None``: no bottleneck, that layer is also
    ``width`` wide). Returns ``loss`` (every step), ``product`` (end-to-end matrix at
    ``record``), and the encoder / decoder end-to-end matrices at init ``b0`` (d × d₀) and
    ``a0`` (C × d), the reduced model's initial condition.
    """
    device = torch.device(device)
    x = torch.as_tensor(x, dtype=dtype, device=device)
    y = torch.as_tensor(y, dtype=dtype, device=device)
    d = width if d is None else d
    widths = [width] * (enc_layers - 1) + [d] + [width] * (dec_layers - 1)
    model = NTKMLP(x.shape[1], widths, y.shape[1], 1.0, 0.0, seed, dtype, activation=None).to(
        device
    )

    def end_to_end(mats):
        out = None
        for w in mats:
            scaled = w / math.sqrt(w.shape[1])
            out = scaled if out is None else scaled @ out
        return out

    with torch.no_grad():
        b0 = end_to_end(model.weights[:enc_layers]).cpu().double()
        a0 = end_to_end(model.weights[enc_layers:]).cpu().double()
    record = set(np.arange(steps + 1) if record is None else np.asarray(record))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses, products = np.empty(steps + 1), []
    for t in range(steps + 1):
        loss = _linear_loss(model(x), y)
        losses[t] = loss.item()
        if t in record:
            with torch.no_grad():
                products.append(end_to_end(model.weights).cpu().double())
        if t == steps:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {"loss": losses, "product": torch.stack(products), "a0": a0, "b0": b0}


def scalar_bottleneck_rhs(w, s: float, eta_a: float, eta_b: float, c: float):
    """dw/dt of the scalar bottleneck model w = a·b, loss ½(s − w)², gradient flow with rates
    η_A, η_B: ``√((η_A η_B c)² + 4 η_A η_B w²) (s − w)`` with the conserved
    ``c = a²/η_A − b²/η_B`` (so η_B a² − η_A b² = η_A η_B c)."""
    return np.sqrt((eta_a * eta_b * c) ** 2 + 4 * eta_a * eta_b * np.square(w)) * (s - w)


def scalar_ntk_rhs(w, s: float, eta_a: float, eta_b: float):
    """dw/dt without a bottleneck (the lazy limit): ``(η_A + η_B)(s − w)``."""
    return (eta_a + eta_b) * (s - w)


def ill_conditioned_task(
    n: int, dim: int, condition: float, target: str, scale: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian inputs with per-coordinate std geometric from 1 down to 1/√condition (variance
    ratio = condition); the scalar target reads one coordinate, ``target`` = "top" (largest
    variance) or "low" (smallest), standardised and times ``scale``."""
    rng = np.random.default_rng(seed)
    stds = np.geomspace(1.0, 1.0 / math.sqrt(condition), dim)
    x = rng.standard_normal((n, dim)) * stds
    col = 0 if target == "top" else dim - 1
    y = scale * x[:, [col]] / stds[col]
    return x, y


def run_linear_study(
    bottlenecks: Sequence[int],
    width: int = 512,
    enc_layers: int = 2,
    dec_layers: int = 2,
    lr: float = 0.1,
    steps: int = 3000,
    n: int = 256,
    dim: int = 16,
    condition: float = 100.0,
    scale: float = 1.0,
    targets: Sequence[str] = ("top", "low"),
    threshold_fraction: float = 1e-3,
    seeds: Sequence[int] = (0,),
    simulate: bool = True,
    device: str = "cpu",
    curve_points: int = 40,
) -> dict[str, pd.DataFrame]:
    """Deep linear nets: lazy NTK limit vs the reduced bottleneck model vs simulated wide nets.

    Per target direction (``top`` / ``low`` input variance): the NTK limit (linear regression,
    step η·L/d₀), the reduced A·B model for each ``d`` (initialised from a simulated net's
    end-to-end factors, so both share the initial condition), and optionally the simulated
    width-``width`` net itself. Steps to ``threshold_fraction`` × initial NTK loss (absolute).
    Returns ``linear_curves`` (target, variant, k, seed, step, loss) and ``linear_summary``
    (target, variant, k, width (of the simulated net), seed, steps_to_threshold, final_loss,
    max_rel_error vs simulation). The NTK's steps to the threshold come from its closed form
    (up to :data:`CLOSED_FORM_HORIZON` × ``steps``).
    """
    record = log_steps(steps, curve_points)
    total = enc_layers + dec_layers
    curves, summary = [], []
    for target in targets:
        for seed in seeds:
            x, y = ill_conditioned_task(n, dim, condition, target, scale, seed)
            base = 0.5 * float((y**2).sum(1).mean())
            threshold = threshold_fraction * base
            # the lazy limit starts from a Gaussian end-to-end matrix (a GP with kernel x·x′/d₀)
            m0 = np.random.default_rng([seed, 1]).standard_normal((y.shape[1], dim)) / dim**0.5
            eta_ntk = lr * total / dim
            ntk_loss = linear_regression_gd(x, y, m0, eta_ntk, steps)
            curves.append(
                pd.DataFrame({"step": record, "loss": ntk_loss[record]}).assign(
                    target=target, variant="ntk", k=pd.NA, seed=seed
                )
            )
            summary.append(
                {
                    "target": target,
                    "variant": "ntk",
                    "k": pd.NA,
                    "seed": seed,
                    "threshold": threshold,
                    "steps_to_threshold": _linear_ntk_steps(x, y, m0, eta_ntk, threshold, steps),
                    "final_loss": ntk_loss[-1],
                    "max_rel_error": np.nan,
                }
            )
            for k in bottlenecks:
                sim = simulate_linear_net(
                    x,
                    y,
                    width,
                    k,
                    enc_layers,
                    dec_layers,
                    lr,
                    steps if simulate else 0,
                    seed=seed,
                    record=record if simulate else [0],
                    device=device,
                )
                eta_a, eta_b = linear_lrs(lr, k, dim, enc_layers, dec_layers)
                red = reduced_linear(x, y, sim["a0"], sim["b0"], eta_a, eta_b, steps, record)
                err = np.nan
                if simulate:
                    diff = torch.linalg.norm(sim["product"] - red["product"], dim=(1, 2))
                    err = float(diff.max() / torch.linalg.norm(red["product"], dim=(1, 2)).max())
                for variant, loss in (("reduced", red["loss"]), ("simulated", sim["loss"])):
                    if variant == "simulated" and not simulate:
                        continue
                    curves.append(
                        pd.DataFrame({"step": record, "loss": loss[record]}).assign(
                            target=target, variant=variant, k=k, seed=seed
                        )
                    )
                    summary.append(
                        {
                            "target": target,
                            "variant": variant,
                            "k": k,
                            "seed": seed,
                            "threshold": threshold,
                            "steps_to_threshold": steps_to_threshold(loss, threshold),
                            "final_loss": loss[-1],
                            "max_rel_error": err if variant == "simulated" else np.nan,
                            "width": width if variant == "simulated" else pd.NA,
                        }
                    )
    cols_c = ["target", "variant", "k", "seed", "step", "loss"]
    cols_s = [
        "target",
        "variant",
        "k",
        "width",
        "seed",
        "threshold",
        "steps_to_threshold",
        "final_loss",
        "max_rel_error",
    ]
    return {
        "linear_curves": _tidy(pd.concat(curves, ignore_index=True), cols_c),
        "linear_summary": _tidy(pd.DataFrame(summary), cols_s),
    }


# --------------------------------------------------------------------------------------------
# The stage: tasks, per-job study parts, effects and the headline
# --------------------------------------------------------------------------------------------

PAPER = "Littwin et al. 2021"
EFFECT_KEYS = ["regime", "variant", "width", "k"]
EFFECT_METRICS = [
    "steps_to_threshold",
    "speedup",
    "final_train_loss",
    "final_test_loss",
    "final_test_acc",
    "test_loss_ratio",
    "alignment_init",
    "alignment_trained",
    "alignment_gain",
    "cka_init_trained",
    "representation_change",
    "kernel_change",
    "lambda_max_init",
    "lambda_max_peak",
]
EFFECT_COLUMNS = [*EFFECT_KEYS, "metric", "n", "mean", "ci_low", "ci_high"]
# 1 − CKA(init, trained) above this counts as a changed representation (the lazy NTK has 0;
# wide nets without a bottleneck stay below ~1e-3 at the default settings)
REPRESENTATION_TOLERANCE = 0.02


def prepare_task(
    x_train,
    y_train,
    x_test,
    y_test,
    n_train: int,
    n_test: int,
    target: str = "onehot",
    component: int = 0,
    scale: float = 1.0,
):
    """The first ``n_train`` training and ``n_test`` test examples (flattened float64) and their
    targets (:func:`make_targets`; the principal components come from the kept training inputs).
    """
    for name, n, have in (("n_train", n_train, len(x_train)), ("n_test", n_test, len(x_test))):
        if not 1 <= n <= have:
            raise ValueError(f"{name}={n} is not in 1..{have} (examples in that split)")
    xtr = np.asarray(x_train, dtype=np.float64).reshape(len(x_train), -1)[:n_train]
    xte = np.asarray(x_test, dtype=np.float64).reshape(len(x_test), -1)[:n_test]
    ytr, yte = make_targets(
        xtr,
        np.asarray(y_train)[:n_train],
        xte,
        np.asarray(y_test)[:n_test],
        target,
        component,
        scale,
    )
    return xtr, ytr, xte, yte


def tag_regime(tables: dict[str, pd.DataFrame], regime: str) -> dict[str, pd.DataFrame]:
    """The tables with a leading ``regime`` column."""
    return {name: df.assign(regime=regime)[["regime", *df.columns]] for name, df in tables.items()}


def add_run_metrics(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-run derived metrics against the NTK of the same regime.

    * ``speedup`` = NTK steps to the threshold / this run's (> 1: faster than the NTK limit;
      NaN where either never reached it within the steps)
    * ``test_loss_ratio`` = final test loss / the NTK's (< 1: generalises better)
    * ``alignment_gain`` = alignment with the target after − before training
    * ``representation_change`` = 1 − CKA(bottleneck at init, trained) (0 for the NTK)
    """
    runs = runs.copy()
    ntk = runs[runs.variant == "ntk"].groupby("regime")
    ntk_steps = runs.regime.map(ntk.steps_to_threshold.mean())
    ntk_test = runs.regime.map(ntk.final_test_loss.mean())
    runs["speedup"] = ntk_steps / runs.steps_to_threshold.where(runs.steps_to_threshold > 0)
    runs["test_loss_ratio"] = runs.final_test_loss / ntk_test
    runs["alignment_gain"] = runs.alignment_trained - runs.alignment_init
    runs["representation_change"] = 1.0 - runs.cka_init_trained
    return runs


def effects_table(runs: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean and ``level`` t-interval over seeds of every :data:`EFFECT_METRICS` column, per
    regime, variant, width and k (long: one row per metric; ``n`` counts finite values)."""
    from widthlab.headline import t_interval

    runs = add_run_metrics(runs) if "speedup" not in runs else runs
    rows = []
    for key, group in runs.groupby(EFFECT_KEYS, dropna=False, sort=True):
        for metric in EFFECT_METRICS:
            values = group[metric].to_numpy(dtype=np.float64)
            finite = values[np.isfinite(values)]
            low, high = t_interval(finite, level)
            mean = float(finite.mean()) if len(finite) else np.nan
            rows.append((*key, metric, len(finite), mean, low, high))
    table = pd.DataFrame(rows, columns=EFFECT_COLUMNS)
    for col in ("width", "k"):
        table[col] = table[col].astype("Int64")
    return table


def _verdict_above(values, bound: float) -> str:
    """yes: the 95 % t-interval of the mean lies above ``bound``; partly: the mean does (or one
    value); no: otherwise (also when no value is finite)."""
    from widthlab.headline import t_interval

    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return "no"
    low, _ = t_interval(values)
    if len(values) >= 2 and low > bound:
        return "yes"
    return "partly" if values.mean() > bound else "no"


def _per_k(rows: pd.DataFrame, column: str) -> dict:
    return {int(k): g[column].to_numpy(dtype=np.float64) for k, g in rows.groupby("k")}


def _fmt_per_k(per_k: dict, missing: str = "diverged", digits: int = 3) -> str:
    """``k=1: 0.5, k=4: 0.7 (1 of 2 seeds)``; ``missing`` names why a value is NaN."""
    parts = []
    for k, v in per_k.items():
        finite = v[np.isfinite(v)]
        if not len(finite):
            parts.append(f"k={k}: {missing}")
            continue
        count = "" if len(finite) == len(v) else f" ({len(finite)} of {len(v)} seeds)"
        parts.append(f"k={k}: {finite.mean():.{digits}g}{count}")
    return ", ".join(parts)


def regime_headline(runs: pd.DataFrame, regime: str) -> list[dict]:
    """Headline rows of one regime, from the widest bottleneck width (rules in each detail).

    * acceleration: speed-up (NTK steps / bottleneck steps to the same absolute train loss)
      of the best k (largest mean over seeds, only k whose seeds all reached the threshold);
      yes if its 95 % t-interval lies above 1, partly if its mean does, n/a if the NTK never
      reached the threshold.
    * attribution (only with a no-bottleneck net of the widest width): its steps / the best
      k's, paired by seed; yes if the interval lies above 1 (finite width alone also leaves the
      lazy regime, so an acceleration counts as the bottleneck's only if it beats this net).
    * representation change: 1 − CKA(init, trained) of the bottleneck at the smallest k; yes if
      its interval lies above :data:`REPRESENTATION_TOLERANCE` (the NTK's is 0).
    * target alignment: gain of the bottleneck Gram's centred alignment with the target Gram at
      the smallest k; yes if its interval lies above 0.
    * kernel change returns to the lazy limit as k grows: yes if the mean relative NTK change
      falls strictly with k, partly if it is lower at the largest k than at the smallest.
    * generalisation: final test loss / the NTK's at the best k (lowest mean); yes if the
      interval lies below 1, partly if the mean does.
    """
    from widthlab.headline import headline_row

    runs = add_run_metrics(runs[runs.regime == regime])
    ntk = runs[runs.variant == "ntk"]
    bottle = runs[runs.variant == "bottleneck"]
    finite = runs[runs.variant == "finite"]
    if bottle.empty or ntk.empty:
        return []
    width = int(bottle.width.max())
    bottle = bottle[bottle.width == width]
    ks = sorted(int(k) for k in bottle.k.unique())
    k_min = ks[0]
    small = bottle[bottle.k == k_min]
    ntk_steps = float(ntk.steps_to_threshold.mean())
    threshold = float(ntk.threshold.iloc[0])
    where = f"{regime}, bottleneck width {width}"
    fin_ref, fin_speed = "", ""
    if len(finite):
        fw = int(finite.width.max())
        fin = finite[finite.width == fw]
        fin_ref = f"; no bottleneck width {fw}: {fin.representation_change.mean():.3g}"
        fin_speed = f"; no bottleneck width {fw}: {fin.speedup.mean():.3g}"
    rows = []

    speed = _per_k(bottle, "speedup")
    complete = {k: v for k, v in speed.items() if np.isfinite(v).all() and len(v)}
    best = max(complete, key=lambda k: complete[k].mean()) if complete else k_min
    holds = "n/a" if not np.isfinite(ntk_steps) else _verdict_above(complete.get(best, []), 1.0)
    rows.append(
        headline_row(
            PAPER,
            f"[{regime}] A finite bottleneck in an infinitely wide network trains faster than "
            "the NTK limit (implicit acceleration).",
            f"speed-up to train loss ≤ {threshold:.3g} (NTK steps / bottleneck steps), best k",
            "ratio of steps to an absolute loss at the same step size; t-interval over seeds",
            complete.get(best, []),
            holds,
            f"{where}: NTK needs {ntk_steps:.0f} steps; speed-up "
            f"{_fmt_per_k(speed, 'never reached')} (best k={best}){fin_speed}",
        )
    )
    same = finite[finite.width == width].set_index("seed").steps_to_threshold
    if len(same):
        b = bottle[bottle.k == best].set_index("seed").steps_to_threshold
        ratio = (same / b.where(b > 0)).dropna().to_numpy(dtype=np.float64) if len(b) else []
        ratio = np.asarray(ratio, dtype=np.float64)
        rows.append(
            headline_row(
                PAPER,
                f"[{regime}] The speed-up is the bottleneck's: a bottleneck net trains faster than "
                "the net of the same width without one.",
                f"steps of the no-bottleneck net / steps of the bottleneck net (k={best}), "
                f"width {width}",
                "ratio of steps to the same absolute loss, paired by seed; t-interval over seeds",
                ratio,
                "n/a" if not len(ratio) else _verdict_above(ratio, 1.0),
                f"{where}: no-bottleneck net {same.mean():.0f} steps "
                f"({int(same.notna().sum())} of {len(same)} seeds reached), bottleneck k={best} "
                f"{b.mean():.0f} steps; NaN pairs left out",
            )
        )
    rep = small.representation_change.to_numpy(dtype=np.float64)
    rows.append(
        headline_row(
            PAPER,
            f"[{regime}] The bottleneck learns features: its representation moves away from "
            "its initialisation, unlike the lazy NTK limit.",
            f"1 − linear CKA(bottleneck at init, trained), test set, k={k_min}",
            "linear CKA (biased HSIC); t-interval over seeds",
            rep,
            _verdict_above(rep, REPRESENTATION_TOLERANCE),
            f"{where}: 1 − CKA {_fmt_per_k(_per_k(bottle, 'representation_change'))}"
            f" (NTK 0; tolerance {REPRESENTATION_TOLERANCE}){fin_ref}",
        )
    )
    gain = small.alignment_gain.to_numpy(dtype=np.float64)
    rows.append(
        headline_row(
            PAPER,
            f"[{regime}] Training aligns the bottleneck representation with the target.",
            f"gain in centred alignment of the bottleneck Gram with the target Gram, k={k_min}",
            "centred kernel alignment, trained − init; t-interval over seeds",
            gain,
            _verdict_above(gain, 0.0),
            f"{where}: alignment init → trained "
            + ", ".join(
                f"k={k}: {g.alignment_init.mean():.3g} → {g.alignment_trained.mean():.3g}"
                for k, g in bottle.groupby("k")
            )
            + f" (NTK {float(ntk.alignment_init.mean()):.3g}, fixed)",
        )
    )
    change = bottle.groupby("k").kernel_change.mean().sort_index()
    if len(change) >= 2 and change.notna().all():
        if (np.diff(change.to_numpy()) < 0).all():
            holds = "yes"
        else:
            holds = "partly" if change.iloc[-1] < change.iloc[0] else "no"
    else:
        holds = "n/a"
    rows.append(
        headline_row(
            PAPER,
            f"[{regime}] The NTK moves during training with a bottleneck and returns to the "
            "fixed (lazy) kernel as k grows.",
            f"relative NTK change ‖Θ_T − Θ_0‖/‖Θ_0‖, k={k_min}",
            "empirical NTK on the first training examples; t-interval over seeds",
            small.kernel_change.to_numpy(dtype=np.float64),
            holds,
            f"{where}: kernel change {_fmt_per_k(_per_k(bottle, 'kernel_change'))}"
            + (
                f"; no bottleneck width {int(finite.width.max())}: "
                f"{finite[finite.width == finite.width.max()].kernel_change.mean():.3g}"
                if len(finite)
                else ""
            ),
        )
    )
    ratio = _per_k(bottle, "test_loss_ratio")
    finite_ratio = {k: v for k, v in ratio.items() if np.isfinite(v).all() and len(v)}
    best_test = min(finite_ratio, key=lambda k: finite_ratio[k].mean()) if finite_ratio else k_min
    values = finite_ratio.get(best_test, np.array([]))
    rows.append(
        headline_row(
            PAPER,
            f"[{regime}] With a bottleneck the network generalises better than the NTK limit.",
            "final test loss / NTK final test loss, best k",
            "ratio of MSE test losses after the same steps; t-interval over seeds",
            values,
            _verdict_above(-values, -1.0) if len(values) else "no",
            f"{where}: test-loss ratio {_fmt_per_k(ratio)} (best k={best_test}); NTK test loss "
            f"{float(ntk.final_test_loss.mean()):.3g}"
            + (
                f", test accuracy NTK {float(ntk.final_test_acc.mean()):.3f} vs k={best_test} "
                f"{float(bottle[bottle.k == best_test].final_test_acc.mean()):.3f}"
                if ntk.final_test_acc.notna().any()
                else ""
            ),
        )
    )
    return rows


def linear_headline(linear_summary: pd.DataFrame) -> list[dict]:
    """Deep linear rows: per target direction, the speed-up of the reduced bottleneck model
    (best d, rule as for acceleration), and one row on the theory check: the simulated width-n
    net matches the reduced A·B dynamics up to its O(1/√n) finite-width error — yes if every
    max relative error < 2/√n, partly if their median is."""
    from widthlab.headline import headline_row

    rows = []
    for target, part in linear_summary.groupby("target", sort=False):
        ntk = part[part.variant == "ntk"].set_index("seed").steps_to_threshold
        red = part[part.variant == "reduced"].copy()
        red["speedup"] = red.seed.map(ntk) / red.steps_to_threshold.where(
            red.steps_to_threshold > 0
        )
        speed = _per_k(red, "speedup")
        complete = {k: v for k, v in speed.items() if np.isfinite(v).all() and len(v)}
        best = max(complete, key=lambda k: complete[k].mean()) if complete else None
        rows.append(
            headline_row(
                PAPER,
                f"[deep linear, target on the {target}-variance input direction] A bottleneck "
                "accelerates training relative to the lazy limit.",
                "speed-up to the loss threshold (NTK steps / reduced A·B model steps), best d",
                "reduced dynamics of the infinitely wide deep linear net; t-interval over seeds",
                complete.get(best, []),
                "n/a" if not ntk.notna().all() else _verdict_above(complete.get(best, []), 1.0),
                f"NTK {ntk.mean():.0f} steps (closed form); speed-up "
                f"{_fmt_per_k(speed, 'never reached')} (best d={best})",
            )
        )
    sim = linear_summary[linear_summary.variant == "simulated"]
    if len(sim):
        err = sim.max_rel_error.to_numpy(dtype=np.float64)
        width = int(sim.width.min())
        bound = 2 / math.sqrt(width)
        holds = "yes" if np.nanmax(err) < bound else "partly" if np.nanmedian(err) < bound else "no"
        rows.append(
            headline_row(
                PAPER,
                "Wide deep linear nets with a bottleneck follow the reduced two-factor dynamics.",
                "max relative error of the end-to-end matrix, simulated net vs reduced model",
                "max over recorded steps; mean over targets, d and seeds",
                err,
                holds,
                f"width {width}: relative error median {np.nanmedian(err):.3g}, max "
                f"{np.nanmax(err):.3g} over {len(err)} runs (rule: < 2/√width = {bound:.3g})",
            )
        )
    return rows


def headline(runs: pd.DataFrame, linear_summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """The stage's headline table (:mod:`widthlab.headline` contract), regimes in order."""
    from widthlab.headline import headline_table

    rows = []
    for regime in dict.fromkeys(runs.regime):
        rows += regime_headline(runs, regime)
    if linear_summary is not None and len(linear_summary):
        rows += linear_headline(linear_summary)
    return headline_table(rows)


def run_job(dataset_arrays, settings: dict, job: str, device: str = "cpu", log=None) -> dict:
    """One job of the stage on ``(x_train, y_train, x_test, y_test)``: the tables of
    :func:`run_study` for this job's variants, with a leading ``regime`` column."""
    xtr, ytr, xte, yte = prepare_task(
        *dataset_arrays,
        int(settings["n_train"]),
        int(settings["n_test"]),
        settings["target"],
        int(settings["component"]),
        float(settings["scale"]),
    )
    common = dict(
        depth=int(settings["depth"]),
        lr=settings["lr"],
        steps=int(settings["steps"]),
        seeds=[int(s) for s in settings["seeds"]],
        device=device,
        sigma_w2=float(settings["sigma_w2"]),
        sigma_b2=float(settings["sigma_b2"]),
        lr_fraction=float(settings["lr_fraction"]),
        threshold_fraction=float(settings["threshold_fraction"]),
        kernel_subset=int(settings["kernel_subset"]),
        curve_points=int(settings["curve_points"]),
        log=log,
    )
    ks = settings.get("bottlenecks", [])
    if job == "ntk":
        part = dict(widths=[], bottlenecks=[], variants=("ntk",))
    elif job == "limit":
        width = int(settings["decoder_width"])
        part = dict(widths=[], bottlenecks=ks, limit_decoder_width=width, variants=("limit",))
    else:
        part = dict(
            widths=[int(settings["width"])],
            bottlenecks=ks,
            finite_no_bottleneck=bool(settings["finite"]),
            variants=("finite", "bottleneck"),
        )
    tables = run_study(xtr, ytr, xte, yte, **part, **common)
    return tag_regime(tables, settings["regime"])


def run_linear_job(settings: dict, device: str = "cpu") -> dict[str, pd.DataFrame]:
    """:func:`run_linear_study` from the ``linear`` settings."""
    return run_linear_study(
        [int(d) for d in settings["bottlenecks"]],
        width=int(settings["width"]),
        enc_layers=int(settings["enc_layers"]),
        dec_layers=int(settings["dec_layers"]),
        lr=float(settings["lr"]),
        steps=int(settings["steps"]),
        n=int(settings["n"]),
        dim=int(settings["dim"]),
        condition=float(settings["condition"]),
        scale=float(settings["scale"]),
        targets=list(settings["targets"]),
        threshold_fraction=float(settings["threshold_fraction"]),
        seeds=[int(s) for s in settings["seeds"]],
        simulate=bool(settings["simulate"]),
        device=device,
        curve_points=int(settings["curve_points"]),
    )
