"""The training loop: :func:`fit` steps a learner's rows epoch by epoch until each has stopped.

Per step nothing crosses between host and device: batch losses and correct counts go into
the state's device buffers, read once per epoch (and at checkpoints), where non-finite losses
are detected and located. At each epoch end every row is evaluated on the training and test
sets; a row stops after the first epoch that meets the stop rule
(:func:`widthlab.training.summary.stop_reached`) or at ``max_epochs``, and the learner drops it.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from widthlab.models import TappedModel, count_parameters, forward_flops
from widthlab.training import checkpoint
from widthlab.training.learners import Learner
from widthlab.training.pieces import batch_bounds, lr_at
from widthlab.training.state import NonFiniteLossError, Run, TrainState
from widthlab.training.summary import (
    HISTORY_COLUMNS,
    Sizes,
    epoch_line,
    model_metrics,
    shortfall_warnings,
    stop_reached,
)


class TrainResult(NamedTuple):
    model: TappedModel
    history: pd.DataFrame
    metrics: dict[str, Any]


def fit(run: Run, learner: Learner, models: list[TappedModel]) -> list[TrainResult]:
    """Train the rows of ``learner`` (one per spec of ``run``); ``models`` receive the final
    weights. Resumes from the run's checkpoint; raises ``Preempted`` on a stop signal."""
    data, cfg, device = learner.data, learner.cfg, learner.device
    in_shape = tuple(data.x_train.shape[1:])
    # eval mode, no RNG: leaves the states alone
    facts = [
        {"parameters": count_parameters(m), "forward_flops": forward_flops(m, in_shape)}
        for m in models
    ]
    n = len(data.y_train)
    bounds = batch_bounds(n, cfg.batch_size)
    sizes = Sizes(train=n, test=len(data.y_test), steps_per_epoch=len(bounds))
    total_steps = cfg.max_epochs * sizes.steps_per_epoch

    state = TrainState.start([s.seed for s in run.specs], sizes.steps_per_epoch, device)
    checkpoint.restore(run, learner, state)
    state.note_slurm_job()
    if state.resumes == 0:
        what = f"{len(run.specs)} models together " if len(run.specs) > 1 else ""
        run.log(
            f"{run.label}: training {what}on {device} — {n} examples, "
            f"{sizes.steps_per_epoch} steps/epoch, ≤ {cfg.max_epochs} epochs, "
            f"{sum(f['parameters'] for f in facts)} parameters"
        )
    state.started = time.perf_counter()

    while state.members:
        if state.perm is None:
            state.new_epoch(n, device)
        learner.train_mode(True)
        while state.position < sizes.steps_per_epoch:
            start, end = bounds[state.position]
            learner.set_lr(lr_at(cfg, state.global_step, total_steps))
            loss, correct = learner.step(state.perm[:, start:end], state.generators)
            state.record_step(loss, correct)
            if run.on_step is not None:
                run.on_step(state.epoch + 1, state.global_step)
            if run.stop.signum is not None:  # SIGTERM / SIGUSR1: checkpoint, exit non-zero
                state.check_finite(state.losses_so_far(), run)
                checkpoint.save(run, learner, state)
                raise checkpoint.preempted(run, state)
            every = cfg.checkpoint_every_steps
            if every and state.global_step % every == 0 and state.position < sizes.steps_per_epoch:
                checkpoint.save(run, learner, state)

        keep = _end_epoch(run, learner, state, models, sizes)
        state.perm, state.position = None, 0
        if not keep:
            break
        if len(keep) < len(state.members):
            state.keep(keep, learner)
        checkpoint.save(run, learner, state)
        if run.stop.signum is not None:
            raise checkpoint.preempted(run, state)

    return _results(run, learner, state, models, facts, sizes)


def _end_epoch(run: Run, learner: Learner, state: TrainState, models, sizes: Sizes) -> list[int]:
    """One read of the epoch's batch statistics, the evaluations, a history row per model; the
    models that stop now get their final weights. Returns the rows that train on."""
    cfg, data, n = learner.cfg, learner.data, sizes.train
    batch_losses = state.step_loss.cpu().numpy()
    state.check_finite(batch_losses, run)
    learner.train_mode(False)
    rows = len(state.members)
    train_eval = learner.evaluate(data.x_train, data.y_train, rows).tolist()
    test_eval = learner.evaluate(data.x_test, data.y_test, rows).tolist()
    batch_correct = state.step_correct.sum(1).tolist()
    batch_sizes = np.array([end - start for start, end in batch_bounds(n, cfg.batch_size)])
    state.epoch += 1
    keep = []
    for row, index in enumerate(state.members):
        (train_loss, train_correct), (test_loss, test_correct) = train_eval[row], test_eval[row]
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(
                f"model {run.ids[index]}: non-finite loss {train_loss} on the training set "
                f"after epoch {state.epoch}, step {state.global_step}"
            )
        history_row = {
            "epoch": state.epoch,
            "step": state.global_step,
            "lr": lr_at(cfg, state.global_step - 1, cfg.max_epochs * sizes.steps_per_epoch),
            "train_loss": train_loss / n,
            "train_acc": train_correct / n,
            "test_loss": test_loss / sizes.test,
            "test_acc": test_correct / sizes.test,
            "seconds": state.seconds(),
            "batch_loss": float((batch_losses[row] * batch_sizes).sum() / n),
            "batch_acc": float(batch_correct[row] / n),
        }
        state.histories[index].append(history_row)
        train_errors = n - int(round(train_correct))
        run.log(epoch_line(run.ids[index], history_row, cfg, train_errors))
        reached = stop_reached(cfg, state.epoch, train_errors, history_row["test_acc"])
        if reached or state.epoch == cfg.max_epochs:
            learner.export(row, models[index])
            state.finished[index] = {
                "model": {k: v.detach().cpu() for k, v in models[index].state_dict().items()},
                "epochs": state.epoch,
                "steps": state.global_step,
                "reached": reached,
            }
        else:
            keep.append(row)
    return keep


def _results(run: Run, learner: Learner, state: TrainState, models, facts, sizes: Sizes):
    """One :class:`TrainResult` per spec: its model (final weights, eval mode), history and
    metrics; a warning for each model that stopped at the cap before meeting the stop rule."""
    results = []
    for index, spec in enumerate(run.specs):
        finish, history = state.finished[index], state.histories[index]
        model = models[index]
        model.load_state_dict(finish["model"])
        model.eval()
        for line in shortfall_warnings(
            spec.id, history[-1], finish["reached"], learner.cfg, sizes.train
        ):
            run.log(line)
        extra = {
            **facts[index],
            "device": str(learner.device),
            "pack_size": len(run.specs),
            "resumes": state.resumes,
            "slurm_job_ids": state.job_ids,
        }
        metrics = model_metrics(spec.id, history, finish, learner.cfg, sizes, extra)
        results.append(TrainResult(model, pd.DataFrame(history, columns=HISTORY_COLUMNS), metrics))
    return results
