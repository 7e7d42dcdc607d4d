"""The study of one job: the exact NTK limit vs finite nets with and without a bottleneck and the
bottleneck limit, each trained at two step sizes.

Step rules (column ``step_rule``)
    ``common``: every variant at the same step, ``lr`` or ``lr_fraction × 2N/λ_max(Θ_NTK)`` (the
    NTK's stability limit). ``own``: every variant at the same *fraction* ``lr_fraction`` of its
    own stability limit ``2N/λ_max(Θ_0)``, ``Θ_0`` its empirical NTK at init
    (:func:`~widthlab.bottleneck.networks.own_stability_limit`; for the NTK the analytic kernel,
    so its ``own`` run is the ``common`` one whenever ``lr`` is null). A network whose kernel
    at init is larger than the NTK's cannot take the NTK's step; the ``own`` rule compares
    every variant at the same distance from its own edge of stability. ``stability_limit`` holds
    each run's own limit.

:func:`run_study` runs the variants of a :class:`StudyPlan` on a :class:`Task` and returns tidy
tables; :func:`run_job` is one job of the stage (from :class:`~.settings.JobSettings`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from widthlab.bottleneck.kernels import (
    CLOSED_FORM_HORIZON,
    KernelDynamics,
    _targets,
    gp_sample,
    kernel_dynamics,
    log_steps,
    nngp_ntk,
    steps_to_threshold,
    target_alignment,
)
from widthlab.bottleneck.networks import (
    GD,
    Init,
    Targets,
    Task,
    finite_system,
    limit_system,
    own_stability_limit,
    train,
)
from widthlab.bottleneck.settings import (
    CURVE_COLUMNS,
    KERNEL_COLUMNS,
    STEP_RULES,
    SUMMARY_COLUMNS,
    VARIANTS,
    JobSettings,
)
from widthlab.sizes import bottleneck_index, hidden_widths


@dataclass(frozen=True)
class StudyPlan:
    """What :func:`run_study` runs. Variants: ``ntk`` (exact infinite width, no bottleneck;
    ``ntk_init="mean"``: the mean prediction f_0 = 0, one seed-free row; ``"sample"``: f_0 a GP
    sample per seed), ``finite`` (every hidden layer ``width`` wide; only with
    ``finite_no_bottleneck`` and up to ``finite_max_width``), ``bottleneck`` (layer
    ``depth // 2`` has ``k`` units) and, with ``limit_decoder_width``, ``limit`` (infinitely
    wide encoder, decoder of that width, reported as its width). ``linear_bottleneck``: layer
    ``depth // 2`` has no activation in every variant (Littwin et al.'s F = f∘g, g's k outputs
    feed f directly), so the NTK is the k → ∞ limit of the same architecture. ``threshold``
    (absolute) defaults to ``threshold_fraction`` × the loss at f = 0."""

    widths: Sequence[int]
    bottlenecks: Sequence[int]
    depth: int
    steps: int
    seeds: Sequence[int]
    lr: float | None = None
    lr_fraction: float = 0.25
    threshold: float | None = None
    threshold_fraction: float = 0.05
    sigma_w2: float = 2.0
    sigma_b2: float = 0.0
    center: bool = True
    ntk_init: str = "mean"
    linear_bottleneck: bool = True
    finite_no_bottleneck: bool = True
    finite_max_width: int | None = None
    limit_decoder_width: int | None = None
    kernel_subset: int = 256
    curve_points: int = 40
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    variants: Sequence[str] = VARIANTS
    step_rules: Sequence[str] = STEP_RULES


@dataclass(frozen=True)
class _Study:
    """What every run of one study shares."""

    task: Task
    plan: StudyPlan
    lr: float  # the common step
    ntk_limit: float
    threshold: float
    gd: GD  # the common run's GD settings
    log: Callable[[str], None]

    @property
    def linear_layers(self) -> tuple[int, ...]:
        depth = self.plan.depth
        return (bottleneck_index(depth),) if self.plan.linear_bottleneck and depth else ()


def _tidy(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    df = df.reindex(columns=columns)
    for col in ("width", "k"):
        if col in df:
            df[col] = df[col].astype("Int64")
    if "seed" in df:
        df["seed"] = df["seed"].astype("int64")
    return df.reset_index(drop=True)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def make_targets(task: Task, target: str = "onehot", component: int = 0, scale: float = 1.0):
    """Targets derived from a labelled task: ``(y_train, y_test)``.

    * ``onehot``: the int labels themselves (labels stay labels, so accuracy is defined);
      ``scale`` must be 1.
    * ``pc``: regression on the training inputs' principal component ``component`` (0 = largest
      variance), standardised on the training split and times ``scale`` (N × 1 floats). A low-
      variance component is slow for the NTK, which learns input directions at rates set by
      their variance; a bottleneck can learn that one direction as its feature.
    """
    if target == "onehot":
        if scale != 1.0:
            raise ValueError("target 'onehot' keeps int labels; use scale 1")
        return np.asarray(task.y_train), np.asarray(task.y_test)
    if target != "pc":
        raise ValueError(f"unknown target {target!r}; choose 'onehot' or 'pc'")
    xtr = np.asarray(task.x_train, dtype=np.float64).reshape(len(task.x_train), -1)
    xte = np.asarray(task.x_test, dtype=np.float64).reshape(len(task.x_test), -1)
    mean = xtr.mean(0)
    _, _, vt = np.linalg.svd(xtr - mean, full_matrices=False)
    if not 0 <= component < len(vt):
        raise ValueError(f"component {component} out of range 0..{len(vt) - 1}")
    direction = vt[component] * np.sign(vt[component].sum() or 1.0)
    p_tr, p_te = (xtr - mean) @ direction, (xte - mean) @ direction
    std = p_tr.std()
    return scale * p_tr[:, None] / std, scale * p_te[:, None] / std


def prepare_task(arrays: Sequence, settings: JobSettings) -> Task:
    """The first ``n_train`` training and ``n_test`` test examples of ``(x_train, y_train,
    x_test, y_test)`` (flattened float64) with the regime's targets (:func:`make_targets`; the
    principal components come from the kept training inputs)."""
    x_train, y_train, x_test, y_test = arrays
    n_train, n_test = settings.n_train, settings.n_test
    for name, n, have in (("n_train", n_train, len(x_train)), ("n_test", n_test, len(x_test))):
        if not 1 <= n <= have:
            raise ValueError(f"{name}={n} is not in 1..{have} (examples in that split)")
    xtr = np.asarray(x_train, dtype=np.float64).reshape(len(x_train), -1)[:n_train]
    xte = np.asarray(x_test, dtype=np.float64).reshape(len(x_test), -1)[:n_test]
    raw = Task(xtr, np.asarray(y_train)[:n_train], xte, np.asarray(y_test)[:n_test])
    ytr, yte = make_targets(raw, settings.target, settings.component, settings.scale)
    return Task(xtr, ytr, xte, yte)


def tag_regime(tables: dict[str, pd.DataFrame], regime: str) -> dict[str, pd.DataFrame]:
    """The tables with a leading ``regime`` column."""
    return {name: df.assign(regime=regime)[["regime", *df.columns]] for name, df in tables.items()}


# --------------------------------------------------------------------------------------------
# The exact NTK
# --------------------------------------------------------------------------------------------


def _ntk_runs(study: _Study, kernels, layers) -> list[tuple[dict, pd.DataFrame, pd.DataFrame]]:
    """The NTK's rows (curves, kernel, summary) for each step rule and seed."""
    plan, task = study.plan, study.task
    k_all, theta_all = kernels
    n = len(task.x_train)
    theta_tr, theta_te = theta_all[:n, :n], theta_all[n:, :n]
    num_classes = None
    if not np.issubdtype(np.asarray(task.y_train).dtype, np.floating):
        num_classes = int(max(np.max(task.y_train), np.max(task.y_test))) + 1
    ytr, _ = _targets(np.asarray(task.y_train), num_classes)
    # λ_max on the same examples as the finite nets' empirical NTK
    sub = plan.kernel_subset
    lam_sub = float(torch.linalg.eigvalsh(theta_tr[:sub, :sub])[-1])
    b = bottleneck_index(plan.depth)
    gram_b = layers[b][n:, n:] if plan.depth else None  # bottleneck layer's NNGP on the test set
    align = target_alignment(gram_b, np.asarray(task.y_test)) if gram_b is not None else np.nan
    if plan.ntk_init not in ("mean", "sample"):
        raise ValueError(f"ntk_init must be 'mean' or 'sample', got {plan.ntk_init!r}")
    lrs = {"common": study.lr, "own": plan.lr_fraction * study.ntk_limit}
    out = []
    for rule in plan.step_rules:
        for seed in [0] if plan.ntk_init == "mean" else plan.seeds:
            t0 = time.perf_counter()
            f0 = None if plan.ntk_init == "mean" else gp_sample(k_all, ytr.shape[1], seed=seed)
            f0_tr, f0_te = (None, None) if f0 is None else (f0[:n], f0[n:])
            lr = lrs[rule]
            dyn = KernelDynamics(theta_tr, ytr, lr, f0_train=f0_tr)
            curve = kernel_dynamics(
                (theta_tr, theta_te),
                (task.y_train, task.y_test),
                lr,
                study.gd.record_steps,
                f0=(f0_tr, f0_te),
                num_classes=num_classes,
            )
            kernel = pd.DataFrame({"step": study.gd.kernel_steps}).assign(
                lambda_max=lam_sub, kernel_change=0.0
            )
            last = curve[curve.step == plan.steps].set_index("split")
            summary = {
                "lr": lr,
                "stability_limit": study.ntk_limit,
                # closed form: exact also beyond the simulated steps (see CLOSED_FORM_HORIZON)
                "steps_to_threshold": dyn.steps_to_threshold(
                    study.threshold, CLOSED_FORM_HORIZON * plan.steps
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
            tags = {"variant": "ntk", "width": pd.NA, "k": pd.NA, "seed": seed, "step_rule": rule}
            out.append(({**tags, **summary}, curve.assign(**tags), kernel.assign(**tags)))
    return out


# --------------------------------------------------------------------------------------------
# Finite nets and the bottleneck limit
# --------------------------------------------------------------------------------------------


def _nets(plan: StudyPlan) -> list[tuple]:
    """(variant, width, k, seed) of every network run of the plan."""
    jobs = []
    too_wide = lambda width: plan.finite_max_width and width > plan.finite_max_width  # noqa: E731
    for width in plan.widths:
        if plan.finite_no_bottleneck and not too_wide(width) and "finite" in plan.variants:
            jobs += [("finite", width, None, seed) for seed in plan.seeds]
        if "bottleneck" in plan.variants:
            jobs += [
                ("bottleneck", width, k, seed) for k in plan.bottlenecks for seed in plan.seeds
            ]
    if plan.limit_decoder_width and plan.linear_bottleneck and "limit" in plan.variants:
        width = plan.limit_decoder_width
        jobs += [("limit", width, k, seed) for k in plan.bottlenecks for seed in plan.seeds]
    return jobs


def _system(study: _Study, net: tuple):
    variant, width, k, seed = net
    plan = study.plan
    init = Init(seed, plan.sigma_w2, plan.sigma_b2, plan.dtype, plan.device)
    if variant == "limit":
        return limit_system(study.task, plan.depth, k, width, init, plan.kernel_subset)
    widths = hidden_widths(width, plan.depth, k)
    return finite_system(study.task, widths, init, study.linear_layers, None, plan.kernel_subset)


def _net_runs(study: _Study, net: tuple) -> list[tuple[dict, pd.DataFrame, pd.DataFrame]]:
    """One network trained under each step rule (a fresh copy of the same init each time)."""
    variant, width, k, seed = net
    plan = study.plan
    init = Init(seed, plan.sigma_w2, plan.sigma_b2, plan.dtype, plan.device)
    targets = Targets.of(study.task, init)
    limit = own_stability_limit(_system(study, net))
    lrs = {"common": study.lr, "own": plan.lr_fraction * limit}
    out = []
    for rule in plan.step_rules:
        t0 = time.perf_counter()
        gd = replace(study.gd, lr=lrs[rule])
        name = f"{variant} width={width} k={k} seed={seed} ({rule} step {lrs[rule]:.4g})"
        run = train(_system(study, net), targets, gd, name)
        seconds = time.perf_counter() - t0
        tags = {"variant": variant, "width": width, "k": k, "seed": seed, "step_rule": rule}
        steps = steps_to_threshold(run.train_loss, study.threshold)
        summary = {
            **tags,
            "lr": lrs[rule],
            "stability_limit": limit,
            "steps_to_threshold": steps,
            **run.summary,
            "seconds": seconds,
        }
        out.append((summary, run.curves.assign(**tags), run.kernel.assign(**tags)))
        study.log(
            f"{name}: own limit {limit:.4g}, steps to threshold {steps}, "
            f"test loss {run.summary['final_test_loss']:.4g}, {seconds:.1f}s"
        )
    return out


def run_study(task: Task, plan: StudyPlan, log=None) -> dict[str, pd.DataFrame]:
    """The plan's variants under each step rule (module doc). Returns tidy tables:

    * ``curves``: variant, width, k, seed, step_rule, step, split, loss, accuracy
    * ``kernel``: variant, width, k, seed, step_rule, step, lambda_max, kernel_change
      (empirical NTK on the first ``kernel_subset`` training examples; the NTK's is constant)
    * ``summary``: one row per run (:data:`~.settings.SUMMARY_COLUMNS`)
    """
    unknown = (set(plan.variants) - set(VARIANTS)) | (set(plan.step_rules) - set(STEP_RULES))
    if unknown:
        raise ValueError(
            f"unknown variants or step rules {sorted(unknown)}; choose from {list(VARIANTS)} "
            f"and {list(STEP_RULES)}"
        )
    x_train = np.asarray(task.x_train).reshape(len(task.x_train), -1)
    x_test = np.asarray(task.x_test).reshape(len(task.x_test), -1)
    task = Task(x_train, task.y_train, x_test, task.y_test)
    n = len(x_train)
    b = bottleneck_index(plan.depth)
    linear_layers = (b,) if plan.linear_bottleneck and plan.depth else ()
    k_all, theta_all, layers = nngp_ntk(
        np.concatenate([x_train, x_test]),
        None,
        plan.depth,
        plan.sigma_w2,
        plan.sigma_b2,
        return_layers=True,
        linear_layers=linear_layers,
    )
    lam = float(torch.linalg.eigvalsh(theta_all[:n, :n])[-1])
    ntk_limit = 2 * n / lam
    lr = plan.lr if plan.lr is not None else plan.lr_fraction * ntk_limit
    log = log or (lambda msg: None)
    log(f"NTK λ_max={lam:.4g}, stability limit 2N/λ_max={ntk_limit:.4g}, common lr={lr:.4g}")
    threshold = plan.threshold
    if threshold is None:
        ytr = Targets.of(task, Init(dtype=torch.float64)).train
        threshold = plan.threshold_fraction * float((ytr**2).sum(1).mean() / 2)
    gd = GD(
        lr,
        plan.steps,
        plan.center,
        tuple(log_steps(plan.steps, plan.curve_points)),
        tuple(log_steps(plan.steps, 8)),
        plan.kernel_subset,
    )
    study = _Study(task, plan, lr, ntk_limit, threshold, gd, log)
    runs = _ntk_runs(study, (k_all, theta_all), layers) if "ntk" in plan.variants else []
    for net in _nets(plan):
        runs += _net_runs(study, net)
    summaries = [dict(summary, threshold=threshold, steps=plan.steps) for summary, _, _ in runs]
    return {
        "curves": _tidy(_concat([c for _, c, _ in runs]), CURVE_COLUMNS),
        "kernel": _tidy(_concat([k for _, _, k in runs]), KERNEL_COLUMNS),
        "summary": _tidy(pd.DataFrame(summaries), SUMMARY_COLUMNS),
    }


def run_job(arrays: Sequence, settings: JobSettings, device: str = "cpu", log=None) -> dict:
    """One job of the stage on ``(x_train, y_train, x_test, y_test)``: the tables of
    :func:`run_study` for this job's variants, with a leading ``regime`` column."""
    plan = StudyPlan(
        widths=[settings.width] if settings.width else [],
        bottlenecks=settings.bottlenecks if settings.job != "ntk" else [],
        depth=settings.depth,
        steps=settings.steps,
        seeds=settings.seeds,
        lr=settings.lr,
        lr_fraction=settings.lr_fraction,
        threshold_fraction=settings.threshold_fraction,
        sigma_w2=settings.sigma_w2,
        sigma_b2=settings.sigma_b2,
        finite_no_bottleneck=settings.finite,
        limit_decoder_width=settings.decoder_width,
        kernel_subset=settings.kernel_subset,
        curve_points=settings.curve_points,
        device=device,
        variants=settings.variants,
    )
    tables = run_study(prepare_task(arrays, settings), plan, log)
    return tag_regime(tables, settings.regime)
