"""The pieces of a training step: losses, the learning-rate schedule, batches, augmentation,
the shuffling stream of a seed, and deterministic kernels."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from widthlab.training.settings import TrainConfig


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


def generator_seed(seed: int) -> int:
    """The shuffling/augmentation stream of ``seed``, independent of the init stream."""
    return int(np.random.SeedSequence([int(seed), 1]).generate_state(1, np.uint64)[0])


def _set_deterministic(mode: bool, warn_only: bool, compiled: bool) -> None:
    # torch.use_deterministic_algorithms imports torch._inductor (≈ 4 s per process, i.e. per
    # train job) only to set inductor's flag; set the eager flag directly unless compiling.
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if compiled or setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        setter(mode, warn_only=warn_only)


@contextlib.contextmanager
def deterministic(device: torch.device, compiled: bool = False) -> Iterator[None]:
    """While training: deterministic algorithms on CPU (warn only where there are none), cuDNN's
    benchmark mode on CUDA; the previous settings come back afterwards."""
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
