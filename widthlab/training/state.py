"""Where training stands: :class:`Run` (what a call fixes) and :class:`TrainState` (what moves).

A :class:`TrainState` is everything a checkpoint holds besides the learner's weights and
optimizer. Its rows are the models still training: ``members[row]`` is the index of the row's
spec, ``generators[row]`` its shuffling and augmentation stream, ``step_loss[row]`` and
``step_correct[row]`` its batch statistics of the current epoch (on the device, read once per
epoch and at checkpoints).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from widthlab.grid import ModelSpec
from widthlab.training.pieces import generator_seed


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class StopFlag:
    """The stop signal received while training (``None`` while there was none)."""

    signum: int | None = None


@dataclass(frozen=True)
class Run:
    """What one call of ``train`` / ``train_pack`` fixes: its models, where it checkpoints
    (``None``: nowhere), where its lines go, whom it tells of each step, and its stop flag."""

    specs: list[ModelSpec]
    checkpoint: Path | None
    log: Callable[[str], Any]
    on_step: Callable[[int, int], Any] | None
    label: str
    stop: StopFlag

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.specs]


@dataclass
class TrainState:
    """Where training stands (see the module's docstring); :meth:`start` makes epoch 0."""

    members: list[int]
    generators: list[torch.Generator]
    step_loss: torch.Tensor  # rows × steps per epoch
    step_correct: torch.Tensor
    histories: list[list[dict[str, float]]]  # per spec: one row per epoch
    epoch: int = 0  # epochs completed
    position: int = 0  # steps done within the current epoch
    global_step: int = 0
    perm: torch.Tensor | None = None  # rows × examples: the current epoch's order
    finished: dict[int, dict[str, Any]] = field(default_factory=dict)  # spec index → final state
    seconds_before: float = 0.0  # training time of earlier runs
    resumes: int = 0
    job_ids: list[str] = field(default_factory=list)  # SLURM jobs that worked on these models
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def start(cls, seeds: list[int], steps_per_epoch: int, device: torch.device) -> TrainState:
        """Epoch 0 of models with these seeds: each its own generator, seeded from its seed."""
        generators = []
        for seed in seeds:
            generators.append(torch.Generator(device=device))
            generators[-1].manual_seed(generator_seed(seed))
        k = len(seeds)
        return cls(
            members=list(range(k)),
            generators=generators,
            step_loss=torch.zeros(k, steps_per_epoch, device=device),
            step_correct=torch.zeros(k, steps_per_epoch, dtype=torch.int64, device=device),
            histories=[[] for _ in seeds],
        )

    def seconds(self) -> float:
        """Training time so far, over all runs."""
        return self.seconds_before + time.perf_counter() - self.started

    def new_epoch(self, n: int, device: torch.device) -> None:
        self.perm = torch.stack(
            [torch.randperm(n, generator=g, device=device) for g in self.generators]
        )
        self.position = 0
        self.step_loss.zero_()
        self.step_correct.zero_()

    def record_step(self, loss: torch.Tensor, correct: torch.Tensor) -> None:
        self.step_loss[:, self.position] = loss
        self.step_correct[:, self.position] = correct
        self.position += 1
        self.global_step += 1

    def keep(self, rows: list[int], learner) -> None:
        """Only ``rows`` train on (the others finished)."""
        learner.keep(rows)
        self.members = [self.members[r] for r in rows]
        self.generators = [self.generators[r] for r in rows]
        self.step_loss, self.step_correct = self.step_loss[rows], self.step_correct[rows]

    def note_slurm_job(self) -> None:
        job_id = os.environ.get("SLURM_JOB_ID")
        if job_id and (not self.job_ids or self.job_ids[-1] != job_id):
            self.job_ids.append(job_id)

    def losses_so_far(self) -> np.ndarray:
        """This epoch's batch losses so far, rows × steps done, read from the device."""
        return self.step_loss[:, : self.position].cpu().numpy()

    def check_finite(self, losses: np.ndarray, run: Run) -> None:
        """Raise :class:`NonFiniteLossError` naming the model, epoch and step of the first
        non-finite loss among this epoch's ``losses`` (rows × steps done)."""
        bad = np.argwhere(~np.isfinite(losses))
        if bad.size:
            row, first = min(map(tuple, bad), key=lambda rc: (rc[1], rc[0]))
            step = self.global_step - self.position + int(first) + 1
            raise NonFiniteLossError(
                f"model {run.ids[self.members[row]]}: non-finite loss "
                f"{float(losses[row, first])} at epoch {self.epoch + 1}, step {step}"
                + (
                    f" (in {run.label}; its other models stop with it)"
                    if len(run.specs) > 1
                    else ""
                )
            )
