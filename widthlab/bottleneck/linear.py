"""Deep linear theory of a bottleneck (Littwin et al. 2021, section on deep linear models).

An infinitely wide deep linear net with one width-``d`` bottleneck is the two-layer model
``F(x) = A·B·x`` (:func:`reduced_linear`, step sizes :func:`linear_lrs`); without the bottleneck
it is plain linear regression (:func:`linear_regression_gd`, closed form).
:func:`simulate_linear_net` trains the finite wide net it is the limit of;
:func:`scalar_bottleneck_rhs` is the scalar closed form. :func:`run_linear_study` compares them
on ill-conditioned synthetic inputs (:func:`ill_conditioned_task`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from widthlab.bottleneck.kernels import (
    CLOSED_FORM_HORIZON,
    KERNEL_DTYPE,
    first_step_below,
    log_steps,
    steps_to_threshold,
)
from widthlab.bottleneck.measure import _tidy
from widthlab.bottleneck.networks import gd_step
from widthlab.bottleneck.settings import LinearSettings
from widthlab.models import ntk_mlp

LINEAR_CURVE_COLUMNS = ["target", "variant", "k", "seed", "step", "loss"]
LINEAR_SUMMARY_COLUMNS = [
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


@dataclass(frozen=True)
class LinearNet:
    """A deep linear net: ``enc_layers`` matrices map x to the bottleneck of ``d`` units,
    ``dec_layers`` matrices map it to the output, all inner layers ``width`` wide (``d=None``:
    no bottleneck, that layer is also ``width`` wide)."""

    width: int
    d: int | None
    enc_layers: int
    dec_layers: int

    def widths(self) -> list[int]:
        d = self.width if self.d is None else self.d
        return [self.width] * (self.enc_layers - 1) + [d] + [self.width] * (self.dec_layers - 1)


def simulate_linear_net(
    x, y, net: LinearNet, lr: float, steps: int, seed: int = 0, record=None, device: str = "cpu"
) -> dict:
    """Train a finite deep linear net in NTK parameterisation (float64) with full-batch GD.

    Returns ``loss`` (every step), ``product`` (end-to-end matrix at ``record``), and the
    encoder / decoder end-to-end matrices at init ``b0`` (d × d₀) and ``a0`` (C × d), the
    reduced model's initial condition.
    """
    device = torch.device(device)
    x = torch.as_tensor(x, dtype=KERNEL_DTYPE, device=device)
    y = torch.as_tensor(y, dtype=KERNEL_DTYPE, device=device)
    widths = net.widths()
    model = ntk_mlp(
        x.shape[1],
        widths,
        y.shape[1],
        1.0,
        0.0,
        seed,
        KERNEL_DTYPE,
        linear_layers=range(len(widths)),
    ).to(device)
    weights = [layer.weight for layer in model.linears]

    def end_to_end(mats):
        out = None
        for w in mats:
            scaled = w / math.sqrt(w.shape[1])
            out = scaled if out is None else scaled @ out
        return out

    with torch.no_grad():
        b0 = end_to_end(weights[: net.enc_layers]).cpu().double()
        a0 = end_to_end(weights[net.enc_layers :]).cpu().double()
    record = set(np.arange(steps + 1) if record is None else np.asarray(record))
    params = list(model.parameters())
    losses, products = np.empty(steps + 1), []
    for t in range(steps + 1):
        loss = _linear_loss(model(x), y)
        losses[t] = loss.item()
        if t in record:
            with torch.no_grad():
                products.append(end_to_end(weights).cpu().double())
        if t == steps:
            break
        gd_step(params, loss, lr)
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


def _linear_runs(s: LinearSettings, target: str, seed: int, record, device: str):
    """(curve frames, summary rows) of one target direction and seed."""
    x, y = ill_conditioned_task(s.n, s.dim, s.condition, target, s.scale, seed)
    threshold = s.threshold_fraction * 0.5 * float((y**2).sum(1).mean())
    # the lazy limit starts from a Gaussian end-to-end matrix (a GP with kernel x·x′/d₀)
    m0 = np.random.default_rng([seed, 1]).standard_normal((y.shape[1], s.dim)) / s.dim**0.5
    eta_ntk = s.lr * (s.enc_layers + s.dec_layers) / s.dim
    ntk_loss = linear_regression_gd(x, y, m0, eta_ntk, s.steps)
    tags = {"target": target, "seed": seed, "threshold": threshold}
    curves = [
        pd.DataFrame({"step": record, "loss": ntk_loss[record]}).assign(
            target=target, variant="ntk", k=pd.NA, seed=seed
        )
    ]
    summary = [
        {
            **tags,
            "variant": "ntk",
            "k": pd.NA,
            "final_loss": ntk_loss[-1],
            "steps_to_threshold": _linear_ntk_steps(x, y, m0, eta_ntk, threshold, s.steps),
            "max_rel_error": np.nan,
        }
    ]
    for k in s.bottlenecks:
        net = LinearNet(s.width, k, s.enc_layers, s.dec_layers)
        sim = simulate_linear_net(
            x,
            y,
            net,
            s.lr,
            s.steps if s.simulate else 0,
            seed,
            record if s.simulate else [0],
            device,
        )
        eta_a, eta_b = linear_lrs(s.lr, k, s.dim, s.enc_layers, s.dec_layers)
        red = reduced_linear(x, y, sim["a0"], sim["b0"], eta_a, eta_b, s.steps, record)
        err = np.nan
        if s.simulate:
            diff = torch.linalg.norm(sim["product"] - red["product"], dim=(1, 2))
            err = float(diff.max() / torch.linalg.norm(red["product"], dim=(1, 2)).max())
        parts = [("reduced", red["loss"])] + ([("simulated", sim["loss"])] if s.simulate else [])
        for variant, loss in parts:
            curves.append(
                pd.DataFrame({"step": record, "loss": loss[record]}).assign(
                    target=target, variant=variant, k=k, seed=seed
                )
            )
            summary.append(
                {
                    **tags,
                    "variant": variant,
                    "k": k,
                    "final_loss": loss[-1],
                    "steps_to_threshold": steps_to_threshold(loss, threshold),
                    "max_rel_error": err if variant == "simulated" else np.nan,
                    "width": s.width if variant == "simulated" else pd.NA,
                }
            )
    return curves, summary


def run_linear_study(settings: LinearSettings, device: str = "cpu") -> dict[str, pd.DataFrame]:
    """Deep linear nets: lazy NTK limit vs the reduced bottleneck model vs simulated wide nets.

    Per target direction (``top`` / ``low`` input variance) and seed: the NTK limit (linear
    regression, step η·L/d₀), the reduced A·B model for each ``d`` (initialised from a simulated
    net's end-to-end factors, so both share the initial condition), and with ``simulate`` the
    simulated width-``width`` net itself. Steps to ``threshold_fraction`` × the loss at f = 0
    (absolute). Returns ``linear_curves`` (target, variant, k, seed, step, loss) and
    ``linear_summary`` (target, variant, k, width (of the simulated net), seed, threshold,
    steps_to_threshold, final_loss, max_rel_error vs simulation). The NTK's steps come from its
    closed form (up to :data:`CLOSED_FORM_HORIZON` × ``steps``).
    """
    record = log_steps(settings.steps, settings.curve_points)
    curves, summary = [], []
    for target in settings.targets:
        for seed in settings.seeds:
            c, s = _linear_runs(settings, target, seed, record, device)
            curves += c
            summary += s
    return {
        "linear_curves": _tidy(pd.concat(curves, ignore_index=True), LINEAR_CURVE_COLUMNS),
        "linear_summary": _tidy(pd.DataFrame(summary), LINEAR_SUMMARY_COLUMNS),
    }


def run_linear_job(settings: dict, device: str = "cpu") -> dict[str, pd.DataFrame]:
    """:func:`run_linear_study` from the stage's ``linear`` settings (a plain dict)."""
    return run_linear_study(LinearSettings.from_dict(settings), device=device)
