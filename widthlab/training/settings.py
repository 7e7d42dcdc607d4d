"""How to train: :class:`TrainConfig`, the ``train`` section of the config (no torch import)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune")
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
