"""Finite networks of the study trained with full-batch GD, and their empirical NTKs.

The networks are :func:`widthlab.models.ntk_mlp` MLPs (NTK parameterisation): wide hidden
layers except one layer of ``k`` units (index ``depth // 2``, as the ``bmlp`` arch). The
bottleneck limit (:func:`train_bottleneck_limit`) replaces the wide encoder before that layer by
its exact infinite-width kernels. Both train with plain GD on ``1/(2N) Σ ‖f(x_i) − y_i‖²`` in
one loop (:func:`_gd_loop`), which records the loss curves, the empirical NTK over training and
the bottleneck representation at init and at the end.

:func:`initial_stability_limit` is a network's *own* stability limit ``2N/λ_max(Θ_0)``, with
``Θ_0`` its empirical NTK at init on all training examples and all outputs (the
``(N·C) × (N·C)`` kernel: GD on the residual is ``r ← (I − ηΘ/N) r``, stable for
``η < 2N/λ_max``; with a narrow bottleneck the outputs' cross terms do not vanish, so the
output-averaged kernel would understate it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from widthlab.bottleneck.kernels import (
    _targets,
    gp_sample,
    log_steps,
    nngp_ntk,
    relative_change,
    target_alignment,
)
from widthlab.cka import cka
from widthlab.models import MLP, ntk_mlp
from widthlab.sizes import bottleneck_index

# --------------------------------------------------------------------------------------------
# Empirical NTKs
# --------------------------------------------------------------------------------------------


def _flat(x, model: MLP) -> torch.Tensor:
    weight = model.head.weight
    return torch.as_tensor(x).reshape(len(x), -1).to(weight.device, weight.dtype)


def mlp_empirical_ntk(model: MLP, x, full: bool = False) -> torch.Tensor:
    """Empirical NTK of an NTK-parameterised :class:`~widthlab.models.MLP`.

    ``full=False``: the output-averaged kernel ``Θ_ij = (1/C) Σ_c ⟨∂f_c(x_i)/∂θ, ∂f_c(x_j)/∂θ⟩``
    (N × N); ``full=True``: every output pair, ``Θ_(c,i),(c',j) = ⟨∂f_c(x_i)/∂θ,
    ∂f_c'(x_j)/∂θ⟩`` ((C·N) × (C·N), output-major). Exact, through the layer structure: for a
    layer with input ``a`` and pre-activation ``h``, ``∂f_c/∂W = σ_w δ aᵀ / √fan_in`` with
    ``δ = ∂f_c/∂h``, so its share of the kernel is ``σ_w²/fan_in (a_i·a_j)(δ_i·δ_j) +
    σ_b² δ_i·δ_j``. Costs C backward passes.
    """
    x = _flat(x, model)
    with torch.enable_grad():
        out, inputs, pre = model.linear_io(x)
        num_out, n = out.shape[1], len(x)
        per_output = []  # per output c: δ of every layer (hidden, then the one-hot of the head)
        for c in range(num_out):
            deltas = (
                list(torch.autograd.grad(out[:, c].sum(), pre, retain_graph=True)) if pre else []
            )
            deltas.append(torch.nn.functional.one_hot(torch.full((n,), c), num_out).to(x))
            per_output.append(deltas)
    size = num_out * n if full else n
    total = torch.zeros(size, size, dtype=torch.float64, device=x.device)
    for layer, (a, linear) in enumerate(zip(inputs, model.linears, strict=True)):
        a_gram = a @ a.T
        delta = torch.stack([d[layer] for d in per_output])  # C × N × units
        if full:
            flat = delta.reshape(num_out * n, -1)
            d_gram = flat @ flat.T
            a_gram = a_gram.repeat(num_out, num_out)
        else:
            d_gram = torch.einsum("ciu,cju->ij", delta, delta) / num_out
        term = linear.sigma_w**2 / linear.in_features * a_gram * d_gram
        total += (term + linear.sigma_b**2 * d_gram).double()
    return total.detach()


def jacobian_ntk(model: torch.nn.Module, x, output: int = 0) -> torch.Tensor:
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


def largest_eigenvalue(matrix: torch.Tensor) -> float:
    """λ_max of a symmetric matrix (Lanczos for large ones, a full solve for small ones)."""
    matrix = matrix.double().cpu()
    if len(matrix) <= 512:
        return float(torch.linalg.eigvalsh(matrix)[-1])
    from scipy.sparse.linalg import eigsh

    return float(eigsh(matrix.numpy(), k=1, which="LA", return_eigenvectors=False)[0])


# --------------------------------------------------------------------------------------------
# Settings of a run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """Training and test inputs (any shape; flattened) and targets: int labels (one-hot MSE,
    argmax accuracy) or float targets (N × C or N)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def inputs(self, init: Init) -> tuple[torch.Tensor, torch.Tensor]:
        def flat(x):
            return torch.as_tensor(np.asarray(x)).reshape(len(x), -1).to(init.device, init.dtype)

        return flat(self.x_train), flat(self.x_test)


@dataclass(frozen=True)
class Init:
    """How a network is initialised and where it lives."""

    seed: int = 0
    sigma_w2: float = 2.0
    sigma_b2: float = 0.0
    dtype: torch.dtype = torch.float32
    device: str = "cpu"


@dataclass(frozen=True)
class GD:
    """Full-batch GD with step ``lr`` for ``steps`` steps. ``center``: train ``f − f(·; θ_0)``
    so every net starts from f = 0 like the kernel mean prediction. Test loss / accuracy at
    ``record_steps``, the empirical NTK on the first ``kernel_subset`` training examples at
    ``kernel_steps`` (None: log-spaced). A loss above ``divergence_factor`` × the initial one
    (or not finite) stops the run (``summary["diverged_at"]``), or raises with
    ``raise_on_divergence``."""

    lr: float
    steps: int
    center: bool = True
    record_steps: tuple[int, ...] | None = None
    kernel_steps: tuple[int, ...] | None = None
    kernel_subset: int = 256
    divergence_factor: float = 1e3
    raise_on_divergence: bool = False


@dataclass(frozen=True)
class Targets:
    """Train / test targets on the device (float) and their int labels (None for regression)."""

    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None
    test_labels: torch.Tensor | None

    @classmethod
    def of(cls, task: Task, init: Init) -> Targets:
        num_classes = None
        if not torch.is_floating_point(torch.as_tensor(task.y_train)):
            num_classes = int(max(np.max(task.y_train), np.max(task.y_test))) + 1
        ytr, ltr = _targets(task.y_train, num_classes)
        yte, lte = _targets(task.y_test, num_classes)
        device = torch.device(init.device)
        labels = ltr is not None
        return cls(
            ytr.to(device, init.dtype),
            yte.to(device, init.dtype),
            ltr.to(device) if labels else None,
            lte.to(device) if labels else None,
        )


@dataclass
class FiniteRun:
    curves: pd.DataFrame  # step, split, loss, accuracy
    kernel: pd.DataFrame  # step, lambda_max, kernel_change
    summary: dict
    train_loss: np.ndarray  # every step 0..steps


def gd_step(params: list, loss, lr: float, extra: Sequence = ()) -> tuple:
    """One plain GD step ``p ← p − lr ∂loss/∂p`` on ``params`` (what ``torch.optim.SGD``
    without momentum does, without its one-off import cost in every job); returns the
    gradients of ``params`` and of the ``extra`` tensors."""
    grads = torch.autograd.grad(loss, [*params, *extra])
    with torch.no_grad():
        for p, g in zip(params, grads, strict=False):
            p.add_(g, alpha=-lr)
    return grads


# --------------------------------------------------------------------------------------------
# The two trainable systems
# --------------------------------------------------------------------------------------------


class _FiniteSystem:
    """A finite NTK-parameterised MLP trained with plain GD (all parameters)."""

    def __init__(self, model: MLP, xtr, xte, layer: int, kernel_subset: int):
        self.model, self.xtr, self.xte, self.layer = model, xtr, xte, layer
        self.n, self.kx = len(xtr), xtr[:kernel_subset]
        self.lr = None

    def start(self, lr: float) -> None:
        self.lr = lr

    def train_out(self):
        return self.model(self.xtr)

    def test_out(self):
        return self.model(self.xte)

    def step(self, loss):
        gd_step(list(self.model.parameters()), loss, self.lr)

    def ntk(self):
        return mlp_empirical_ntk(self.model, self.kx).cpu()

    def full_ntk(self):
        """Every output pair, all training examples (:func:`mlp_empirical_ntk` ``full``)."""
        return mlp_empirical_ntk(self.model, self.xtr, full=True)

    def representation(self):
        _, _, pre = self.model.linear_io(self.xte)
        return pre[self.layer].double().cpu() if pre else None


class _LimitSystem:
    """Infinitely wide encoder, explicit wide decoder: the tractable bottleneck limit.

    The encoder ``g: x → R^k`` is lazy with the fixed per-coordinate NTK ``Θ_g`` and starts
    from a GP sample ``z_0`` (its NNGP); its outputs move by ``z ← z − η Θ_g(·, X) ∂L/∂z(X)``
    (exact in the limit). The decoder is an explicit NTK-parameterised MLP on ``z``, trained by GD.
    """

    def __init__(self, decoder: MLP, z0, theta_g, n_train, kernel_subset):
        self.decoder = decoder
        self.z = z0.clone()  # (N + M) × k
        self.theta_g = theta_g[:, :n_train]  # (N + M) × N
        self.n, self.sub = n_train, min(kernel_subset, n_train)
        self.lr, self.z_train = None, None

    def start(self, lr: float) -> None:
        self.lr = lr

    def train_out(self):
        self.z_train = self.z[: self.n].clone().requires_grad_(True)
        return self.decoder(self.z_train)

    def test_out(self):
        return self.decoder(self.z[self.n :])

    def step(self, loss):
        params = list(self.decoder.parameters())
        (*_, z_grad) = gd_step(params, loss, self.lr, extra=[self.z_train])
        with torch.no_grad():
            self.z -= self.lr * self.theta_g @ z_grad

    def _encoder_jacobian(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(∂f_c/∂z at the first ``count`` training points, C × count × k; those z)."""
        z = self.z[:count].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = self.decoder(z)
            grads = [
                torch.autograd.grad(out[:, c].sum(), z, retain_graph=True)[0]
                for c in range(out.shape[1])
            ]
        return torch.stack(grads), z.detach()

    def ntk(self):
        """Trace-averaged NTK of the composition: Θ_f(z, z′) + ⟨∂f/∂z, ∂f/∂z′⟩ Θ_g(x, x′)."""
        jac, z = self._encoder_jacobian(self.sub)
        outer = torch.einsum("ciu,cju->ij", jac, jac).double() / jac.shape[0]
        encoder = outer * self.theta_g[: self.sub, : self.sub].double()
        return (mlp_empirical_ntk(self.decoder, z).double() + encoder).cpu()

    def full_ntk(self):
        """Every output pair, all training examples (output-major, as the finite nets')."""
        jac, z = self._encoder_jacobian(self.n)
        flat = jac.reshape(-1, jac.shape[-1])
        c = jac.shape[0]
        encoder = (flat @ flat.T).double() * self.theta_g[: self.n, : self.n].double().repeat(c, c)
        return mlp_empirical_ntk(self.decoder, z, full=True).double() + encoder

    def representation(self):
        return self.z[self.n :].double().cpu()


def finite_system(
    task: Task,
    widths: Sequence[int],
    init: Init,
    linear_layers=(),
    layer=None,
    kernel_subset: int = 256,
) -> _FiniteSystem:
    """A finite net of these hidden ``widths`` at init; ``layer`` (default the bottleneck index)
    is the representation compared at init and at the end (pre-activations on the test set)."""
    xtr, xte = task.inputs(init)
    d_out = Targets.of(task, init).train.shape[1]
    model = ntk_mlp(
        xtr.shape[1],
        widths,
        d_out,
        init.sigma_w2,
        init.sigma_b2,
        init.seed,
        init.dtype,
        linear_layers,
    ).to(init.device)
    layer = bottleneck_index(len(widths)) if layer is None else layer
    return _FiniteSystem(model, xtr, xte, layer, kernel_subset)


def limit_system(
    task: Task, depth: int, k: int, decoder_width: int, init: Init, kernel_subset: int = 256
) -> _LimitSystem:
    """The bottleneck net with an infinitely wide encoder (hidden layers before layer
    ``depth // 2``, exact through its kernels) and a decoder of width ``decoder_width``; the
    bottleneck (``k`` units) is linear. The representation is the bottleneck ``z`` on the test
    set."""
    b = bottleneck_index(depth)
    if b < 1:
        raise ValueError(f"depth {depth} has no wide encoder before the bottleneck; use ≥ 2")
    device = torch.device(init.device)
    x_all = np.concatenate([np.asarray(x).reshape(len(x), -1) for x in (task.x_train, task.x_test)])
    k_g, theta_g = nngp_ntk(x_all, None, b, init.sigma_w2, init.sigma_b2)
    z0 = gp_sample(k_g, k, seed=init.seed).to(device, init.dtype)
    d_out = Targets.of(task, init).train.shape[1]
    decoder = ntk_mlp(
        k,
        [decoder_width] * (depth - b - 1),
        d_out,
        init.sigma_w2,
        init.sigma_b2,
        init.seed + 7919,
        init.dtype,
    ).to(device)
    theta_g = theta_g.to(device, init.dtype)
    return _LimitSystem(decoder, z0, theta_g, len(task.x_train), kernel_subset)


def own_stability_limit(system) -> float:
    """``2N/λ_max(Θ)`` of the system's empirical NTK at its current parameters, every output
    pair and all N training examples (the module doc says why the full kernel)."""
    return 2 * system.n / largest_eigenvalue(system.full_ntk())


# --------------------------------------------------------------------------------------------
# Full-batch GD
# --------------------------------------------------------------------------------------------


def _record(system, targets: Targets, out, f0_te, t: int, loss: float) -> list[tuple]:
    """The curve rows of step ``t``: train and test loss and accuracy."""
    with torch.no_grad():
        out_te = system.test_out() - f0_te
        te_loss = float(0.5 * ((out_te - targets.test) ** 2).sum(1).mean())
        tr_acc, te_acc = np.nan, np.nan
        if targets.train_labels is not None:
            tr_acc = float((out.argmax(1) == targets.train_labels).double().mean())
            te_acc = float((out_te.argmax(1) == targets.test_labels).double().mean())
    return [(t, "train", loss, tr_acc), (t, "test", te_loss, te_acc)]


def train(system, targets: Targets, gd: GD, name: str) -> FiniteRun:
    """Full-batch GD on ``1/(2N) Σ ‖f(x_i) − f_0(x_i) − y_i‖²`` (f_0 = 0 unless ``gd.center``);
    the train loss at every step, curves and kernels as :class:`GD` says."""
    steps = gd.steps
    record_steps = set(log_steps(steps) if gd.record_steps is None else gd.record_steps)
    kernel_steps = set(log_steps(steps, 8) if gd.kernel_steps is None else gd.kernel_steps)
    system.start(gd.lr)
    ytr = targets.train
    with torch.no_grad():
        f0_tr = system.train_out().detach() if gd.center else torch.zeros_like(ytr)
        f0_te = system.test_out() if gd.center else torch.zeros_like(targets.test)
        rep0 = system.representation()
    losses = np.empty(steps + 1)
    curve_rows, kernel_rows = [], []
    theta0, diverged = None, None
    for t in range(steps + 1):
        out = system.train_out() - f0_tr
        loss = 0.5 * ((out - ytr) ** 2).sum(1).mean()
        losses[t] = loss.item()
        if not np.isfinite(losses[t]) or losses[t] > gd.divergence_factor * max(losses[0], 1e-12):
            message = f"{name} diverged at step {t} (train loss {losses[t]:.3g})"
            if gd.raise_on_divergence:
                raise FloatingPointError(message + "; lower the learning rate")
            diverged = t
            losses[t:] = np.inf
            break
        if t in record_steps:
            curve_rows += _record(system, targets, out, f0_te, t, losses[t])
        if t in kernel_steps:
            theta = system.ntk()
            theta0 = theta if theta0 is None else theta0
            kernel_rows.append(
                (t, float(torch.linalg.eigvalsh(theta)[-1]), relative_change(theta0, theta))
            )
        if t == steps:
            break
        system.step(loss)
    with torch.no_grad():
        rep = system.representation() if diverged is None else None
    return FiniteRun(
        curves=pd.DataFrame(curve_rows, columns=["step", "split", "loss", "accuracy"]),
        kernel=pd.DataFrame(kernel_rows, columns=["step", "lambda_max", "kernel_change"]),
        summary=_summary(losses, curve_rows, kernel_rows, (rep0, rep), targets, diverged),
        train_loss=losses,
    )


def _summary(losses, curve_rows, kernel_rows, reps, targets: Targets, diverged) -> dict:
    """The run's summary row (NaN where a diverged run has no value)."""
    ok = diverged is None
    rep0, rep = reps
    labels = targets.test_labels
    target = labels.cpu() if labels is not None else targets.test.cpu().double()

    def align(r):
        return target_alignment(r @ r.T, target) if r is not None else np.nan

    return {
        "diverged_at": np.nan if ok else float(diverged),
        "final_train_loss": losses[-1] if ok else np.nan,
        "final_train_acc": curve_rows[-2][3] if ok else np.nan,
        "final_test_loss": curve_rows[-1][2] if ok else np.nan,
        "final_test_acc": curve_rows[-1][3] if ok else np.nan,
        "alignment_init": align(rep0),
        "alignment_trained": align(rep),
        "cka_init_trained": cka(rep0, rep, "linear") if rep is not None else np.nan,
        "kernel_change": kernel_rows[-1][2] if kernel_rows and ok else np.nan,
        "lambda_max_init": kernel_rows[0][1] if kernel_rows else np.nan,
        "lambda_max_final": kernel_rows[-1][1] if kernel_rows and ok else np.nan,
        "lambda_max_peak": max(r[1] for r in kernel_rows) if kernel_rows else np.nan,
    }


def train_finite(
    task: Task, widths: Sequence[int], init: Init, gd: GD, linear_layers=(), layer=None
) -> FiniteRun:
    """Full-batch GD of a finite net (:func:`finite_system`) by :func:`train`."""
    system = finite_system(task, widths, init, linear_layers, layer, gd.kernel_subset)
    name = f"finite net widths={list(widths)} seed={init.seed} lr={gd.lr:g}"
    return train(system, Targets.of(task, init), gd, name)


def train_bottleneck_limit(
    task: Task, depth: int, k: int, decoder_width: int, init: Init, gd: GD
) -> FiniteRun:
    """Full-batch GD of the bottleneck limit (:func:`limit_system`) by :func:`train`."""
    system = limit_system(task, depth, k, decoder_width, init, gd.kernel_subset)
    name = f"bottleneck limit k={k} decoder width={decoder_width} seed={init.seed} lr={gd.lr:g}"
    return train(system, Targets.of(task, init), gd, name)
