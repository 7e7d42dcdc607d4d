"""Train one model (:func:`train`) or a pack of small MLPs together (:func:`train_pack`).

Both put the (subsampled) dataset on the device, build each model exactly as
:func:`widthlab.models.seeded_model` does (``torch.manual_seed(spec.seed)`` first), wrap them
in a learner (:mod:`widthlab.training.learners`) and run :func:`widthlab.training.loop.fit`
with deterministic kernels and stop-signal handlers installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from widthlab.device import resolve_device
from widthlab.grid import ModelSpec
from widthlab.models import seeded_model
from widthlab.training.checkpoint import remove, stop_on_signals
from widthlab.training.learners import Data, OneModel, StackedMLPs, to_device
from widthlab.training.loop import TrainResult, fit
from widthlab.training.packs import pack_key, packable
from widthlab.training.pieces import deterministic
from widthlab.training.settings import TrainConfig
from widthlab.training.state import Run


def prepare(specs: list[ModelSpec], dataset, cfg: TrainConfig, label: str):
    """The device, the data on it (the first ``train_size`` training examples), the input shape
    and the number of classes; an error naming ``label`` for a subset or an augmentation the
    data cannot give."""
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
    data = Data(
        to_device(dataset.x_train, device, torch.float32),
        to_device(dataset.y_train, device, torch.int64),
        to_device(dataset.x_test, device, torch.float32),
        to_device(dataset.y_test, device, torch.int64),
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
    keep_checkpoint: bool = False,
) -> TrainResult:
    """Train the model ``spec`` on ``dataset`` (first ``spec.train_size`` training examples).

    Resumes from ``checkpoint_path`` when that file exists (and was made for this model and
    these settings; otherwise starts over and replaces it). ``log`` receives one line per epoch.
    ``on_step(epoch, step)`` is called after every optimizer step (1-based epoch, steps done).
    Raises :class:`NonFiniteLossError` and, on SIGTERM / SIGUSR1, :class:`Preempted`. The
    checkpoint is removed at the end unless ``keep_checkpoint`` (then the caller removes it
    with :func:`~widthlab.training.checkpoint.remove` once its outputs are written).
    """
    cfg = cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg)
    device, data, in_shape, num_classes = prepare([spec], dataset, cfg, spec.id)
    with deterministic(device, bool(cfg.compile)), stop_on_signals() as stop:
        model = seeded_model(spec, in_shape, num_classes, **cfg.arch_kwargs).to(device)
        learner = OneModel(model, spec.weight_decay, data, cfg, device)
        run = Run([spec], _path(checkpoint_path), log, on_step, spec.id, stop)
        (result,) = fit(run, learner, [model])
    if not keep_checkpoint:
        remove(checkpoint_path)
    return result


def train_pack(
    specs: Iterable[ModelSpec],
    dataset,
    cfg: TrainConfig | Mapping[str, Any],
    checkpoint_path: str | os.PathLike | None = None,
    log: Callable[[str], Any] = print,
    on_step: Callable[[int, int], Any] | None = None,
    name: str | None = None,
    keep_checkpoint: bool = False,
) -> list[TrainResult]:
    """Train several MLPs together (:class:`StackedMLPs`), one result per spec, in order.

    The specs must be packable and share a pack key (:mod:`widthlab.training.packs`). Each
    model draws its initial weights, shuffling and augmentation exactly as :func:`train` would,
    and stops after its own epochs, so its weights equal those of training it alone up to
    floating-point summation order. One checkpoint holds the whole pack (resumed as in
    :func:`train`); a non-finite loss stops the pack, naming the model.
    """
    specs = list(specs)
    cfg = cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg)
    label = name or f"pack of {len(specs)}"
    check_pack(specs, cfg, label)
    device, data, in_shape, num_classes = prepare(specs, dataset, cfg, label)
    with deterministic(device, bool(cfg.compile)), stop_on_signals() as stop:
        models = [seeded_model(s, in_shape, num_classes) for s in specs]
        learner = StackedMLPs(models, specs[0].weight_decay, data, cfg, device)
        run = Run(specs, _path(checkpoint_path), log, on_step, label, stop)
        results = fit(run, learner, models)
    if not keep_checkpoint:
        remove(checkpoint_path)
    return results


def check_pack(specs: list[ModelSpec], cfg: TrainConfig, label: str) -> None:
    """An error naming the pack ``label`` unless ``specs`` are distinct, packable models that
    differ in nothing but width, seed and init."""
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


def _path(path: str | os.PathLike | None) -> Path | None:
    return Path(path) if path is not None else None
