"""What training writes per model and the tables across models (no torch import).

Per model: ``history.parquet``, one row per epoch (:data:`HISTORY_COLUMNS`): ``train_loss`` /
``train_acc`` and ``test_loss`` / ``test_acc`` are evaluated on the full (subsampled) training
set and the test set in eval mode without augmentation (so ``train_acc == 1`` is exactly "zero
training error"); ``batch_loss`` / ``batch_acc`` are the means over the epoch's training batches
(train mode, augmented); ``seconds`` is cumulative training time over all runs; ``lr`` the rate
of the epoch's last step. ``metrics.json`` (:func:`model_metrics`): the last epoch's numbers,
whether the stop rule (:func:`stop_reached`) was met, sizes, costs and where it ran. Across
models: :func:`metrics_table` and :func:`history_table` (the training summary).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from widthlab.grid import parse_model_id
from widthlab.io import ArtifactError, load_json, read_parquet
from widthlab.training.settings import TrainConfig

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


@dataclass(frozen=True)
class Sizes:
    """Examples in the (subsampled) training set and the test set; steps per epoch."""

    train: int
    test: int
    steps_per_epoch: int


def stop_reached(cfg: TrainConfig, epoch: int, train_errors: int, test_acc: float) -> bool:
    """The stop rule after epoch ``epoch`` (1-based), before the cap of ``max_epochs``: at least
    ``min_epochs``, and zero training errors (``until_zero_train_error``) or the source test
    accuracy at ``stop_at_test_acc`` or above (models of every width taken at one declared
    accuracy, Gilboa & Gur-Ari's "at equal accuracy")."""
    return epoch >= cfg.min_epochs and (
        (cfg.until_zero_train_error and train_errors == 0)
        or (cfg.stop_at_test_acc is not None and test_acc >= cfg.stop_at_test_acc)
    )


def epoch_line(model_id: str, row: dict[str, float], cfg: TrainConfig, train_errors: int) -> str:
    """The log line of one model's epoch."""
    return (
        f"{model_id}: epoch {row['epoch']}/{cfg.max_epochs} step {row['step']} "
        f"lr {row['lr']:.4g} train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:.4f} ({train_errors} errors) "
        f"test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f} "
        f"[{row['seconds']:.1f} s]"
    )


def train_errors_of(row: dict[str, float], n: int) -> int:
    """Training errors left after a history row, on ``n`` training examples."""
    return n - int(round(row["train_acc"] * n))


def shortfall_warnings(model_id: str, last: dict, reached: bool, cfg: TrainConfig, n: int):
    """Log lines for a model that stopped at the cap before meeting its stop rule."""
    lines = []
    if cfg.stop_at_test_acc is not None and not reached:
        lines.append(
            f"{model_id}: WARNING: test accuracy {last['test_acc']:.4f} never reached "
            f"{cfg.stop_at_test_acc} within {cfg.max_epochs} epochs"
        )
    if cfg.until_zero_train_error and not reached:
        lines.append(
            f"{model_id}: WARNING: {train_errors_of(last, n)} training errors left after the cap "
            f"of {cfg.max_epochs} epochs"
        )
    return lines


def model_metrics(
    model_id: str,
    history: list[dict[str, float]],
    finish: dict[str, Any],
    cfg: TrainConfig,
    sizes: Sizes,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """``metrics.json`` of a model: its last epoch, when it finished (``finish``: ``epochs``,
    ``steps``), then ``extra`` (parameters, costs, device, pack size, resumes, SLURM jobs)."""
    last = history[-1]
    train_errors = train_errors_of(last, sizes.train)
    return {
        "model": model_id,
        "train_size": sizes.train,
        "test_size": sizes.test,
        "epochs": finish["epochs"],
        "steps": finish["steps"],
        "steps_per_epoch": sizes.steps_per_epoch,
        "train_loss": last["train_loss"],
        "train_acc": last["train_acc"],
        "test_loss": last["test_loss"],
        "test_acc": last["test_acc"],
        "train_errors": train_errors,
        "reached_zero_train_error": train_errors == 0,
        "reached_test_acc": (
            None if cfg.stop_at_test_acc is None else bool(last["test_acc"] >= cfg.stop_at_test_acc)
        ),
        "wall_seconds": last["seconds"],
        **extra,
    }


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
