"""Training the grid's models, one at a time or packed: deterministic, checkpointed,
resumable, preemption-safe.

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

Packs: :func:`train_pack` steps several small MLPs as one stacked network (one ``baddbmm``
per layer for all of them), each on its own permutation and augmentation stream, each
stopping at its own epoch; the loop, checkpoints and stopping rules are the ones of
:func:`train` (:func:`_fit` drives a :class:`_Learner` of K rows; one model is K = 1).
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
from torch import nn

from widthlab.device import resolve_device
from widthlab.grid import ModelSpec, parse_model_id
from widthlab.io import ArtifactError, atomic_path, load_json, read_parquet
from widthlab.models import TappedModel, count_parameters, forward_flops, seeded_model
from widthlab.train_packs import pack_key, packable

CHECKPOINT_FORMAT = "widthlab-checkpoint-2"
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
COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune")
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
    autocast on CUDA (ignored on CPU). ``compile``: ``torch.compile`` the forward pass: ``true``
    (inductor's default mode), ``reduce-overhead`` (CUDA graphs: one launch per step, against
    launch-bound small models) or ``max-autotune``; ``false`` runs eagerly.
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
    # stop after the first epoch (≥ min_epochs) whose source test accuracy reaches this: models
    # of every width taken at one declared accuracy (Gilboa & Gur-Ari's "at equal accuracy")
    stop_at_test_acc: float | None = None
    checkpoint_every_steps: int = 200
    augment: str = "none"
    device: str = "auto"
    bf16: bool = True
    label_smoothing: float = 0.0
    eval_batch_size: int = 1024
    compile: bool | str = False
    arch_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"train.{name} must be one of {choices}, got {value!r}")
        self.step_milestones = tuple(float(m) for m in self.step_milestones)
        problems = []
        if self.compile not in COMPILE_MODES:
            problems.append(f"train.compile must be one of {COMPILE_MODES}, got {self.compile!r}")
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


# --------------------------------------------------------------------------------------------
# Pieces: losses, schedule, batches, augmentation
# --------------------------------------------------------------------------------------------


def square_hinge_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One-vs-all squared hinge: mean over examples and classes of max(0, 1 − y·f)², y = ±1.

    ``logits`` (…, B, C), ``targets`` (…, B): one mean per leading index (per model of a pack).
    """
    signs = 2.0 * F.one_hot(targets, logits.shape[-1]).to(logits.dtype) - 1.0
    return F.relu(1.0 - signs * logits).square().mean(dim=(-2, -1))


def loss_function(cfg: TrainConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss, averaged over the batch axis only: (…, B, C), (…, B) → (…)."""
    if cfg.loss == "square_hinge":
        return square_hinge_loss

    def cross_entropy(logits, targets):
        flat = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            reduction="none",
            label_smoothing=cfg.label_smoothing,
        )
        return flat.reshape(targets.shape).mean(-1)

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


def _incompatibility(state: dict, ids: list[str], cfg: TrainConfig, n: int, device) -> str:
    """Why a checkpoint cannot be resumed here ('' if it can)."""
    if state["model_ids"] != ids:
        theirs = state["model_ids"]
        return f"it belongs to model{'s' if len(theirs) > 1 else ''} {', '.join(theirs)}"
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
# Learners: what the training loop steps (one model, or a pack of MLPs stacked)
# --------------------------------------------------------------------------------------------


class TrainResult(NamedTuple):
    model: TappedModel
    history: pd.DataFrame
    metrics: dict[str, Any]


def _to_device(array, device, dtype) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array)).to(device=device, dtype=dtype)


def _optimizer(params, cfg: TrainConfig, weight_decay: float, device) -> torch.optim.Optimizer:
    fused = device.type == "cuda" or None
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=weight_decay,
            fused=fused,
        )
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=weight_decay, fused=fused)


def _compiled(function, cfg: TrainConfig):
    if not cfg.compile:
        return function
    return torch.compile(function, mode=None if cfg.compile is True else cfg.compile)


class _Data(NamedTuple):
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


class _Learner:
    """K ≥ 1 models stepped together, row k on the batches of its own permutation.

    ``step`` and ``evaluate`` return per-row tensors on the device (nothing is read back).
    """

    optimizer: torch.optim.Optimizer

    def __init__(self, data: _Data, cfg: TrainConfig, device: torch.device):
        self.data, self.cfg, self.device = data, cfg, device
        self.loss_fn = loss_function(cfg)
        self.bf16 = cfg.bf16 and device.type == "cuda"

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _step(self, logits: torch.Tensor, yb: torch.Tensor):
        losses = self.loss_fn(logits.float(), yb)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # rows share no parameters: each gets its own mean's gradient
        self.optimizer.step()
        return losses.detach().reshape(-1), (logits.argmax(-1) == yb).sum(-1).reshape(-1)

    def _totals(self, logits: torch.Tensor, yb: torch.Tensor, totals: torch.Tensor) -> None:
        logits = logits.float()
        totals[:, 0] += self.loss_fn(logits, yb).double().reshape(-1) * yb.shape[-1]
        totals[:, 1] += (logits.argmax(-1) == yb).sum(-1).reshape(-1)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, rows: int) -> torch.Tensor:
        """rows × [summed loss, correct] on the device."""
        totals = torch.zeros(rows, 2, dtype=torch.float64, device=self.device)
        size = self.cfg.eval_batch_size
        for start in range(0, len(y), size):
            xb, yb = x[start : start + size], y[start : start + size]
            with self.autocast():
                logits = self.eval_forward(xb)
            self._totals(logits, yb.expand(rows, -1) if rows > 1 else yb, totals)
        return totals


class _OneModel(_Learner):
    """Any architecture, one model: channels-last for convnets on CUDA, optional compile."""

    def __init__(self, model: TappedModel, weight_decay: float, data, cfg, device):
        super().__init__(data, cfg, device)
        self.model = model.to(device)
        self.channels_last = device.type == "cuda" and model.is_convolutional
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = _compiled(self.model, cfg)
        self.optimizer = _optimizer(self.model.parameters(), cfg, weight_decay, device)

    def _layout(self, xb: torch.Tensor) -> torch.Tensor:
        return xb.contiguous(memory_format=torch.channels_last) if self.channels_last else xb

    def train_mode(self, mode: bool) -> None:
        self.model.train(mode)

    def step(self, index: torch.Tensor, generators: list[torch.Generator]):
        xb, yb = self.data.x_train[index[0]], self.data.y_train[index[0]]
        if self.cfg.augment == "crop_flip":
            xb = crop_flip(xb, generators[0])
        with self.autocast():
            logits = self.forward(self._layout(xb))
        return self._step(logits, yb)

    def eval_forward(self, xb: torch.Tensor) -> torch.Tensor:
        return self.forward(self._layout(xb))

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def export(self, row: int, into: TappedModel) -> None:
        if into is not self.model:
            into.load_state_dict(self.model.state_dict())

    def keep(self, rows: list[int]) -> None:
        raise AssertionError("a single model is never compacted")


def _linears(model: TappedModel) -> list[nn.Linear]:
    """The hidden layers' and the head's linear maps of an MLP, in forward order."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


class _StackedMLPs(_Learner):
    """K MLPs of one depth as one batched matmul per layer (``baddbmm``), each layer padded
    with zeros to the widest model's width.

    Padding is exact: a padded unit has zero weights in and out and a zero bias, so its
    pre-activation is 0, ReLU and its gradient there are 0, and every gradient, weight-decay
    and momentum / Adam term that could move its weights is 0. Each model starts from the
    weights of its own seeded build (its own width's init scale). When models finish,
    :meth:`keep` drops their rows and shrinks the padding to the widest model left.
    """

    def __init__(self, models: list[TappedModel], weight_decay: float, data, cfg, device):
        super().__init__(data, cfg, device)
        self.weight_decay = weight_decay
        layers = [_linears(m) for m in models]
        dims = [[layer[0].in_features, *(lin.out_features for lin in layer)] for layer in layers]
        self.dims = dims  # per row: input size, then every layer's output size
        padded = self._padded(dims)
        self.params = []
        with torch.no_grad():
            for index in range(len(layers[0])):
                weight = torch.zeros(len(models), padded[index + 1], padded[index])
                bias = torch.zeros(len(models), padded[index + 1])
                for row, layer in enumerate(layers):
                    out_features, in_features = layer[index].weight.shape
                    weight[row, :out_features, :in_features] = layer[index].weight
                    bias[row, :out_features] = layer[index].bias
                self.params += [weight.to(device), bias.to(device)]
        for p in self.params:
            p.requires_grad_(True)
        self.optimizer = _optimizer(self.params, cfg, weight_decay, device)
        self.forward = _compiled(self._forward, cfg)

    @staticmethod
    def _padded(dims: list[list[int]]) -> list[int]:
        return [max(column) for column in zip(*dims, strict=True)]

    def _forward(self, h: torch.Tensor) -> torch.Tensor:
        weights, biases = self.params[0::2], self.params[1::2]
        for index, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
            h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            if index < len(weights) - 1:
                h = F.relu(h)
        return h

    def train_mode(self, mode: bool) -> None:
        pass  # no dropout or normalisation in a pack

    def step(self, index: torch.Tensor, generators: list[torch.Generator]):
        xb, yb = self.data.x_train[index], self.data.y_train[index]  # K × B × …
        if self.cfg.augment == "crop_flip":
            xb = torch.stack([crop_flip(x, g) for x, g in zip(xb, generators, strict=True)])
        with self.autocast():
            logits = self.forward(xb.flatten(2))
        return self._step(logits, yb)

    def eval_forward(self, xb: torch.Tensor) -> torch.Tensor:
        return self.forward(xb.flatten(1).expand(len(self.dims), -1, -1))

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": [p.detach().cpu() for p in self.params],
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            for p, saved in zip(self.params, state["params"], strict=True):
                p.copy_(saved)
        self.optimizer.load_state_dict(state["optimizer"])

    def export(self, row: int, into: TappedModel) -> None:
        with torch.no_grad():
            for index, linear in enumerate(_linears(into)):
                out_features, in_features = linear.weight.shape
                linear.weight.copy_(self.params[2 * index][row, :out_features, :in_features])
                linear.bias.copy_(self.params[2 * index + 1][row, :out_features])

    def keep(self, rows: list[int]) -> None:
        self.dims = [self.dims[r] for r in rows]
        padded = self._padded(self.dims)
        selected = torch.as_tensor(rows, device=self.device)
        new_params = []
        states = []
        for index, p in enumerate(self.params):
            out_features = padded[index // 2 + 1]
            in_features = padded[index // 2]

            def narrow(t, shape=p.shape, out_features=out_features, in_features=in_features):
                if not torch.is_tensor(t) or t.shape != shape:
                    return t  # Adam's step count: the same for every row
                t = t.index_select(0, selected)[:, :out_features]
                return (t[:, :, :in_features] if t.dim() == 3 else t).clone()

            new_params.append(narrow(p.detach()).requires_grad_(True))
            states.append({k: narrow(v) for k, v in self.optimizer.state.get(p, {}).items()})
        self.params = new_params
        self.optimizer = _optimizer(self.params, self.cfg, self.weight_decay, self.device)
        for p, state in zip(self.params, states, strict=True):
            if state:
                self.optimizer.state[p] = state


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _prepare(specs: list[ModelSpec], dataset, cfg: TrainConfig, label: str):
    device = resolve_device(cfg.device)
    train_size = specs[0].train_size
    if train_size is not None:
        available = len(dataset.y_train)
        if train_size > available:
            raise ValueError(
                f"model {label}: train_size {train_size} exceeds the {available} training "
                "examples of the dataset"
            )
        dataset = dataset.subsample(train_size)
    data = _Data(
        _to_device(dataset.x_train, device, torch.float32),
        _to_device(dataset.y_train, device, torch.int64),
        _to_device(dataset.x_test, device, torch.float32),
        _to_device(dataset.y_test, device, torch.int64),
    )
    in_shape = tuple(int(s) for s in data.x_train.shape[1:])
    num_classes = int(
        getattr(dataset, "num_classes", None) or int(max(data.y_train.max(), data.y_test.max())) + 1
    )
    if cfg.augment == "crop_flip" and (len(in_shape) != 3 or min(in_shape[1:]) < 28):
        raise ValueError(
            f"model {label}: augment 'crop_flip' needs images of at least 28×28 pixels, the "
            f"inputs are {in_shape}; use augment 'none'"
        )
    return device, data, in_shape, num_classes


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
    device, data, in_shape, num_classes = _prepare([spec], dataset, cfg, spec.id)
    with _deterministic(device, bool(cfg.compile)), _stop_on_signals() as stop:
        model = seeded_model(spec, in_shape, num_classes, **cfg.arch_kwargs).to(device)
        learner = _OneModel(model, spec.weight_decay, data, cfg, device)
        (result,) = _fit([spec], [model], learner, checkpoint_path, log, on_step, spec.id, stop)
    return result


def train_pack(
    specs: Iterable[ModelSpec],
    dataset,
    cfg: TrainConfig | Mapping[str, Any],
    checkpoint_path: str | os.PathLike | None = None,
    log: Callable[[str], Any] = print,
    on_step: Callable[[int, int], Any] | None = None,
    name: str | None = None,
) -> list[TrainResult]:
    """Train several MLPs together (:class:`_StackedMLPs`), one result per spec, in order.

    The specs must be packable and share a pack key (:mod:`widthlab.train_packs`). Each model
    draws its initial weights, shuffling and augmentation exactly as :func:`train` would, and
    stops after its own epochs, so its weights equal those of training it alone up to
    floating-point summation order. One checkpoint holds the whole pack (resumed as in
    :func:`train`); a non-finite loss stops the pack, naming the model.
    """
    specs = list(specs)
    cfg = cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg)
    label = name or f"pack of {len(specs)}"
    settings = cfg.to_dict()
    if len({s.id for s in specs}) != len(specs) or not specs:
        raise ValueError(f"{label}: a pack needs distinct models, got {[s.id for s in specs]}")
    for spec in specs:
        if not packable(spec, settings):
            raise ValueError(
                f"{label}: model {spec.id} cannot be packed (only MLPs in standard "
                "parameterisation without dropout can)"
            )
        if pack_key(spec, settings) != pack_key(specs[0], settings):
            raise ValueError(
                f"{label}: models {specs[0].id} and {spec.id} differ in more than width, seed "
                "and init, so they cannot share a pack"
            )
    device, data, in_shape, num_classes = _prepare(specs, dataset, cfg, label)
    with _deterministic(device, bool(cfg.compile)), _stop_on_signals() as stop:
        models = [seeded_model(s, in_shape, num_classes) for s in specs]
        learner = _StackedMLPs(models, specs[0].weight_decay, data, cfg, device)
        return _fit(specs, models, learner, checkpoint_path, log, on_step, label, stop)


def _fit(
    specs: list[ModelSpec],
    models: list[TappedModel],
    learner: _Learner,
    checkpoint_path: str | os.PathLike | None,
    log: Callable[[str], Any],
    on_step: Callable[[int, int], Any] | None,
    label: str,
    stop: _StopFlag,
) -> list[TrainResult]:
    """The training loop over the rows of ``learner``; ``models`` receive the final weights;
    ``stop`` is the flag of the caller's :func:`_stop_on_signals`."""
    data, cfg, device = learner.data, learner.cfg, learner.device
    in_shape = tuple(data.x_train.shape[1:])
    # eval mode, no RNG: leaves the states alone
    facts = [
        {"parameters": count_parameters(m), "forward_flops": forward_flops(m, in_shape)}
        for m in models
    ]
    ids = [s.id for s in specs]
    n = len(data.y_train)
    bounds = batch_bounds(n, cfg.batch_size)
    steps_per_epoch = len(bounds)
    total_steps = cfg.max_epochs * steps_per_epoch
    use_cuda = device.type == "cuda"
    checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None

    # Training state (what a checkpoint holds besides the learner's)
    members = list(range(len(specs)))  # row → index into specs, for the rows still training
    generators = []
    for spec in specs:
        generators.append(torch.Generator(device=device))
        generators[-1].manual_seed(_generator_seed(spec.seed))
    epoch = 0  # epochs completed
    position = 0  # steps done within the current epoch
    global_step = 0
    perm: torch.Tensor | None = None  # rows × n
    step_loss = torch.zeros(len(specs), steps_per_epoch, device=device)
    step_correct = torch.zeros(len(specs), steps_per_epoch, dtype=torch.int64, device=device)
    histories: list[list[dict[str, float]]] = [[] for _ in specs]
    finished: dict[int, dict[str, Any]] = {}  # spec index → final state, epochs, steps
    seconds_before = 0.0
    resumes = 0
    job_ids: list[str] = []

    def compact(rows: list[int]) -> None:
        nonlocal members, generators, step_loss, step_correct
        learner.keep(rows)
        members = [members[r] for r in rows]
        generators = [generators[r] for r in rows]
        step_loss, step_correct = step_loss[rows], step_correct[rows]

    if checkpoint_path is not None and checkpoint_path.exists():
        state = read_checkpoint(checkpoint_path)
        why = _incompatibility(state, ids, cfg, n, device)
        if why:
            log(f"{label}: not resuming from {checkpoint_path}: {why}; training from the start")
        else:
            if state["members"] != members:
                compact([members.index(i) for i in state["members"]])
            learner.load_state_dict(state["learner"])
            for generator, saved in zip(generators, state["generators"], strict=True):
                generator.set_state(saved)
            torch.set_rng_state(state["torch_rng"])
            if use_cuda and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            epoch, position = state["epoch"], state["position"]
            global_step = state["global_step"]
            perm = None if state["perm"] is None else state["perm"].to(device)
            step_loss.copy_(state["step_loss"])
            step_correct.copy_(state["step_correct"])
            histories = [list(h) for h in state["histories"]]
            finished = dict(state["finished"])
            seconds_before = float(state["seconds"])
            resumes = int(state["resumes"]) + 1
            job_ids = list(state["slurm_job_ids"])
            log(
                f"{label}: resuming from {checkpoint_path} at epoch {epoch + 1}, "
                f"step {global_step} (resume {resumes})"
            )
    job_id = os.environ.get("SLURM_JOB_ID")
    if job_id and (not job_ids or job_ids[-1] != job_id):
        job_ids.append(job_id)
    if resumes == 0:
        what = f"{len(specs)} models together" if len(specs) > 1 else ""
        log(
            f"{label}: training {what + ' ' if what else ''}on {device} — {n} examples, "
            f"{steps_per_epoch} steps/epoch, ≤ {cfg.max_epochs} epochs, "
            f"{sum(f['parameters'] for f in facts)} parameters"
        )
    started = time.perf_counter()

    def seconds() -> float:
        return seconds_before + time.perf_counter() - started

    def check_finite(losses: np.ndarray) -> None:
        bad = np.argwhere(~np.isfinite(losses))
        if bad.size:
            row, first = min(map(tuple, bad), key=lambda rc: (rc[1], rc[0]))
            step = global_step - position + int(first) + 1
            raise NonFiniteLossError(
                f"model {ids[members[row]]}: non-finite loss {float(losses[row, first])} at "
                f"epoch {epoch + 1}, step {step}"
                + (f" (in {label}; its other models stop with it)" if len(specs) > 1 else "")
            )

    def save_checkpoint() -> None:
        if checkpoint_path is None:
            return
        check_finite(step_loss[:, :position].cpu().numpy())
        state = {
            "format": CHECKPOINT_FORMAT,
            "model_ids": ids,
            "members": members,
            "settings": _resume_settings(cfg),
            "train_size": n,
            "device_type": device.type,
            "learner": learner.state_dict(),
            "generators": [g.get_state() for g in generators],
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if use_cuda else None,
            "epoch": epoch,
            "position": position,
            "global_step": global_step,
            "perm": None if perm is None else perm.cpu(),
            "step_loss": step_loss.cpu(),
            "step_correct": step_correct.cpu(),
            "histories": histories,
            "finished": finished,
            "seconds": seconds(),
            "resumes": resumes,
            "slurm_job_ids": job_ids,
        }
        _write_checkpoint(checkpoint_path, state)

    def preempt() -> None:
        name = signal.Signals(stop.signum).name
        where = f"stopped by {name} at epoch {epoch + 1}, step {global_step}"
        if checkpoint_path is None:
            message = f"model {label}: {where}; no checkpoint path was given, so nothing was saved"
        else:
            message = (
                f"model {label}: {where}; checkpoint written to {checkpoint_path}; rerun to resume"
            )
        log(message)
        raise Preempted(message, stop.signum, checkpoint_path or "")

    sizes = np.array([end - start for start, end in bounds])
    while members:
        if perm is None:
            perm = torch.stack([torch.randperm(n, generator=g, device=device) for g in generators])
            position = 0
            step_loss.zero_()
            step_correct.zero_()
        learner.train_mode(True)
        while position < steps_per_epoch:
            start, end = bounds[position]
            learner.set_lr(lr_at(cfg, global_step, total_steps))
            loss, correct = learner.step(perm[:, start:end], generators)
            step_loss[:, position] = loss
            step_correct[:, position] = correct
            position += 1
            global_step += 1
            if on_step is not None:
                on_step(epoch + 1, global_step)
            if stop.signum is not None:
                save_checkpoint()
                if checkpoint_path is None:
                    check_finite(step_loss[:, :position].cpu().numpy())
                preempt()
            every = cfg.checkpoint_every_steps
            if every and global_step % every == 0 and position < steps_per_epoch:
                save_checkpoint()

        # End of epoch: one read of the batch statistics and the evaluations.
        batch_losses = step_loss.cpu().numpy()
        check_finite(batch_losses)
        learner.train_mode(False)
        rows = len(members)
        train_eval = learner.evaluate(data.x_train, data.y_train, rows).tolist()
        test_eval = learner.evaluate(data.x_test, data.y_test, rows).tolist()
        batch_correct = step_correct.sum(1).tolist()
        epoch += 1
        keep = []
        for row, index in enumerate(members):
            (train_loss, train_correct), (test_loss, test_correct) = train_eval[row], test_eval[row]
            if not math.isfinite(train_loss):
                raise NonFiniteLossError(
                    f"model {ids[index]}: non-finite loss {train_loss} on the training set "
                    f"after epoch {epoch}, step {global_step}"
                )
            row_stats = {
                "epoch": epoch,
                "step": global_step,
                "lr": lr_at(cfg, global_step - 1, total_steps),
                "train_loss": train_loss / n,
                "train_acc": train_correct / n,
                "test_loss": test_loss / len(data.y_test),
                "test_acc": test_correct / len(data.y_test),
                "seconds": seconds(),
                "batch_loss": float((batch_losses[row] * sizes).sum() / n),
                "batch_acc": float(batch_correct[row] / n),
            }
            histories[index].append(row_stats)
            train_errors = n - int(round(train_correct))
            log(
                f"{ids[index]}: epoch {epoch}/{cfg.max_epochs} step {global_step} "
                f"lr {row_stats['lr']:.4g} train loss {row_stats['train_loss']:.4f} "
                f"acc {row_stats['train_acc']:.4f} ({train_errors} errors) "
                f"test loss {row_stats['test_loss']:.4f} acc {row_stats['test_acc']:.4f} "
                f"[{row_stats['seconds']:.1f} s]"
            )
            reached = epoch >= cfg.min_epochs and (
                (cfg.until_zero_train_error and train_errors == 0)
                or (
                    cfg.stop_at_test_acc is not None
                    and row_stats["test_acc"] >= cfg.stop_at_test_acc
                )
            )
            if reached or epoch == cfg.max_epochs:
                learner.export(row, models[index])
                finished[index] = {
                    "model": {k: v.detach().cpu() for k, v in models[index].state_dict().items()},
                    "epochs": epoch,
                    "steps": global_step,
                    "reached": reached,
                }
            else:
                keep.append(row)
        perm = None
        position = 0
        if not keep:
            break
        if len(keep) < len(members):
            compact(keep)
        save_checkpoint()
        if stop.signum is not None:
            preempt()

    results = []
    for index, spec in enumerate(specs):
        done = finished[index]
        model = models[index]
        model.load_state_dict(done["model"])
        model.eval()
        last = histories[index][-1]
        train_errors = n - int(round(last["train_acc"] * n))
        if cfg.stop_at_test_acc is not None and not done["reached"]:
            log(
                f"{spec.id}: WARNING: test accuracy {last['test_acc']:.4f} never reached "
                f"{cfg.stop_at_test_acc} within {cfg.max_epochs} epochs"
            )
        if cfg.until_zero_train_error and not done["reached"]:
            log(
                f"{spec.id}: WARNING: {train_errors} training errors left after the cap of "
                f"{cfg.max_epochs} epochs"
            )
        metrics = {
            "model": spec.id,
            "train_size": n,
            "test_size": len(data.y_test),
            "epochs": done["epochs"],
            "steps": done["steps"],
            "steps_per_epoch": steps_per_epoch,
            "train_loss": last["train_loss"],
            "train_acc": last["train_acc"],
            "test_loss": last["test_loss"],
            "test_acc": last["test_acc"],
            "train_errors": train_errors,
            "reached_zero_train_error": train_errors == 0,
            "reached_test_acc": (
                None
                if cfg.stop_at_test_acc is None
                else bool(last["test_acc"] >= cfg.stop_at_test_acc)
            ),
            "wall_seconds": last["seconds"],
            **facts[index],
            "device": str(device),
            "pack_size": len(specs),
            "resumes": resumes,
            "slurm_job_ids": job_ids,
        }
        history = pd.DataFrame(histories[index], columns=HISTORY_COLUMNS)
        results.append(TrainResult(model, history, metrics))
    if checkpoint_path is not None:
        checkpoint_path.unlink(missing_ok=True)
    return results


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
