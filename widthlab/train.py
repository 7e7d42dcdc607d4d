"""Training one model of the grid: deterministic, checkpointed, resumable, preemption-safe.

:func:`train` holds the whole (subsampled) dataset on the device as tensors and draws batches
by indexing a per-epoch permutation; augmentation runs on the device with a seeded generator.
Per step nothing crosses between host and device: batch losses and correct counts are written
into small device buffers that are read once per epoch (and at checkpoints), where non-finite
losses are detected and located (epoch and step).

Determinism: ``torch.manual_seed(spec.seed)`` before the model is built; shuffling and
augmentation draw from their own generator, seeded from ``spec.seed``; on CPU deterministic
algorithms are switched on while training. A run stopped at any step and resumed from its
checkpoint ends with weights bit-identical (CPU, same thread count) to an uninterrupted run:
the checkpoint holds model, optimizer, generator and RNG states, the epoch's permutation, the
position in it, the epoch's batch statistics so far and the history.

Checkpoints are written atomically every ``checkpoint_every_steps`` steps and at every epoch
end, and when SIGTERM or SIGUSR1 arrives (what SLURM sends before a time limit or preemption):
then the current step finishes, the checkpoint is written and :class:`Preempted` (a
``SystemExit`` with a non-zero code) is raised. The next call of :func:`train` with the same
checkpoint path resumes. The SLURM job id of every run that worked on a model is kept in the
checkpoint and ends up in ``metrics["slurm_job_ids"]``. The checkpoint is deleted once training
has finished.

Per-epoch history: ``train_loss``/``train_acc`` and ``test_loss``/``test_acc`` are evaluated on
the full (subsampled) training set and the test set in eval mode without augmentation (so
``train_acc == 1`` is exactly "zero training error"); ``batch_loss``/``batch_acc`` are the means
over the epoch's training batches (train mode, augmented); ``seconds`` is cumulative training
time over all runs; ``lr`` the rate of the epoch's last step.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from widthlab.grid import ModelSpec, parse_model_id
from widthlab.io import ArtifactError, atomic_path, load_json, read_parquet
from widthlab.models import TappedModel, count_parameters, forward_flops, seeded_model

CHECKPOINT_FORMAT = "widthlab-checkpoint-1"
HISTORY_COLUMNS = [
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "seconds",
    "batch_loss",
    "batch_acc",
]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
# Settings that do not change the trained weights: a checkpoint made under other values of
# these is still resumed (everything else must match, or training starts over).
_RESUME_NEUTRAL = ("device", "checkpoint_every_steps", "eval_batch_size", "compile")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class Preempted(SystemExit):
    """Training stopped by a signal after writing its checkpoint; rerun to resume.

    ``code`` is 128 + the signal number (non-zero), ``str()`` the message with the checkpoint
    path.
    """

    def __init__(self, message: str, signum: int, checkpoint: str | os.PathLike):
        super().__init__(128 + int(signum))
        self.message = message
        self.signum = int(signum)
        self.checkpoint = str(checkpoint)

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------

_CHOICES = {
    "optimizer": ("sgd", "adam"),
    "schedule": ("cosine", "step", "constant"),
    "loss": ("cross_entropy", "square_hinge"),
    "augment": ("none", "crop_flip"),
    "device": ("auto", "cpu", "cuda"),
}


@dataclass
class TrainConfig:
    """How to train (weight decay and seed come from the :class:`ModelSpec`).

    ``optimizer``: ``sgd`` (momentum, optional Nesterov; weight decay as coupled L2) or ``adam``
    (decoupled weight decay, i.e. AdamW). ``schedule`` over ``max_epochs × steps_per_epoch``,
    set per step: ``cosine`` (to 0), ``step`` (× ``step_gamma`` at each fraction of
    ``step_milestones``), ``constant``. ``loss``: ``cross_entropy`` (with ``label_smoothing``)
    or ``square_hinge`` (one-vs-all on ±1 targets). ``until_zero_train_error``: stop after the
    first epoch (≥ ``min_epochs``) that ends with zero training error, at most ``max_epochs``.
    ``checkpoint_every_steps``: 0 = only at epoch ends. ``augment="crop_flip"``: random crop
    with zero padding 4 and horizontal flip, on the device (images ≥ 28 px only). ``bf16``:
    autocast on CUDA (ignored on CPU). ``compile``: ``torch.compile`` the model.
    ``arch_kwargs``: extra keywords of :func:`widthlab.models.build_model`.
    """

    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "cosine"
    step_milestones: tuple[float, ...] = (0.5, 0.75)
    step_gamma: float = 0.1
    batch_size: int = 128
    loss: str = "cross_entropy"
    max_epochs: int = 150
    min_epochs: int = 1
    until_zero_train_error: bool = True
    checkpoint_every_steps: int = 200
    augment: str = "none"
    device: str = "auto"
    bf16: bool = True
    label_smoothing: float = 0.0
    eval_batch_size: int = 1024
    compile: bool = False
    arch_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"train.{name} must be one of {choices}, got {value!r}")
        self.step_milestones = tuple(float(m) for m in self.step_milestones)
        problems = []
        if not self.lr > 0:
            problems.append(f"train.lr must be positive, got {self.lr}")
        if not 0 <= self.momentum <= 1:
            problems.append(f"train.momentum must be in [0, 1], got {self.momentum}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            problems.append("train.nesterov needs optimizer sgd with momentum > 0")
        if any(not 0 < m < 1 for m in self.step_milestones) or list(self.step_milestones) != sorted(
            self.step_milestones
        ):
            problems.append(
                f"train.step_milestones must be increasing fractions in (0, 1), "
                f"got {list(self.step_milestones)}"
            )
        for name in ("batch_size", "max_epochs", "min_epochs", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"train.{name} must be a positive integer, got {value!r}")
        if self.min_epochs > self.max_epochs:
            problems.append(
                f"train.min_epochs ({self.min_epochs}) exceeds max_epochs ({self.max_epochs})"
            )
        if self.checkpoint_every_steps < 0:
            problems.append(
                f"train.checkpoint_every_steps must be ≥ 0, got {self.checkpoint_every_steps}"
            )
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"train.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.label_smoothing and self.loss != "cross_entropy":
            problems.append("train.label_smoothing only applies to loss cross_entropy")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> TrainConfig:
        """A config from a (config-file) mapping; unknown keys are an error that names them."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ValueError(f"unknown train settings {unknown}; known settings: {known}")
        return cls(**dict(settings))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["step_milestones"] = list(self.step_milestones)
        return out


def resolve_device(device: str) -> torch.device:
    """``auto`` → cuda if available else cpu; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("train.device 'cuda' was asked for, but torch sees no CUDA device")
    return torch.device(device)


# --------------------------------------------------------------------------------------------
# Pieces: losses, schedule, batches, augmentation
# --------------------------------------------------------------------------------------------


def square_hinge_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One-vs-all squared hinge: mean over examples and classes of max(0, 1 − y·f)², y = ±1."""
    signs = 2.0 * F.one_hot(targets, logits.shape[1]).to(logits.dtype) - 1.0
    return F.relu(1.0 - signs * logits).square().mean()


def loss_function(cfg: TrainConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if cfg.loss == "square_hinge":
        return square_hinge_loss

    def cross_entropy(logits, targets):
        return F.cross_entropy(logits, targets, label_smoothing=cfg.label_smoothing)

    return cross_entropy


def lr_at(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate of step ``step`` (0-based) of ``total_steps``."""
    progress = min(step / max(total_steps, 1), 1.0)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.schedule == "step":
        passed = sum(progress >= m for m in cfg.step_milestones)
        return cfg.lr * cfg.step_gamma**passed
    return cfg.lr


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, end) of each batch of an epoch; a last batch of one example joins the previous
    one (BatchNorm cannot normalise a single example)."""
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip of a batch, on its device."""
    b, _, h, w = x.shape
    device = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    shift_y = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=device)
    shift_x = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=device)
    flip = torch.randint(0, 2, (b,), generator=generator, device=device).bool()
    rows = shift_y[:, None] + torch.arange(h, device=device)
    cols = shift_x[:, None] + torch.arange(w, device=device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # B × H × W × C
    return out.permute(0, 3, 1, 2).contiguous()


def _generator_seed(seed: int) -> int:
    """The shuffling/augmentation stream of ``seed``, independent of the init stream."""
    return int(np.random.SeedSequence([int(seed), 1]).generate_state(1, np.uint64)[0])


# --------------------------------------------------------------------------------------------
# Contexts: determinism and stop signals
# --------------------------------------------------------------------------------------------


def _set_deterministic(mode: bool, warn_only: bool, compiled: bool) -> None:
    # torch.use_deterministic_algorithms imports torch._inductor (≈ 4 s per process, i.e. per
    # train job) only to set inductor's flag; set the eager flag directly unless compiling.
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if compiled or setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        setter(mode, warn_only=warn_only)


@contextlib.contextmanager
def _deterministic(device: torch.device, compiled: bool = False) -> Iterator[None]:
    if device.type == "cpu":
        previous = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        _set_deterministic(True, True, compiled)
        try:
            yield
        finally:
            _set_deterministic(previous[0], previous[1], compiled)
    else:
        previous = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = previous


class _StopFlag:
    signum: int | None = None


@contextlib.contextmanager
def _stop_on_signals(signals: Iterable[int] = STOP_SIGNALS) -> Iterator[_StopFlag]:
    """Handlers that only record the signal; the previous handlers come back afterwards.

    Outside the main thread (where Python cannot install handlers) nothing is installed.
    """
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        flag.signum = signum

    previous = {}
    try:
        for signum in signals:
            previous[signum] = signal.signal(signum, handler)
        yield flag
    finally:
        for signum, old in previous.items():
            signal.signal(signum, signal.SIG_DFL if old is None else old)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def _resume_settings(cfg: TrainConfig) -> dict[str, Any]:
    settings = cfg.to_dict()
    for key in _RESUME_NEUTRAL:
        settings.pop(key, None)
    return settings


def _write_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A training checkpoint; :class:`ArtifactError` naming the file if it is unreadable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, foreign pickle, …
        raise ArtifactError(
            f"{path}: not a readable training checkpoint ({type(error).__name__}: {error}); "
            "delete it to train this model from the start"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ArtifactError(
            f"{path}: not a widthlab training checkpoint ({CHECKPOINT_FORMAT}); "
            "delete it to train this model from the start"
        )
    return state


def _incompatibility(state: dict, spec: ModelSpec, cfg: TrainConfig, n: int, device) -> str:
    """Why a checkpoint cannot be resumed here ('' if it can)."""
    if state["model_id"] != spec.id:
        return f"it belongs to model {state['model_id']}"
    if state["train_size"] != n:
        return f"it was trained on {state['train_size']} examples, not {n}"
    if state["device_type"] != device.type:
        return f"it was made on {state['device_type']}, this run is on {device.type}"
    ours, theirs = _resume_settings(cfg), state["settings"]
    changed = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    if changed:
        return f"the train settings {changed} changed since"
    return ""


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


class TrainResult(NamedTuple):
    model: TappedModel
    history: pd.DataFrame
    metrics: dict[str, Any]


def _to_device(array, device, dtype) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array)).to(device=device, dtype=dtype)


def train(
    spec: ModelSpec,
    dataset,
    cfg: TrainConfig | Mapping[str, Any],
    checkpoint_path: str | os.PathLike | None = None,
    log: Callable[[str], Any] = print,
    on_step: Callable[[int, int], Any] | None = None,
) -> TrainResult:
    """Train the model ``spec`` on ``dataset`` (first ``spec.train_size`` training examples).

    Resumes from ``checkpoint_path`` when that file exists (and was made for this model and
    these settings; otherwise starts over and replaces it). ``log`` receives one line per epoch.
    ``on_step(epoch, step)`` is called after every optimizer step (1-based epoch, steps done).
    Raises :class:`NonFiniteLossError` and, on SIGTERM / SIGUSR1, :class:`Preempted`.
    """
    cfg = cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg)
    device = resolve_device(cfg.device)
    mid = spec.id
    if spec.train_size is not None:
        available = len(dataset.y_train)
        if spec.train_size > available:
            raise ValueError(
                f"model {mid}: train_size {spec.train_size} exceeds the {available} training "
                "examples of the dataset"
            )
        dataset = dataset.subsample(spec.train_size)
    x_train = _to_device(dataset.x_train, device, torch.float32)
    y_train = _to_device(dataset.y_train, device, torch.int64)
    x_test = _to_device(dataset.x_test, device, torch.float32)
    y_test = _to_device(dataset.y_test, device, torch.int64)
    n = len(y_train)
    in_shape = tuple(int(s) for s in x_train.shape[1:])
    num_classes = int(
        getattr(dataset, "num_classes", None) or int(max(y_train.max(), y_test.max())) + 1
    )
    if cfg.augment == "crop_flip" and (len(in_shape) != 3 or min(in_shape[1:]) < 28):
        raise ValueError(
            f"model {mid}: augment 'crop_flip' needs images of at least 28×28 pixels, the inputs "
            f"are {in_shape}; use augment 'none'"
        )
    bounds = batch_bounds(n, cfg.batch_size)
    steps_per_epoch = len(bounds)
    total_steps = cfg.max_epochs * steps_per_epoch
    use_cuda = device.type == "cuda"
    bf16 = cfg.bf16 and use_cuda

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    loss_fn = loss_function(cfg)
    checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None

    with _deterministic(device, cfg.compile), _stop_on_signals() as stop:
        model = seeded_model(spec, in_shape, num_classes, **cfg.arch_kwargs)
        model = model.to(device)
        parameters = count_parameters(model)
        flops = forward_flops(model, in_shape)  # eval mode, no RNG: leaves the state alone
        channels_last = use_cuda and model.is_convolutional
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        forward = torch.compile(model) if cfg.compile else model
        if cfg.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                model.parameters(),
                lr=cfg.lr,
                momentum=cfg.momentum,
                nesterov=cfg.nesterov,
                weight_decay=spec.weight_decay,
                fused=use_cuda or None,
            )
        else:
            optimizer = torch.optim.AdamW(
                model.parameters(),
                lr=cfg.lr,
                weight_decay=spec.weight_decay,
                fused=use_cuda or None,
            )
        generator = torch.Generator(device=device)
        generator.manual_seed(_generator_seed(spec.seed))

        # Training state (what a checkpoint holds besides the module states)
        epoch = 0  # epochs completed
        position = 0  # steps done within the current epoch
        global_step = 0
        perm: torch.Tensor | None = None
        step_loss = torch.zeros(steps_per_epoch, device=device)
        step_correct = torch.zeros(steps_per_epoch, dtype=torch.int64, device=device)
        history: list[dict[str, float]] = []
        seconds_before = 0.0
        resumes = 0
        job_ids: list[str] = []

        if checkpoint_path is not None and checkpoint_path.exists():
            state = read_checkpoint(checkpoint_path)
            why = _incompatibility(state, spec, cfg, n, device)
            if why:
                log(f"{mid}: not resuming from {checkpoint_path}: {why}; training from the start")
            else:
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                generator.set_state(state["generator"])
                torch.set_rng_state(state["torch_rng"])
                if use_cuda and state.get("cuda_rng") is not None:
                    torch.cuda.set_rng_state_all(state["cuda_rng"])
                epoch, position = state["epoch"], state["position"]
                global_step = state["global_step"]
                perm = None if state["perm"] is None else state["perm"].to(device)
                step_loss.copy_(state["step_loss"])
                step_correct.copy_(state["step_correct"])
                history = list(state["history"])
                seconds_before = float(state["seconds"])
                resumes = int(state["resumes"]) + 1
                job_ids = list(state["slurm_job_ids"])
                log(
                    f"{mid}: resuming from {checkpoint_path} at epoch {epoch + 1}, "
                    f"step {global_step} (resume {resumes})"
                )
        job_id = os.environ.get("SLURM_JOB_ID")
        if job_id and (not job_ids or job_ids[-1] != job_id):
            job_ids.append(job_id)
        if resumes == 0:
            log(
                f"{mid}: training on {device} — {n} examples, {steps_per_epoch} steps/epoch, "
                f"≤ {cfg.max_epochs} epochs, {parameters} parameters"
            )
        started = time.perf_counter()

        def seconds() -> float:
            return seconds_before + time.perf_counter() - started

        def check_finite(losses: np.ndarray) -> None:
            bad = np.flatnonzero(~np.isfinite(losses))
            if bad.size:
                first = int(bad[0])
                step = global_step - position + first + 1
                raise NonFiniteLossError(
                    f"model {mid}: non-finite loss {float(losses[first])} at epoch {epoch + 1}, "
                    f"step {step}"
                )

        def save_checkpoint() -> None:
            if checkpoint_path is None:
                return
            check_finite(step_loss[:position].cpu().numpy())
            state = {
                "format": CHECKPOINT_FORMAT,
                "model_id": mid,
                "settings": _resume_settings(cfg),
                "train_size": n,
                "device_type": device.type,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if use_cuda else None,
                "epoch": epoch,
                "position": position,
                "global_step": global_step,
                "perm": None if perm is None else perm.cpu(),
                "step_loss": step_loss.cpu(),
                "step_correct": step_correct.cpu(),
                "history": history,
                "seconds": seconds(),
                "resumes": resumes,
                "slurm_job_ids": job_ids,
            }
            _write_checkpoint(checkpoint_path, state)

        def preempt() -> None:
            name = signal.Signals(stop.signum).name
            if checkpoint_path is None:
                message = (
                    f"model {mid}: stopped by {name} at epoch {epoch + 1}, step {global_step}; "
                    "no checkpoint path was given, so nothing was saved"
                )
            else:
                message = (
                    f"model {mid}: stopped by {name} at epoch {epoch + 1}, step {global_step}; "
                    f"checkpoint written to {checkpoint_path}; rerun to resume"
                )
            log(message)
            raise Preempted(message, stop.signum, checkpoint_path or "")

        def train_step(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            xb, yb = x_train[index], y_train[index]
            if cfg.augment == "crop_flip":
                xb = crop_flip(xb, generator)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast():
                logits = forward(xb)
            loss = loss_fn(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss.detach(), (logits.argmax(1) == yb).sum()

        @torch.no_grad()
        def evaluate(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            """[summed loss, correct] on the device."""
            totals = torch.zeros(2, dtype=torch.float64, device=device)
            size = cfg.eval_batch_size
            for start in range(0, len(y), size):
                xb, yb = x[start : start + size], y[start : start + size]
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                with autocast():
                    logits = forward(xb).float()
                totals[0] += loss_fn(logits, yb).double() * len(yb)
                totals[1] += (logits.argmax(1) == yb).sum()
            return totals

        reached = False
        while epoch < cfg.max_epochs:
            if perm is None:
                perm = torch.randperm(n, generator=generator, device=device)
                position = 0
                step_loss.zero_()
                step_correct.zero_()
            model.train()
            while position < steps_per_epoch:
                start, end = bounds[position]
                lr = lr_at(cfg, global_step, total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss, correct = train_step(perm[start:end])
                step_loss[position] = loss
                step_correct[position] = correct
                position += 1
                global_step += 1
                if on_step is not None:
                    on_step(epoch + 1, global_step)
                if stop.signum is not None:
                    save_checkpoint()
                    if checkpoint_path is None:
                        check_finite(step_loss[:position].cpu().numpy())
                    preempt()
                every = cfg.checkpoint_every_steps
                if every and global_step % every == 0 and position < steps_per_epoch:
                    save_checkpoint()

            # End of epoch: one read of the batch statistics and the evaluations.
            batch_losses = step_loss.cpu().numpy()
            check_finite(batch_losses)
            model.eval()
            train_eval, test_eval = evaluate(x_train, y_train), evaluate(x_test, y_test)
            train_loss, train_correct = train_eval.tolist()
            test_loss, test_correct = test_eval.tolist()
            if not math.isfinite(train_loss):
                raise NonFiniteLossError(
                    f"model {mid}: non-finite loss {train_loss} on the training set after "
                    f"epoch {epoch + 1}, step {global_step}"
                )
            sizes = np.array([end - start for start, end in bounds])
            row = {
                "epoch": epoch + 1,
                "step": global_step,
                "lr": lr_at(cfg, global_step - 1, total_steps),
                "train_loss": train_loss / n,
                "train_acc": train_correct / n,
                "test_loss": test_loss / len(y_test),
                "test_acc": test_correct / len(y_test),
                "seconds": seconds(),
                "batch_loss": float((batch_losses * sizes).sum() / n),
                "batch_acc": float(step_correct.sum().item() / n),
            }
            history.append(row)
            epoch += 1
            perm = None
            position = 0
            train_errors = n - int(round(train_correct))
            log(
                f"{mid}: epoch {epoch}/{cfg.max_epochs} step {global_step} lr {row['lr']:.4g} "
                f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} "
                f"({train_errors} errors) test loss {row['test_loss']:.4f} "
                f"acc {row['test_acc']:.4f} [{row['seconds']:.1f} s]"
            )
            if cfg.until_zero_train_error and train_errors == 0 and epoch >= cfg.min_epochs:
                reached = True
                break
            if epoch < cfg.max_epochs:
                save_checkpoint()
                if stop.signum is not None:
                    preempt()

    last = history[-1]
    train_errors = n - int(round(last["train_acc"] * n))
    if cfg.until_zero_train_error and not reached:
        log(
            f"{mid}: WARNING: {train_errors} training errors left after the cap of "
            f"{cfg.max_epochs} epochs"
        )
    metrics = {
        "model": mid,
        "train_size": n,
        "test_size": len(y_test),
        "epochs": epoch,
        "steps": global_step,
        "steps_per_epoch": steps_per_epoch,
        "train_loss": last["train_loss"],
        "train_acc": last["train_acc"],
        "test_loss": last["test_loss"],
        "test_acc": last["test_acc"],
        "train_errors": train_errors,
        "reached_zero_train_error": train_errors == 0,
        "wall_seconds": last["seconds"],
        "parameters": parameters,
        "forward_flops": flops,
        "device": str(device),
        "resumes": resumes,
        "slurm_job_ids": job_ids,
    }
    if checkpoint_path is not None:
        checkpoint_path.unlink(missing_ok=True)
    model.eval()
    return TrainResult(model, pd.DataFrame(history, columns=HISTORY_COLUMNS), metrics)


# --------------------------------------------------------------------------------------------
# Tables across models (training summary)
# --------------------------------------------------------------------------------------------


def metrics_table(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per model: its id and axes (:meth:`ModelSpec.columns`) and its final metrics."""
    rows = []
    for path in paths:
        metrics = load_json(path)
        if not isinstance(metrics, dict) or "model" not in metrics:
            raise ArtifactError(f"{path}: not a metrics.json of the train rule (no 'model' key)")
        row = parse_model_id(metrics["model"]).columns()
        for key, value in metrics.items():
            if key in row:
                continue
            if isinstance(value, list | tuple):
                value = ",".join(str(v) for v in value)
            if value is None or isinstance(value, bool | int | float | str):
                row[key] = value
        rows.append(row)
    return pd.DataFrame(rows)


def history_table(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """All histories stacked, each row led by its model's id and axes.

    The model id is the name of the folder holding ``history.parquet`` (``Paths.history``).
    """
    frames = []
    for path in paths:
        mid = Path(path).parent.name
        try:
            columns = parse_model_id(mid).columns()
        except ValueError:
            raise ArtifactError(
                f"{path}: its folder {mid!r} is not a model id (expected "
                "results/models/<model id>/history.parquet)"
            ) from None
        frame = read_parquet(path)
        frames.append(frame.assign(**{k: v for k, v in columns.items()})[[*columns, *frame]])
    if not frames:
        return pd.DataFrame(columns=["model", *HISTORY_COLUMNS])
    return pd.concat(frames, ignore_index=True)
