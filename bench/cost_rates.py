"""Measure a row of the cost model's device table (widthlab.cost.DEVICES) on this machine.

    python bench/cost_rates.py [--device cpu|cuda] [--threads N] [--quick]

Trains small networks with ``widthlab.training.train.train`` on in-memory data of the real
shapes and fits the device model of :mod:`widthlab.cost` to the epoch times:

- ``op_step_s``: two MLPs of width 16 (depth 1 and 8) on digits-sized inputs, whose steps
  cost their overhead: the slope of epoch time over operations (a layer and its ReLU);
- ``macs_per_s``: an MLP of width 1024 on 784 inputs, whose steps cost their arithmetic;
- ``conv_macs_per_s``: a convnet of width 32 on 28×28 inputs, likewise;
- ``fp64_macs_per_s``: a float64 matrix product (the CKA Grams);
- ``startup_s`` and ``process_mb``: a fresh interpreter importing what a job imports.

Then it checks the row on a model it was not fitted to (a ResNet-8 on 32×32 inputs): the cost
model's predicted epoch time against the measured one. Prints Markdown tables and the row as
Python, to paste into ``widthlab/cost.py``.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from widthlab import cost
from widthlab.data.dataset import Dataset
from widthlab.grid import DataSpec, ModelSpec
from widthlab.sizes import architecture
from widthlab.training.train import train

JOB_IMPORTS = "import pandas, widthlab.training.train, widthlab.provenance, widthlab.data.npz"


def fake_dataset(in_shape, n_train: int, n_test: int, classes: int = 10) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(
        "bench",
        rng.standard_normal((n_train, *in_shape)).astype(np.float32),
        rng.integers(0, classes, n_train).astype(np.int64),
        rng.standard_normal((n_test, *in_shape)).astype(np.float32),
        rng.integers(0, classes, n_test).astype(np.int64),
        np.arange(min(n_test, 100), dtype=np.int64),
        [str(c) for c in range(classes)],
    )


def epoch_seconds(spec: ModelSpec, data: Dataset, device: str, epochs: int) -> float:
    """Median seconds of an epoch after the first (warm-up) one."""
    settings = {
        "max_epochs": epochs + 1,
        "until_zero_train_error": False,
        "device": device,
        "batch_size": 128,
        "checkpoint_every_steps": 0,
    }
    seconds = train(spec, data, settings, log=lambda line: None).history["seconds"].to_numpy()
    return float(np.median(np.diff(seconds)))


def step_equivalents(spec: ModelSpec, n_train: int, n_test: int) -> float:
    """Operations of an epoch's steps, counting an evaluation batch as a third of a step."""
    evaluation = -(-n_train // 1024) + -(-n_test // 1024)
    return cost.operations(architecture(spec)) * (-(-n_train // 128) + evaluation / 3)


def measure(device: str, quick: bool) -> dict[str, float]:
    epochs = 2 if quick else 4
    digits = fake_dataset((1, 8, 8), 1437, 360)
    shallow = ModelSpec(DataSpec("digits"), "mlp", 16, 1)
    deep = ModelSpec(DataSpec("digits"), "mlp", 16, 8)
    t_shallow = epoch_seconds(shallow, digits, device, epochs)
    t_deep = epoch_seconds(deep, digits, device, epochs)
    op_step_s = (t_deep - t_shallow) / (
        step_equivalents(deep, 1437, 360) - step_equivalents(shallow, 1437, 360)
    )

    n_train, n_test = (1024, 256) if quick else (4096, 1024)
    wide = ModelSpec(DataSpec("fashion_mnist"), "mlp", 1024, 3)
    t_wide = epoch_seconds(wide, fake_dataset((1, 28, 28), n_train, n_test), device, epochs)
    macs = architecture(wide).macs
    macs_per_s = macs * (3 * 128 * -(-n_train // 128) + n_train + n_test) / t_wide

    conv = ModelSpec(DataSpec("fashion_mnist"), "cnn", 32, 4)
    n_conv = 256 if quick else 1024
    t_conv = epoch_seconds(conv, fake_dataset((1, 28, 28), n_conv, n_conv // 4), device, epochs)
    conv_arch = architecture(conv)
    linear_s = (conv_arch.layers[-1].macs / macs_per_s) * (3 * 128 * -(-n_conv // 128) + n_conv)
    examples = 3 * 128 * -(-n_conv // 128) + n_conv + n_conv // 4
    conv_macs_per_s = (conv_arch.macs - conv_arch.layers[-1].macs) * examples / (t_conv - linear_s)

    size = 512 if quick else 2048
    a = torch.randn(size, size, dtype=torch.float64, device=device)
    (a @ a).sum().item()
    start = time.perf_counter()
    repeats = 3
    for _ in range(repeats):
        (a @ a).sum().item()
    fp64 = repeats * size**3 / (time.perf_counter() - start)

    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", JOB_IMPORTS], check=True)
    startup_s = time.perf_counter() - start
    process_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1000
    return {
        "macs_per_s": macs_per_s,
        "conv_macs_per_s": conv_macs_per_s,
        "fp64_macs_per_s": fp64,
        "op_step_s": op_step_s,
        "startup_s": startup_s,
        "process_mb": process_mb,
    }


def check(row: cost.Device, device: str, quick: bool) -> tuple[float, float]:
    """(predicted, measured) epoch seconds of a ResNet the row was not fitted to."""
    n_train, n_test = (256, 64) if quick else (1024, 256)
    spec = ModelSpec(DataSpec("cifar10"), "resnet", 1, 8)
    measured = epoch_seconds(spec, fake_dataset((3, 32, 32), n_train, n_test), device, 2)
    settings = cost.CostSettings(row, gpu=device != "cpu")
    train_settings = {"batch_size": 128, "max_epochs": 1, "checkpoint_every_steps": 0}
    small = spec.with_(train_size=n_train)
    predicted = cost.train_cost([small], train_settings, settings).seconds - row.startup_s
    # the estimate evaluates the dataset's full test split; the bench's has n_test examples
    shape = settings.shape(spec)
    surplus = cost.forward_seconds([architecture(spec)], shape.n_test - n_test, 1024, row)
    return predicted - surplus, measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (jobs: 1 on CPU)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rates = measure(args.device, args.quick)
    base = cost.DEVICES["cpu" if args.device == "cpu" else "h100"]
    row = cost.Device(
        args.device,
        macs_per_s=rates["macs_per_s"],
        conv_macs_per_s=rates["conv_macs_per_s"],
        fp64_macs_per_s=rates["fp64_macs_per_s"],
        op_step_s=rates["op_step_s"],
        startup_s=rates["startup_s"],
        process_mb=rates["process_mb"],
        context_mb=base.context_mb,
        memory_gb=base.memory_gb,
    )
    print(f"### Device row, {args.device}, {args.threads} thread(s)\n")
    print("| quantity | measured | widthlab.cost.DEVICES |")
    print("|---|---|---|")
    for name, value in rates.items():
        print(f"| {name} | {value:.3g} | {getattr(base, name):.3g} |")
    predicted, measured = check(row, args.device, args.quick)
    print("\n### Check on a ResNet (cifar10-resnet-w1-d8), one epoch\n")
    print("| predicted s | measured s | measured / predicted |")
    print("|---|---|---|")
    print(f"| {predicted:.3f} | {measured:.3f} | {measured / predicted:.2f} |")
    print(f"\n```python\n{row!r}\n```")


if __name__ == "__main__":
    main()
