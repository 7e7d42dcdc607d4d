"""Checkpoints and preemption: save, resume, stop on a signal, remove when done.

Checkpoints are written atomically every ``checkpoint_every_steps`` steps and at every epoch
end, and when SIGTERM or SIGUSR1 arrives (what SLURM sends before a time limit or preemption):
then the current step finishes, the checkpoint is written and :class:`Preempted` (a
``SystemExit`` with a non-zero code) is raised. The next call with the same checkpoint path
resumes, bit-identically: the checkpoint holds model, optimizer, generator and RNG states, the
epoch's permutation, the position in it, the epoch's batch statistics so far and the history.
A checkpoint made for other models, another training-set size, another device type or other
weight-changing settings is not resumed (training starts over and replaces it). The SLURM job
id of every run that worked on a model is kept. The checkpoint is removed once training has
finished (:func:`remove`), or, with ``keep_checkpoint=True`` (the workflow's train jobs), once
the job has written its outputs. :func:`die_with_parent` sends the stop signal when the
Snakemake that started the job dies, so no trainer outlives it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from widthlab.io import ArtifactError, atomic_path
from widthlab.training.settings import TrainConfig
from widthlab.training.state import Run, StopFlag, TrainState

CHECKPOINT_FORMAT = "widthlab-checkpoint-2"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
# Settings that do not change the trained weights: a checkpoint made under other values of
# these is still resumed (everything else must match, or training starts over).
RESUME_NEUTRAL = ("device", "checkpoint_every_steps", "eval_batch_size", "compile")


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


@contextlib.contextmanager
def stop_on_signals(signals: Iterable[int] = STOP_SIGNALS) -> Iterator[StopFlag]:
    """Handlers that only record the signal; the previous handlers come back afterwards.

    Outside the main thread (where Python cannot install handlers) nothing is installed.
    """
    flag = StopFlag()
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


def preempted(run: Run, state: TrainState) -> Preempted:
    """The exception that ends a run stopped by a signal (after its checkpoint), logged."""
    name = signal.Signals(run.stop.signum).name
    where = f"stopped by {name} at epoch {state.epoch + 1}, step {state.global_step}"
    if run.checkpoint is None:
        message = f"model {run.label}: {where}; no checkpoint path was given, so nothing was saved"
    else:
        message = (
            f"model {run.label}: {where}; checkpoint written to {run.checkpoint}; rerun to resume"
        )
    run.log(message)
    return Preempted(message, run.stop.signum, run.checkpoint or "")


def resume_settings(cfg: TrainConfig) -> dict[str, Any]:
    """The settings a checkpoint must share to be resumed."""
    settings = cfg.to_dict()
    for key in RESUME_NEUTRAL:
        settings.pop(key, None)
    return settings


def save(run: Run, learner, state: TrainState) -> None:
    """Write the checkpoint (atomically), after checking this epoch's losses are finite."""
    if run.checkpoint is None:
        return
    state.check_finite(state.losses_so_far(), run)
    use_cuda = learner.device.type == "cuda"
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "model_ids": run.ids,
        "members": state.members,
        "settings": resume_settings(learner.cfg),
        "train_size": len(learner.data.y_train),
        "device_type": learner.device.type,
        "learner": learner.state_dict(),
        "generators": [g.get_state() for g in state.generators],
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if use_cuda else None,
        "epoch": state.epoch,
        "position": state.position,
        "global_step": state.global_step,
        "perm": None if state.perm is None else state.perm.cpu(),
        "step_loss": state.step_loss.cpu(),
        "step_correct": state.step_correct.cpu(),
        "histories": state.histories,
        "finished": state.finished,
        "seconds": state.seconds(),
        "resumes": state.resumes,
        "slurm_job_ids": state.job_ids,
    }
    with atomic_path(run.checkpoint) as tmp:
        torch.save(checkpoint, tmp)


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


def incompatibility(saved: dict, ids: list[str], cfg: TrainConfig, n: int, device) -> str:
    """Why a checkpoint cannot be resumed here ('' if it can)."""
    if saved["model_ids"] != ids:
        theirs = saved["model_ids"]
        return f"it belongs to model{'s' if len(theirs) > 1 else ''} {', '.join(theirs)}"
    if saved["train_size"] != n:
        return f"it was trained on {saved['train_size']} examples, not {n}"
    if saved["device_type"] != device.type:
        return f"it was made on {saved['device_type']}, this run is on {device.type}"
    ours, theirs = resume_settings(cfg), saved["settings"]
    changed = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    if changed:
        return f"the train settings {changed} changed since"
    return ""


def restore(run: Run, learner, state: TrainState) -> None:
    """Resume ``learner`` and ``state`` from the run's checkpoint, if there is one that fits."""
    path = run.checkpoint
    if path is None or not path.exists():
        return
    saved = read_checkpoint(path)
    why = incompatibility(saved, run.ids, learner.cfg, len(learner.data.y_train), learner.device)
    if why:
        run.log(f"{run.label}: not resuming from {path}: {why}; training from the start")
        return
    if saved["members"] != state.members:
        state.keep([state.members.index(i) for i in saved["members"]], learner)
    learner.load_state_dict(saved["learner"])
    for generator, generator_state in zip(state.generators, saved["generators"], strict=True):
        generator.set_state(generator_state)
    torch.set_rng_state(saved["torch_rng"])
    if learner.device.type == "cuda" and saved.get("cuda_rng") is not None:
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    state.epoch, state.position = saved["epoch"], saved["position"]
    state.global_step = saved["global_step"]
    state.perm = None if saved["perm"] is None else saved["perm"].to(learner.device)
    state.step_loss.copy_(saved["step_loss"])
    state.step_correct.copy_(saved["step_correct"])
    state.histories = [list(h) for h in saved["histories"]]
    state.finished = dict(saved["finished"])
    state.seconds_before = float(saved["seconds"])
    state.resumes = int(saved["resumes"]) + 1
    state.job_ids = list(saved["slurm_job_ids"])
    run.log(
        f"{run.label}: resuming from {path} at epoch {state.epoch + 1}, "
        f"step {state.global_step} (resume {state.resumes})"
    )


def remove(path: str | os.PathLike | None) -> None:
    """Delete the checkpoint of a finished training. A workflow job calls this only once its
    outputs are written (training with ``keep_checkpoint=True`` until then): killed before, its
    rerun resumes at the end instead of starting over."""
    if path is not None:
        Path(path).unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# A trainer dies with the Snakemake that started it
# --------------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (None: no such process)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _is_snakemake(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else None
    return module == "snakemake" or any(Path(arg).name == "snakemake" for arg in argv[:2])


def snakemake_ancestor(levels: int = 4) -> int | None:
    """The process id of the Snakemake that runs this job (a parent or a few levels up: it
    runs a script through a shell), or None outside Snakemake or without /proc."""
    pid = os.getppid()
    for _ in range(levels):
        if pid <= 1:
            return None
        if _is_snakemake(pid):
            return pid
        stat = _stat(pid)
        if stat is None:
            return None
        pid = int(stat[1])
    return None


def die_with_parent(
    log: Callable[[str], Any] = print, pid: int | None = None, every: float = 1.0
) -> int | None:
    """Send SIGTERM to this process when ``pid`` (default :func:`snakemake_ancestor`) is gone:
    training then writes its checkpoint and stops (:class:`Preempted`), so a trainer never
    outlives the Snakemake that started it and two never share a checkpoint. Returns the
    watched process id (None: nothing to watch)."""
    pid = snakemake_ancestor() if pid is None else pid
    stat = _stat(pid) if pid is not None else None
    if stat is None:
        return None
    started = stat[19]  # the start time tells the process from a later one with its id

    def watch() -> None:
        while (now := _stat(pid)) is not None and now[19] == started and now[0] != "Z":
            time.sleep(every)
        log(f"the Snakemake process {pid} that started this job is gone: stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
    return pid
