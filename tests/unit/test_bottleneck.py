"""Littwin et al. (2021): analytic NTK, kernel dynamics, finite nets and deep linear theory.

Every check compares against independent math: the empirical NTK of wide networks, one-layer
arc-cosine formulas written out here, direct solves, explicit step loops, matrix exponentials,
and a numerically integrated ODE.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from widthlab.bottleneck import jobs, kernels, linear, measure, networks
from widthlab.bottleneck.networks import GD, Init, Task
from widthlab.bottleneck.settings import CURVE_COLUMNS, SUMMARY_COLUMNS, JobSettings, LinearSettings
from widthlab.cka import cka
from widthlab.models import ntk_mlp


@pytest.fixture(autouse=True)
def _few_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def _inputs(n=6, d=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


# --- analytic NNGP / NTK -----------------------------------------------------------------------


def test_one_hidden_layer_matches_the_arc_cosine_formulas():
    x = _inputs(7, 3)
    sw2, sb2, d = 1.7, 0.3, x.shape[1]
    # written out: Σ = σ_w² x·x′/d + σ_b²; arc-cosine kernels of degree 1 (NNGP) and 0 (derivative)
    sigma = sw2 * x @ x.T / d + sb2
    norms = np.sqrt(np.outer(np.diag(sigma), np.diag(sigma)))
    theta = np.arccos(np.clip(sigma / norms, -1, 1))
    np.fill_diagonal(theta, 0.0)
    k1 = norms / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))
    k0 = (np.pi - theta) / (2 * np.pi)
    nngp = sw2 * k1 + sb2
    ntk = nngp + sw2 * k0 * sigma
    kernel, tangent = kernels.nngp_ntk(x, None, depth=1, sigma_w2=sw2, sigma_b2=sb2)
    np.testing.assert_allclose(kernel.numpy(), nngp, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tangent.numpy(), ntk, rtol=1e-12, atol=1e-12)
    # the diagonal exactly: E[relu(u)²] = Σ/2, E[relu′²] = 1/2
    np.testing.assert_allclose(np.diag(tangent.numpy()), sw2 * np.diag(sigma) + sb2, rtol=1e-14)


def test_cross_kernels_agree_with_the_joint_gram_and_linear_layers_are_linear():
    a, b = _inputs(5, 4, 1), _inputs(3, 4, 2)
    joint_k, joint_t = kernels.nngp_ntk(np.concatenate([a, b]), None, 3, 2.0, 0.1)
    cross_k, cross_t = kernels.nngp_ntk(a, b, 3, 2.0, 0.1)
    np.testing.assert_allclose(cross_k.numpy(), joint_k[:5, 5:].numpy(), rtol=1e-12)
    np.testing.assert_allclose(cross_t.numpy(), joint_t[:5, 5:].numpy(), rtol=1e-12)
    # all layers linear, σ_w² = 1, no bias: NNGP = x·x′/d and NTK = (L + 1) x·x′/d
    k, t = kernels.nngp_ntk(a, None, 2, 1.0, 0.0, linear_layers=(0, 1))
    gram = a @ a.T / a.shape[1]
    np.testing.assert_allclose(k.numpy(), gram, rtol=1e-12)
    np.testing.assert_allclose(t.numpy(), 3 * gram, rtol=1e-12)


def test_analytic_ntk_is_the_limit_of_the_empirical_ntk_of_wide_networks():
    x = torch.as_tensor(_inputs(5, 4, 3))
    _, theta = kernels.nngp_ntk(x, None, depth=2, sigma_w2=2.0, sigma_b2=0.1)
    errors = []
    for width in (256, 1024, 4096):
        per_seed = []
        for seed in range(4):
            net = ntk_mlp(4, [width, width], 1, 2.0, 0.1, seed=seed, dtype=torch.float32)
            empirical = networks.jacobian_ntk(net, x.float())
            per_seed.append(float(torch.linalg.norm(empirical - theta) / torch.linalg.norm(theta)))
        errors.append(np.mean(per_seed))
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.08, errors


def test_layerwise_empirical_ntk_equals_the_jacobian_ntk():
    x = torch.as_tensor(_inputs(6, 5, 4))
    net = ntk_mlp(5, [7, 3, 9], 4, 2.0, 0.2, seed=1, dtype=torch.float64, linear_layers=(1,))
    jac = torch.stack([networks.jacobian_ntk(net, x, output=c) for c in range(4)]).mean(0)
    np.testing.assert_allclose(networks.mlp_empirical_ntk(net, x).numpy(), jac.numpy(), rtol=1e-10)


# --- kernel dynamics -----------------------------------------------------------------------------


def _kernel_problem(n=12, m=5, seed=0):
    x = _inputs(n + m, 3, seed)
    _, theta = kernels.nngp_ntk(x, None, 2, 2.0, 0.1)
    y = np.random.default_rng(seed + 1).standard_normal((n, 2))
    return theta[:n, :n], theta[n:, :n], torch.as_tensor(y)


def test_kernel_gd_at_infinite_time_is_the_kernel_regression_solve():
    theta, theta_star, y = _kernel_problem()
    lr = 0.9 * kernels.stability_limit(theta)
    dyn = kernels.KernelDynamics(theta, y, lr)
    big = [1e9]
    assert float(dyn.train_loss(big)[0]) < 1e-20
    assert float(dyn.train_residual(big).abs().max()) < 1e-10
    direct = theta_star @ torch.linalg.solve(theta, y)
    np.testing.assert_allclose(dyn.predict(theta_star, big)[0].numpy(), direct.numpy(), rtol=1e-7)
    flow = kernels.KernelDynamics(theta, y, lr, flow=True)
    np.testing.assert_allclose(flow.predict(theta_star, big)[0].numpy(), direct.numpy(), rtol=1e-7)


def test_closed_form_equals_an_explicit_step_loop():
    theta, theta_star, y = _kernel_problem()
    n, lr = len(y), 0.7 * kernels.stability_limit(theta)
    f0_train = torch.randn(n, 2, dtype=torch.float64)
    f0_test = torch.randn(len(theta_star), 2, dtype=torch.float64)
    dyn = kernels.KernelDynamics(theta, y, lr, f0_train=f0_train)
    f, f_star = f0_train.clone(), f0_test.clone()
    steps = np.arange(51)
    train_closed = y[None] + dyn.train_residual(steps)
    test_closed = dyn.predict(theta_star, steps, f0_test)
    losses = dyn.train_loss(steps)
    for t in steps:
        np.testing.assert_allclose(train_closed[t].numpy(), f.numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(test_closed[t].numpy(), f_star.numpy(), rtol=1e-9, atol=1e-11)
        assert float(losses[t]) == pytest.approx(float(((f - y) ** 2).sum() / (2 * n)), rel=1e-9)
        residual = f - y
        f, f_star = f - lr / n * theta @ residual, f_star - lr / n * theta_star @ residual


def test_gradient_flow_is_the_matrix_exponential():
    theta, theta_star, y = _kernel_problem()
    n, lr, t = len(y), 2.0, 13.5
    dyn = kernels.KernelDynamics(theta, y, lr, flow=True)
    decay = expm(-lr * theta.numpy() * t / n)
    np.testing.assert_allclose(dyn.train_residual([t])[0].numpy(), -decay @ y.numpy(), atol=1e-10)
    test = theta_star.numpy() @ np.linalg.solve(theta.numpy(), (np.eye(n) - decay) @ y.numpy())
    np.testing.assert_allclose(dyn.predict(theta_star, [t])[0].numpy(), test, atol=1e-9)


def test_too_large_a_step_is_refused_with_the_limit_named():
    theta, _, y = _kernel_problem()
    limit = kernels.stability_limit(theta)
    with pytest.raises(ValueError, match="stability limit 2N/λ_max"):
        kernels.KernelDynamics(theta, y, 1.01 * limit)


def test_kernel_curves_table_and_steps_to_threshold():
    theta, theta_star, _ = _kernel_problem(n=20, m=8)
    labels = np.arange(20) % 3
    test_labels = np.arange(8) % 3
    lr = 0.5 * kernels.stability_limit(theta)
    table = kernels.kernel_dynamics((theta, theta_star), (labels, test_labels), lr, [0, 10, 10**6])
    assert list(table.columns) == ["step", "split", "loss", "accuracy"]
    first = table[table.step == 0].set_index("split")
    assert first.loc["train", "loss"] == pytest.approx(0.5)  # one-hot, f0 = 0
    assert table[(table.step == 10**6) & (table.split == "train")].accuracy.item() == 1.0
    dyn = kernels.KernelDynamics(theta, torch.eye(3, dtype=torch.float64)[labels], lr)
    hit = dyn.steps_to_threshold(0.05, 10**6)
    assert float(dyn.train_loss([hit])[0]) <= 0.05 < float(dyn.train_loss([hit - 1])[0])
    assert kernels.steps_to_threshold([3.0, 2.0, 0.5, 0.1], 0.5) == 2.0
    assert math.isnan(kernels.steps_to_threshold([3.0, 2.0], 0.5))


def test_gp_sample_has_the_kernel_as_covariance():
    _, theta, _ = kernels.nngp_ntk(_inputs(4, 3), None, 1, 2.0, 0.1, return_layers=True)
    draws = kernels.gp_sample(theta, 20000, seed=0)
    np.testing.assert_allclose(np.cov(draws.numpy()), theta.numpy(), atol=0.08 * float(theta.max()))


# --- finite networks -----------------------------------------------------------------------------


def test_a_wide_network_trains_like_its_kernel():
    x = _inputs(24, 4, 5)
    labels = np.arange(24) % 2
    x_train, y_train, x_test, y_test = x[:16], labels[:16], x[16:], labels[16:]
    _, theta = kernels.nngp_ntk(x, None, 1, 2.0, 0.0)
    lr = 0.5 * kernels.stability_limit(theta[:16, :16])
    steps = 60
    kernel = kernels.kernel_dynamics(
        (theta[:16, :16], theta[16:, :16]), (y_train, y_test), lr, [steps]
    )
    task = Task(x_train, y_train, x_test, y_test)
    run = networks.train_finite(task, [8192], Init(dtype=torch.float64), GD(lr, steps))
    assert run.train_loss[0] == pytest.approx(0.5)  # centred: every variant starts at f = 0
    kernel_loss = kernel.set_index("split").loc["train", "loss"]
    assert run.train_loss[-1] == pytest.approx(kernel_loss, rel=0.1)
    assert run.summary["kernel_change"] < 0.05  # lazy


def test_a_bottleneck_moves_its_kernel_more_than_a_wide_network():
    x = _inputs(40, 6, 6)
    y = np.random.default_rng(7).standard_normal((40, 1)) * 3
    task, gd = Task(x[:30], y[:30], x[30:], y[30:]), GD(0.05, 100, kernel_steps=(0, 100))
    wide = networks.train_finite(task, [512, 512, 512], Init(), gd, linear_layers=(1,))
    narrow = networks.train_finite(task, [512, 1, 512], Init(), gd, linear_layers=(1,))
    assert narrow.summary["kernel_change"] > 3 * wide.summary["kernel_change"]
    assert narrow.summary["cka_init_trained"] < wide.summary["cka_init_trained"]


def test_run_study_returns_tidy_tables():
    x = _inputs(50, 5, 8)
    labels = np.arange(50) % 3
    plan = measure.StudyPlan([32], [2], 3, 20, [0, 1], limit_decoder_width=16, curve_points=5)
    tables = measure.run_study(Task(x[:30], labels[:30], x[30:], labels[30:]), plan)
    assert set(tables) == {"curves", "kernel", "summary"}
    assert list(tables["curves"].columns) == CURVE_COLUMNS
    assert list(tables["summary"].columns) == SUMMARY_COLUMNS
    summary = tables["summary"]
    assert sorted(summary.variant.unique()) == ["bottleneck", "finite", "limit", "ntk"]
    assert len(summary) == 2 * (1 + 3 * 2)  # both step rules
    assert set(summary.step_rule) == {"common", "own"}
    ntk = summary[summary.variant == "ntk"].iloc[0]
    assert ntk.kernel_change == 0.0 and ntk.cka_init_trained == 1.0
    assert summary.width.dtype == "Int64" and summary.k.dtype == "Int64"


def test_the_bottleneck_limit_is_the_wide_encoder_limit_of_finite_nets():
    """Same decoder weights and the same z₀ (the finite encoder's outputs): replacing the
    encoder by its kernel (lazy, exact at infinite width) must reproduce a very wide encoder and
    not a narrow one."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 5))
    y = torch.as_tensor(rng.standard_normal((40, 2)))
    x_all = torch.as_tensor(x)
    _, theta = kernels.nngp_ntk(x[:30], None, 3, 2.0, 0.0, linear_layers=(1,))
    lr = 0.1 * kernels.stability_limit(theta)
    _, theta_g = kernels.nngp_ntk(x_all, None, 1, 2.0, 0.0)  # the encoder: one wide hidden layer
    gd = GD(lr, 30, record_steps=(0, 30), kernel_steps=(), raise_on_divergence=True)
    targets = networks.Targets(y[:30], y[30:], None, None)
    errors = {}
    for width in (8, 16384):
        per_seed = []
        for seed in range(2):
            net = ntk_mlp(5, [width, 2, 64], 2, 2.0, 0.0, seed, torch.float64, linear_layers=(1,))
            decoder = ntk_mlp(2, [64], 2, 2.0, 0.0, 0, torch.float64)
            with torch.no_grad():
                _, _, pre = net.linear_io(x_all)
                decoder.linears[0].weight.copy_(net.linears[2].weight)
                decoder.linears[1].weight.copy_(net.linears[3].weight)
            limit = networks._LimitSystem(decoder, pre[1].detach(), theta_g, 30, 30)
            finite = networks._FiniteSystem(net, x_all[:30], x_all[30:], 1, 30)
            a = networks.train(limit, targets, gd, "limit")
            b = networks.train(finite, targets, gd, "finite")
            per_seed.append(np.max(np.abs(a.train_loss - b.train_loss) / b.train_loss))
            assert limit.z.sub(pre[1]).norm() > 0.02 * pre[1].norm()  # z really moves
        errors[width] = np.mean(per_seed)
    assert errors[16384] < 3e-3, errors
    assert errors[8] > 3 * errors[16384], errors


# --- representation metrics ----------------------------------------------------------------------


def test_linear_cka_invariances_and_alignment():
    rng = np.random.default_rng(9)
    a = rng.standard_normal((30, 5))
    rotation, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    assert cka(a, 3.0 * a @ rotation + 2.0, "linear") == pytest.approx(1.0)
    assert cka(a, rng.standard_normal((30, 5)), "linear") < 0.5
    labels = np.arange(30) % 3
    onehot = np.eye(3)[labels]
    assert kernels.target_alignment(onehot @ onehot.T, labels) == pytest.approx(1.0)
    assert kernels.relative_change(np.eye(2), 2 * np.eye(2)) == pytest.approx(1.0)


# --- deep linear theory --------------------------------------------------------------------------


def test_reduced_model_is_the_limit_of_wide_deep_linear_networks():
    x, y = linear.ill_conditioned_task(64, 6, 10.0, "top", 2.0, seed=0)
    steps, record, d = 60, range(0, 61, 10), 4
    eta_a, eta_b = linear.linear_lrs(0.2, d, 6, 2, 2)
    errors = []
    for width in (128, 2048):
        per_seed = []
        for seed in range(3):
            net = linear.LinearNet(width, d, 2, 2)
            sim = linear.simulate_linear_net(x, y, net, 0.2, steps, seed, record)
            red = linear.reduced_linear(x, y, sim["a0"], sim["b0"], eta_a, eta_b, steps, record)
            gap = torch.linalg.norm(sim["product"] - red["product"], dim=(1, 2)).max()
            per_seed.append(float(gap / torch.linalg.norm(red["product"], dim=(1, 2)).max()))
        errors.append(np.mean(per_seed))
    # METHODS: 4.1e-3 at n = 4096; the gap falls like 1/√n
    assert errors[1] < 0.5 * errors[0], errors
    assert errors[1] < 0.03, errors


def test_linear_regression_closed_form_equals_gd():
    x, y = linear.ill_conditioned_task(40, 5, 10.0, "low", 1.0, seed=1)
    m0 = np.random.default_rng(2).standard_normal((1, 5))
    eta = 0.3
    closed = linear.linear_regression_gd(x, y, m0, eta, 30)
    # a two-factor model with a frozen identity factor is plain GD on M
    red = linear.reduced_linear(x, y, m0, np.eye(5), eta, 0.0, 30)
    np.testing.assert_allclose(closed, red["loss"], rtol=1e-9)


def test_scalar_closed_form_ode_matches_the_two_factor_flow():
    a0, b0, s = 0.3, -0.2, 3.0
    eta_a, eta_b, horizon = 0.8, 0.5, 2.0
    c = a0**2 / eta_a - b0**2 / eta_b

    def factors(_, ab):
        a, b = ab
        residual = s - a * b
        return [eta_a * b * residual, eta_b * a * residual]

    tol = dict(rtol=1e-10, atol=1e-12)
    ab = solve_ivp(factors, (0, horizon), [a0, b0], dense_output=True, **tol)
    w = solve_ivp(
        lambda _, w: linear.scalar_bottleneck_rhs(w, s, eta_a, eta_b, c),
        (0, horizon),
        [a0 * b0],
        dense_output=True,
        **tol,
    )
    times = np.linspace(0, horizon, 9)
    a_t, b_t = ab.sol(times)
    np.testing.assert_allclose(w.sol(times)[0], a_t * b_t, rtol=1e-6, atol=1e-8)
    # and the discrete reduced model with small steps approaches the flow
    eps = 1e-3
    red = linear.reduced_linear(
        [[1.0]],
        [[s]],
        [[a0]],
        [[b0]],
        eps * eta_a,
        eps * eta_b,
        int(horizon / eps),
        [int(horizon / eps)],
    )
    assert float(red["product"][-1, 0, 0]) == pytest.approx(w.sol(horizon)[0], rel=1e-2)
    # without a bottleneck: exponential approach at rate η_A + η_B
    lazy = solve_ivp(lambda _, w: linear.scalar_ntk_rhs(w, s, eta_a, eta_b), (0, 1.0), [0.0], **tol)
    assert lazy.y[0, -1] == pytest.approx(s * (1 - math.exp(-(eta_a + eta_b))), rel=1e-7)


def test_linear_study_tables():
    settings = LinearSettings(bottlenecks=[1], width=64, steps=50, n=32, dim=4, curve_points=5)
    tables = linear.run_linear_study(settings)
    summary = tables["linear_summary"]
    assert set(summary.variant) == {"ntk", "reduced", "simulated"}
    assert set(summary.target) == {"top", "low"}
    assert summary[summary.variant == "simulated"].max_rel_error.notna().all()


def test_every_figure_draws_from_the_tables(tmp_path):
    from widthlab.bottleneck import figures as plots
    from widthlab.plots import save

    x = _inputs(40, 5, 10)
    labels = np.arange(40) % 3
    plan = measure.StudyPlan(
        [16, 32], [1, 4], 3, 10, [0], curve_points=4, kernel_subset=10, limit_decoder_width=8
    )
    tables = measure.run_study(Task(x[:25], labels[:25], x[25:], labels[25:]), plan)
    small = LinearSettings(bottlenecks=[1], width=16, steps=10, n=16, dim=3, curve_points=4)
    tables.update(linear.run_linear_study(small))
    for name, draw in {**plots.FIGURES, **plots.LINEAR_FIGURES}.items():
        path = save(draw(tables), str(tmp_path / f"{name}.png"))
        assert (tmp_path / f"{name}.png").stat().st_size > 1000, path


# --- every output pair of the empirical NTK, and each network's own stability limit --------------


def _slow_full_ntk(model, x):
    """Θ_(c,i),(c',j) = ⟨∂f_c(x_i)/∂θ, ∂f_c'(x_j)/∂θ⟩ from the whole Jacobian (test reference)."""
    from torch.func import functional_call, jacrev

    params = {name: p.detach() for name, p in model.named_parameters()}
    jac = jacrev(lambda p: functional_call(model, p, (x,)))(params)  # name → N × C × shape
    flat = torch.cat([j.reshape(len(x), j.shape[1], -1) for j in jac.values()], dim=2)
    flat = flat.transpose(0, 1).reshape(-1, flat.shape[2])  # output-major rows (c, i)
    return (flat @ flat.T).double()


def test_the_full_empirical_ntk_is_the_jacobian_outer_product():
    x = torch.as_tensor(_inputs(6, 5, 12))
    net = ntk_mlp(5, [7, 2, 9], 3, 2.0, 0.3, seed=2, dtype=torch.float64, linear_layers=(1,))
    full = networks.mlp_empirical_ntk(net, x, full=True)
    np.testing.assert_allclose(full.numpy(), _slow_full_ntk(net, x).numpy(), rtol=1e-10)
    # a k = 2 bottleneck: the cross-output blocks do not vanish, the averaged kernel is their
    # diagonal blocks' mean
    blocks = full.reshape(3, 6, 3, 6)
    assert float(blocks[0, :, 1].abs().max()) > 1e-3 * float(blocks[0, :, 0].abs().max())
    averaged = torch.stack([blocks[c, :, c] for c in range(3)]).mean(0)
    np.testing.assert_allclose(networks.mlp_empirical_ntk(net, x).numpy(), averaged.numpy())


def test_a_linear_model_has_the_closed_form_stability_limit_and_diverges_just_above_it():
    """No hidden layer: f = σ_w W x / √d is linear in W, its NTK is σ_w² x·x′/d for every
    output (no cross terms): the limit is 2N d / (σ_w² λ_max(X Xᵀ)), and GD on the residual is
    exactly r ← (I − ηΘ/N) r."""
    x = _inputs(10, 4, 13)
    y = np.random.default_rng(14).standard_normal((10, 2))
    task = Task(x[:8], y[:8], x[8:], y[8:])
    init = Init(seed=0, sigma_w2=1.5, dtype=torch.float64)
    system = networks.finite_system(task, [], init, layer=0)
    xtr = x[:8]
    closed = 2 * 8 * 4 / (1.5 * np.linalg.eigvalsh(xtr @ xtr.T)[-1])
    assert networks.own_stability_limit(system) == pytest.approx(closed, rel=1e-10)
    below = networks.train_finite(task, [], init, GD(0.98 * closed, 400), layer=0)
    above = networks.train_finite(task, [], init, GD(1.02 * closed, 400), layer=0)
    assert np.isnan(below.summary["diverged_at"]) and below.train_loss[-1] < below.train_loss[0]
    assert not np.isnan(above.summary["diverged_at"])


@pytest.mark.parametrize("variant", ["finite", "limit"])
def test_the_full_kernel_is_what_one_small_gd_step_moves_the_outputs_by(variant):
    """First order in η: f(θ − η∇L) − f(θ) = −(η/N) Θ r with r = f − y over all training
    points and outputs — the kernel whose λ_max sets each network's own stability limit."""
    x = _inputs(14, 5, 15)
    y = np.random.default_rng(16).standard_normal((14, 3))
    task = Task(x[:10], y[:10], x[10:], y[10:])
    init = Init(seed=1, dtype=torch.float64)
    if variant == "finite":
        system = networks.finite_system(task, [16, 2, 16], init, linear_layers=(1,))
    else:
        system = networks.limit_system(task, 3, 2, 16, init)
    theta = system.full_ntk()
    targets = networks.Targets.of(task, init)
    eta = 1e-6
    system.start(eta)
    before = system.train_out()
    residual = before.detach() - targets.train
    system.step(0.5 * ((before - targets.train) ** 2).sum(1).mean())
    with torch.no_grad():
        moved = (system.train_out() - before.detach()).T.reshape(-1)  # output-major
    predicted = -(eta / 10) * theta @ residual.T.reshape(-1).double()
    np.testing.assert_allclose(moved.numpy(), predicted.numpy(), rtol=2e-4, atol=1e-12)


# --- the stage: job settings, tasks, parts -------------------------------------------------------


SECTION = {
    "dataset": "digits",
    "n_train": 30,
    "n_test": 12,
    "depth": 3,
    "sigma_w2": 2.0,
    "sigma_b2": 0.0,
    "lr": None,
    "lr_fraction": 0.5,
    "steps": 12,
    "threshold_fraction": 0.2,
    "widths": [16, 32],
    "finite_max_width": 16,
    "bottlenecks": [1, 3],
    "limit_decoder_width": 8,
    "seeds": [0, 1],
    "kernel_subset": 10,
    "curve_points": 4,
    "regimes": {
        "classes": {"target": "onehot"},
        "low": {"target": "pc", "component": 3, "steps": 9},
    },
    "linear": {"enabled": True, "width": 8},
}


def test_job_settings_hold_only_what_each_part_depends_on():
    assert jobs.job_names(SECTION, "classes") == ["ntk", "w16", "w32", "limit"]
    ntk = jobs.job_settings(SECTION, "classes", "ntk")
    assert "width" not in ntk and "bottlenecks" not in ntk and "decoder_width" not in ntk
    assert ntk["target"] == "onehot" and ntk["component"] == 0 and ntk["regime"] == "classes"
    # another width or k list leaves the NTK job (and the other widths) untouched
    other = {**SECTION, "widths": [16, 64], "bottlenecks": [2]}
    assert jobs.job_settings(other, "classes", "ntk") == ntk
    assert jobs.job_settings(other, "classes", "w16")["width"] == 16
    w16, w32 = (jobs.job_settings(SECTION, "classes", j) for j in ("w16", "w32"))
    assert w16["finite"] and not w32["finite"]  # finite_max_width = 16
    assert jobs.job_settings(SECTION, "classes", "limit")["decoder_width"] == 8
    low = jobs.job_settings(SECTION, "low", "w16")
    assert (low["steps"], low["component"], low["target"]) == (9, 3, "pc")  # regime overrides
    settings = JobSettings.from_dict(low, "w16")
    assert settings.variants == ("finite", "bottleneck") and settings.bottlenecks == (1, 3)
    with pytest.raises(KeyError, match="no regime 'nope'"):
        jobs.job_settings(SECTION, "nope", "ntk")
    with pytest.raises(ValueError, match="unknown bottleneck job 'w1x'"):
        jobs.job_settings(SECTION, "classes", "w1x")
    assert jobs.job_names({**SECTION, "limit_decoder_width": 0}, "low") == ["ntk", "w16", "w32"]


def _job(**changes) -> JobSettings:
    return JobSettings(job="ntk", regime="r", n_train=20, n_test=5, **changes)


def test_prepare_task_targets_and_bad_sizes():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 1, 2, 3)) * np.arange(1, 7).reshape(1, 1, 2, 3)
    labels = np.arange(40) % 4
    arrays = (x[:30], labels[:30], x[30:], labels[30:])
    task = measure.prepare_task(arrays, _job(target="pc", component=0))
    xtr, ytr = task.x_train, task.y_train
    assert xtr.shape == (20, 6) and task.x_test.shape == (5, 6)
    # the top principal component of the kept inputs, standardised on the training split
    centred = xtr - xtr.mean(0)
    top = np.linalg.svd(centred, full_matrices=False)[2][0]
    proj = centred @ top
    assert abs(np.corrcoef(proj, ytr[:, 0])[0, 1]) == pytest.approx(1.0)
    assert ytr.std() == pytest.approx(1.0)
    np.testing.assert_array_equal(measure.prepare_task(arrays, _job()).y_train, labels[:20])
    with pytest.raises(ValueError, match="n_train=31 is not in 1..30"):
        measure.prepare_task(arrays, JobSettings(job="ntk", regime="r", n_train=31, n_test=5))


def test_the_parts_of_the_study_equal_the_whole_study():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((44, 1, 2, 3)).astype(np.float32)
    labels = np.arange(44) % 3
    arrays = (x[:32], labels[:32], x[32:], labels[32:])
    section = {**SECTION, "widths": [16], "regimes": {"classes": {}}}
    parts = []
    for job in jobs.job_names(section, "classes"):
        settings = JobSettings.from_dict(jobs.job_settings(section, "classes", job), job)
        parts.append(measure.run_job(arrays, settings))
    runs = pd.concat([p["summary"] for p in parts], ignore_index=True)
    task = measure.prepare_task(
        arrays, JobSettings(job="ntk", regime="classes", n_train=30, n_test=12)
    )
    plan = measure.StudyPlan(
        [16],
        [1, 3],
        3,
        12,
        [0, 1],
        lr_fraction=0.5,
        threshold_fraction=0.2,
        kernel_subset=10,
        curve_points=4,
        finite_max_width=16,
        limit_decoder_width=8,
    )
    whole = measure.run_study(task, plan)["summary"]
    assert list(runs.columns) == ["regime", *SUMMARY_COLUMNS]
    keys = ["variant", "width", "k", "seed", "step_rule"]
    got = runs.drop(columns=["regime", "seconds"]).sort_values(keys).reset_index(drop=True)
    want = whole.drop(columns="seconds").sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    # the own step is lr_fraction × each run's own limit; the common one the NTK's for all
    own = want[want.step_rule == "own"]
    np.testing.assert_allclose(own.lr, 0.5 * own.stability_limit)
    common = want[want.step_rule == "common"]
    ntk_limit = common[common.variant == "ntk"].stability_limit.item()
    np.testing.assert_allclose(common.lr, 0.5 * ntk_limit)


def test_first_step_below_and_the_closed_form_beyond_the_horizon():
    losses = 5.0 * 0.9 ** np.arange(400)
    assert kernels.first_step_below(lambda t: losses[t], 0.3, 399) == float(
        np.argmax(losses <= 0.3)
    )
    assert math.isnan(kernels.first_step_below(lambda t: losses[t], 1e-30, 399))
    x, y = linear.ill_conditioned_task(30, 4, 50.0, "low", 1.0, seed=2)
    m0 = np.random.default_rng([2, 1]).standard_normal((1, 4)) / 2  # as run_linear_study
    every = linear.linear_regression_gd(x, y, m0, 0.05, 40000)
    at = linear.linear_regression_gd(x, y, m0, 0.05, 0, at=[7, 3999])
    np.testing.assert_allclose(at, every[[7, 3999]], rtol=1e-10, atol=1e-15)
    threshold = 1e-3 * 0.5 * float((y**2).mean())
    brute = float(np.argmax(every <= threshold))
    assert 20 < brute < 39999  # far beyond the 20 simulated steps below
    # η_NTK = lr · (2 + 2 layers) / d₀ = lr
    settings = LinearSettings(
        bottlenecks=[1],
        width=8,
        steps=20,
        n=30,
        dim=4,
        condition=50.0,
        targets=["low"],
        lr=0.05,
        seeds=[2],
        simulate=False,
        threshold_fraction=1e-3,
    )
    ntk = linear.run_linear_study(settings)["linear_summary"].set_index("variant").loc["ntk"]
    assert ntk.steps_to_threshold == brute


def test_figures_of_one_regime_from_the_tagged_tables():
    from widthlab.bottleneck import figures as plots

    x = _inputs(30, 4, 11)
    labels = np.arange(30) % 2
    task = Task(x[:20], labels[:20], x[20:], labels[20:])
    plan = measure.StudyPlan([8], [2], 3, 5, [0], curve_points=3, kernel_subset=8)
    parts = [measure.tag_regime(measure.run_study(task, plan), r) for r in ("a", "b")]
    tagged = {name: pd.concat([p[name] for p in parts]) for name in ("curves", "kernel", "summary")}
    drawers = plots.figures_of_regime(tagged, "b")
    assert set(drawers) == set(plots.FIGURES)
    fig = drawers["steps_to_threshold"]()
    assert fig._suptitle.get_text().startswith("[b]")
    assert len(fig.axes) == 2  # both step rules
    with pytest.raises(ValueError, match="no rows of regime 'c'"):
        plots.figures_of_regime(tagged, "c")
