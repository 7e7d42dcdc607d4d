"""Training: determinism, resume after SIGTERM (bit-identical), stopping rules, losses, errors."""

import dataclasses
import functools
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from widthlab.grid import DataSpec, ModelSpec
from widthlab.io import ArtifactError, save_json, write_parquet
from widthlab.training.checkpoint import Preempted, remove
from widthlab.training.pieces import batch_bounds, crop_flip, lr_at, square_hinge_loss
from widthlab.training.settings import TrainConfig
from widthlab.training.state import NonFiniteLossError
from widthlab.training.summary import HISTORY_COLUMNS, history_table, metrics_table
from widthlab.training.train import train

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass
class TinyData:
    """The part of ``widthlab.data.dataset.Dataset`` that training uses."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int = 10

    @property
    def in_shape(self):
        return tuple(self.x_train.shape[1:])

    def subsample(self, n):
        return replace(self, x_train=self.x_train[:n], y_train=self.y_train[:n])


@functools.cache
def _digits():
    x, y = load_digits(return_X_y=True)
    x = ((x - x.mean()) / x.std()).astype(np.float32).reshape(-1, 1, 8, 8)
    return x, y.astype(np.int64)


def digits(n_train=300, n_test=100, size=8) -> TinyData:
    x, y = _digits()
    if size != 8:
        x = F.interpolate(torch.from_numpy(x), size=size, mode="nearest").numpy()
    return TinyData(x[:n_train], y[:n_train], x[-n_test:], y[-n_test:])


def mlp(width=32, depth=2, **kwargs) -> ModelSpec:
    return ModelSpec(DataSpec("digits"), "mlp", width, depth, **kwargs)


QUIET = {"log": lambda line: None}


def resume_setup():
    """Model, data and settings of the resume tests (also used by the subprocess)."""
    spec = mlp(32, 2, weight_decay=5e-4, seed=4, train_size=250)
    cfg = TrainConfig(
        optimizer="sgd",
        lr=0.05,
        nesterov=True,
        schedule="cosine",
        batch_size=32,
        max_epochs=5,
        until_zero_train_error=False,
        checkpoint_every_steps=3,
        device="cpu",
    )
    return spec, digits(300), cfg


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, f"tensors differ: {different}"


# --------------------------------------------------------------------------------- settings


def test_config_from_dict_rejects_unknown_keys():
    cfg = TrainConfig.from_dict({"lr": 0.1, "step_milestones": [0.3, 0.6], "device": "cpu"})
    assert cfg.lr == 0.1 and cfg.step_milestones == (0.3, 0.6)
    with pytest.raises(ValueError, match=r"\['lrr', 'momentom'\]"):
        TrainConfig.from_dict({"lrr": 0.1, "momentom": 0.9})
    with pytest.raises(ValueError, match="train.optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="train.step_milestones"):
        TrainConfig(step_milestones=(0.8, 0.4))
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig(loss="square_hinge", label_smoothing=0.1)


# settings the config cannot set: the device comes from the top-level key ``device``
NOT_IN_THE_TRAIN_SECTION = {"device", "step_gamma", "eval_batch_size", "arch_kwargs"}


def test_settings_defaults_and_choices_are_the_schemas():
    from widthlab.config import load_schema

    schema = load_schema()["properties"]
    section = schema["train"]["properties"]
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(section) == fields - NOT_IN_THE_TRAIN_SECTION
    made = TrainConfig()
    for key, rules in section.items():
        default = rules["default"]
        if key == "step_milestones":
            default = tuple(default)
        assert getattr(made, key) == default, key
        if "enum" in rules:  # every choice the schema allows is accepted, and only those
            for choice in rules["enum"]:
                TrainConfig(**{key: choice})
            with pytest.raises(ValueError, match=f"train.{key}"):
                TrainConfig(**{key: "no-such-choice"})
    for choice in schema["device"]["enum"]:
        TrainConfig(device=choice)


def test_schedules_and_batches():
    cfg = TrainConfig(lr=0.2, schedule="cosine")
    assert lr_at(cfg, 0, 100) == pytest.approx(0.2)
    assert lr_at(cfg, 50, 100) == pytest.approx(0.1)
    assert lr_at(cfg, 100, 100) == pytest.approx(0.0)
    step = TrainConfig(lr=1.0, schedule="step", step_milestones=(0.5, 0.75))
    assert [lr_at(step, s, 100) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    assert lr_at(TrainConfig(lr=0.3, schedule="constant"), 77, 100) == 0.3
    assert batch_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]  # no batch of one example
    assert batch_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert batch_bounds(9, 4) == [(0, 4), (4, 9)]
    assert batch_bounds(3, 8) == [(0, 3)]


def test_square_hinge_matches_formula():
    torch.manual_seed(0)
    logits, targets = torch.randn(7, 4) * 2, torch.randint(0, 4, (7,))
    total = 0.0
    for i in range(7):
        for c in range(4):
            y = 1.0 if targets[i] == c else -1.0
            total += max(0.0, 1.0 - y * float(logits[i, c])) ** 2
    assert square_hinge_loss(logits, targets).item() == pytest.approx(total / 28, rel=1e-6)


def test_crop_flip_is_a_shifted_possibly_flipped_crop():
    torch.manual_seed(0)
    x = torch.randn(6, 2, 5, 5)
    out = crop_flip(x, torch.Generator().manual_seed(3), pad=2)
    again = crop_flip(x, torch.Generator().manual_seed(3), pad=2)
    assert out.shape == x.shape and torch.equal(out, again)
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(6):
        candidates = [
            view
            for dy in range(5)
            for dx in range(5)
            for view in (padded[i, :, dy : dy + 5, dx : dx + 5],)
            for view in (view, view.flip(-1))
        ]
        assert any(torch.equal(out[i], c) for c in candidates)


# ---------------------------------------------------------------------------------- training


def test_history_metrics_and_determinism(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    spec, data = mlp(16, 2, seed=0), digits(200)
    cfg = TrainConfig(batch_size=64, max_epochs=3, until_zero_train_error=False, device="cpu")
    lines = []
    first = train(spec, data, cfg, log=lines.append)
    model, history, metrics = first  # a named tuple
    assert list(history.columns) == HISTORY_COLUMNS
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["step"].tolist() == [4, 8, 12]
    assert history["seconds"].is_monotonic_increasing
    assert metrics["model"] == spec.id and metrics["epochs"] == 3 and metrics["steps"] == 12
    assert metrics["train_acc"] == history["train_acc"].iloc[-1]
    assert metrics["parameters"] == 64 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    assert metrics["device"] == "cpu" and metrics["slurm_job_ids"] == []
    assert json.dumps(metrics)  # JSON-ready
    assert sum(line.startswith(f"{spec.id}: epoch ") for line in lines) == 3
    assert history["train_loss"].iloc[-1] < history["batch_loss"].iloc[0]

    second = train(spec, data, cfg, **QUIET)
    assert_same_weights(first.model, second.model)
    assert history.drop(columns="seconds").equals(second.history.drop(columns="seconds"))
    other = train(replace(spec, seed=1), data, cfg, **QUIET)
    assert not torch.equal(model.head.weight, other.model.head.weight)


def test_until_zero_train_error_stops_early():
    cfg = TrainConfig(
        optimizer="adam",
        lr=3e-3,
        batch_size=32,
        max_epochs=60,
        min_epochs=2,
        until_zero_train_error=True,
        device="cpu",
    )
    result = train(mlp(64, 1, train_size=100), digits(300), cfg, **QUIET)
    assert result.metrics["train_size"] == 100
    assert result.metrics["reached_zero_train_error"]
    assert result.metrics["train_errors"] == 0
    assert 2 <= result.metrics["epochs"] < 60
    assert result.history["train_acc"].iloc[-1] == 1.0
    assert (result.history["train_acc"].iloc[:-1] < 1.0).all() or result.metrics["epochs"] == 2


def test_square_hinge_training_and_adam_run():
    cfg = TrainConfig(
        optimizer="adam", lr=1e-3, loss="square_hinge", batch_size=50, max_epochs=2, device="cpu"
    )
    result = train(mlp(16, 2), digits(150), cfg, **QUIET)
    assert result.history["train_loss"].iloc[-1] < result.history["batch_loss"].iloc[0]


def test_non_finite_loss_names_model_epoch_and_step():
    data = digits(100)
    data.x_train = np.full_like(data.x_train, np.nan)
    spec = mlp(8, 1)
    cfg = TrainConfig(batch_size=50, max_epochs=2, device="cpu")
    with pytest.raises(NonFiniteLossError, match=rf"model {spec.id}: .* at epoch 1, step 1$"):
        train(spec, data, cfg, **QUIET)

    # square hinge gradients grow with the outputs: a huge step size diverges within steps
    huge = TrainConfig(lr=1e10, loss="square_hinge", batch_size=25, max_epochs=3, device="cpu")
    with pytest.raises(NonFiniteLossError, match=rf"model {spec.id}: non-finite loss inf at epoch"):
        train(spec, digits(100), huge, **QUIET)


def test_bad_inputs():
    with pytest.raises(ValueError, match="train_size 500 exceeds"):
        train(mlp(8, 1, train_size=500), digits(100), TrainConfig(device="cpu"), **QUIET)
    with pytest.raises(ValueError, match="crop_flip"):
        train(mlp(8, 1), digits(50), TrainConfig(augment="crop_flip", device="cpu"), **QUIET)


# ------------------------------------------------------------------------------------ resume

SUBPROCESS = """
import sys, time
import torch
torch.set_num_threads(1)
sys.path.insert(0, {here!r})
import test_train
from widthlab.training.train import train
spec, data, cfg = test_train.resume_setup()
train(spec, data, cfg, checkpoint_path={checkpoint!r}, log=print,
      on_step=lambda epoch, step: time.sleep(0.05))
print("FINISHED")
"""


def test_sigterm_in_a_subprocess_then_resume_is_bit_identical(tmp_path, monkeypatch):
    spec, data, cfg = resume_setup()
    checkpoint = tmp_path / "models" / spec.id / "checkpoint.pt"
    script = SUBPROCESS.format(here=str(HERE), checkpoint=str(checkpoint))
    env = {**os.environ, "SLURM_JOB_ID": "111"}
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not checkpoint.exists():
            assert process.poll() is None, f"training ended early: {process.communicate()}"
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "FINISHED" not in stdout
    assert f"checkpoint written to {checkpoint}" in stdout
    assert checkpoint.exists()
    stopped_at = torch.load(checkpoint, weights_only=True)["global_step"]
    assert 0 < stopped_at < 5 * 8

    lines = []
    monkeypatch.setenv("SLURM_JOB_ID", "222")
    resumed = train(spec, data, cfg, checkpoint_path=checkpoint, log=lines.append)
    assert any("resuming" in line for line in lines)
    assert not checkpoint.exists()  # deleted after success
    assert resumed.metrics["slurm_job_ids"] == ["111", "222"]
    assert resumed.metrics["resumes"] == 1

    plain = train(spec, data, cfg, **QUIET)
    assert_same_weights(resumed.model, plain.model)
    assert resumed.history.drop(columns="seconds").equals(plain.history.drop(columns="seconds"))


def _interrupt_at(steps: set[int]):
    def on_step(epoch, step):
        if step in steps:
            os.kill(os.getpid(), signal.SIGUSR1)

    return on_step


def test_in_process_resume_with_augmentation_and_adam(tmp_path):
    """Stops mid-epoch and at an epoch's last step; crop+flip and Adam states must resume."""
    spec = ModelSpec(DataSpec("digits"), "cnn", 4, 2, seed=2)
    data = digits(60, 20, size=28)
    cfg = TrainConfig(
        optimizer="adam",
        lr=1e-3,
        schedule="step",
        step_milestones=(0.5,),
        batch_size=16,  # 4 steps per epoch
        max_epochs=3,
        augment="crop_flip",
        until_zero_train_error=False,
        checkpoint_every_steps=0,
        device="cpu",
    )
    checkpoint = tmp_path / "checkpoint.pt"
    handler = signal.getsignal(signal.SIGUSR1)
    for stop_step in (2, 8):  # mid-epoch, then the last step of epoch 2
        with pytest.raises(Preempted) as stopped:
            train(spec, data, cfg, checkpoint, on_step=_interrupt_at({stop_step}), **QUIET)
        assert stopped.value.code == 128 + signal.SIGUSR1
        assert str(checkpoint) in str(stopped.value)
        assert torch.load(checkpoint, weights_only=True)["global_step"] == stop_step
        assert signal.getsignal(signal.SIGUSR1) is handler  # previous handler restored
    resumed = train(spec, data, cfg, checkpoint, **QUIET)
    assert resumed.metrics["resumes"] == 2
    plain = train(spec, data, cfg, **QUIET)
    assert_same_weights(resumed.model, plain.model)
    assert resumed.history.drop(columns="seconds").equals(plain.history.drop(columns="seconds"))


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    spec, data, cfg = resume_setup()
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(Preempted):
        train(spec, data, cfg, checkpoint, on_step=_interrupt_at({5}), **QUIET)
    changed = replace(cfg, lr=0.02, max_epochs=2)
    lines = []
    result = train(spec, data, changed, checkpoint, log=lines.append)
    assert any("not resuming" in line and "'lr'" in line for line in lines)
    assert result.metrics["resumes"] == 0
    assert_same_weights(result.model, train(spec, data, changed, **QUIET).model)


def test_corrupt_checkpoint_is_named(tmp_path):
    spec, data, cfg = resume_setup()
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"\x00garbage")
    with pytest.raises(ArtifactError, match=str(checkpoint)):
        train(spec, data, cfg, checkpoint, **QUIET)


# ------------------------------------------------------------------------------------ tables


def test_summary_tables(tmp_path):
    histories, metrics = [], []
    for width in (8, 16):
        spec = mlp(width, 1)
        folder = tmp_path / "models" / spec.id
        frame = {c: [1.0, 2.0] for c in HISTORY_COLUMNS}
        write_parquet(pd.DataFrame(frame), folder / "history.parquet")
        save_json(
            folder / "metrics.json",
            {"model": spec.id, "test_acc": 0.5, "slurm_job_ids": ["1", "2"], "epochs": 3},
        )
        histories.append(folder / "history.parquet")
        metrics.append(folder / "metrics.json")
    table = metrics_table(metrics)
    assert table["width"].tolist() == [8, 16]
    assert table["slurm_job_ids"].tolist() == ["1,2", "1,2"]
    stacked = history_table(histories)
    assert len(stacked) == 4 and stacked.columns[0] == "model"
    assert set(HISTORY_COLUMNS) <= set(stacked.columns)
    with pytest.raises(ArtifactError, match="not a model id"):
        history_table([tmp_path / "elsewhere" / "history.parquet"])
    assert math.isfinite(stacked["train_loss"].sum())


# ---------------------------------------------------------- issue 16: no lost work, no orphans

CHILD = """
import os, sys, time
sys.path.insert(0, {tests!r})
from test_train import resume_setup
from dataclasses import replace
from widthlab.training.checkpoint import die_with_parent
from widthlab.training.train import train
spec, data, cfg = resume_setup()
cfg = replace(cfg, max_epochs=100000, checkpoint_every_steps=0)
watched = die_with_parent(lambda line: print(line, flush=True), every=0.1)
open({ready!r}, "w").write(f"{{os.getpid()}} {{watched}}")
train(spec, data, cfg, checkpoint_path={checkpoint!r}, log=lambda line: None)
"""

FAKE_SNAKEMAKE = """#!{python}
import subprocess, sys, time
subprocess.Popen(["bash", "-c", "set -euo pipefail; {python} " + sys.argv[1]])
time.sleep(600)
"""


def test_a_trainer_stops_and_checkpoints_when_its_snakemake_is_killed(tmp_path):
    """Snakemake runs a script through bash; SIGKILL to Snakemake alone used to leave the
    trainer running (and a second one, after --unlock, on the same checkpoint)."""
    ready, checkpoint = tmp_path / "ready", tmp_path / "ckpt.pt"
    child = tmp_path / "child.py"
    child.write_text(CHILD.format(tests=str(HERE), ready=str(ready), checkpoint=str(checkpoint)))
    fake = tmp_path / "snakemake"  # the name a process is told apart by
    fake.write_text(FAKE_SNAKEMAKE.format(python=sys.executable))
    fake.chmod(0o755)
    parent = subprocess.Popen([str(fake), str(child)], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        trainer, watched = map(int, ready.read_text().split())
        assert watched == parent.pid
        time.sleep(0.5)
        parent.kill()  # SIGKILL: no handler of Snakemake's runs
        parent.wait()
        deadline = time.monotonic() + 30
        while Path(f"/proc/{trainer}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{trainer}").exists(), "the trainer outlived its Snakemake"
        assert checkpoint.exists(), "the trainer stopped without writing its checkpoint"
    finally:
        parent.kill()


def test_a_workflow_job_keeps_its_checkpoint_until_it_drops_it(tmp_path):
    spec, data, cfg = resume_setup()
    checkpoint = tmp_path / "ckpt.pt"
    first = train(spec, data, cfg, checkpoint_path=checkpoint, keep_checkpoint=True, **QUIET)
    assert checkpoint.exists()  # a kill while the outputs are written loses nothing
    lines = []
    again = train(spec, data, cfg, checkpoint_path=checkpoint, log=lines.append)
    assert any("resuming from" in line for line in lines)
    assert_same_weights(first.model, again.model)
    assert not checkpoint.exists()  # the default: dropped when training ends
    remove(checkpoint)  # and removing twice is harmless
