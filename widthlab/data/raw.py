"""Raw splits as a source gives them (:class:`Raw`), the one error of this package
(:class:`DataError`), what each source's files look like and how to get them, and the seeded
random streams of dataset building (one per step, so changing one step never shifts another's
draws)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DataError(Exception):
    """Raw data or a dataset artifact is missing, truncated, malformed, or asked for wrongly."""


NO_DOWNLOAD = "widthlab never downloads data at run time"
FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"

HOW_TO_GET = {
    "fashion_mnist": (
        "install the Debian package dataset-fashion-mnist (apt-get install "
        f"dataset-fashion-mnist puts the four .gz files under {FASHION_MNIST_DEBIAN}/) and set "
        "data_root to that folder, or copy the four IDX files of the Fashion-MNIST release "
        "(github.com/zalandoresearch/fashion-mnist) into data_root"
    ),
    "mnist": (
        "copy the four original MNIST IDX files (train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; "
        "gzipped or not) into data_root"
    ),
    "cifar10": (
        "download cifar-10-python.tar.gz from the CIFAR website "
        "(https://www.cs.toronto.edu/~kriz/cifar.html) and extract it into data_root "
        f"(it unpacks to {CIFAR10_DIR}/)"
    ),
    "cifar100": (
        "download cifar-100-python.tar.gz from the CIFAR website "
        "(https://www.cs.toronto.edu/~kriz/cifar.html) and extract it into data_root "
        f"(it unpacks to {CIFAR100_DIR}/)"
    ),
}
FORMATS = {
    "fashion_mnist": "an IDX file (big-endian header, magic 0x00000803 images / 0x00000801 "
    "labels, unsigned bytes), gzipped or not",
    "mnist": "an IDX file (big-endian header, magic 0x00000803 images / 0x00000801 labels, "
    "unsigned bytes), gzipped or not",
    "cifar10": "a CIFAR-10 python pickle batch (dict with b'data': N×3072 uint8, b'labels')",
    "cifar100": "a CIFAR-100 python pickle (dict with b'data': N×3072 uint8, b'fine_labels', "
    "b'coarse_labels')",
}

# Random streams: one per step, so changing one step never shifts another's draws.
SPLIT, NOISE, TRAIN_ORDER, TEST_ORDER, SYNTHETIC = range(5)


def random_stream(seed: int, stream: int) -> np.random.Generator:
    """The generator of one step (``SPLIT``, ``NOISE``, …) for ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream]))


@dataclass
class Raw:
    """Raw splits before subsetting and ordering (x: N×C×H×W, any numeric dtype)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # split-aligned by key prefix


def missing_error(path: Path, dataset: str, fmt: str | None = None) -> DataError:
    """The error for a missing raw file: what it should be and how to get it."""
    fmt = fmt or FORMATS[dataset]
    return DataError(
        f"{path}: missing (expected {fmt}); to get it, {HOW_TO_GET[dataset]}; {NO_DOWNLOAD}"
    )


def need_root(dataset: str, data_root) -> Path:
    """``data_root`` as a path; an error saying how to get the files if it is not set."""
    if data_root is None:
        raise DataError(
            f"dataset {dataset!r} is read from data_root, which is not set (config key "
            f"data_root); to get the files, {HOW_TO_GET[dataset]}; {NO_DOWNLOAD}"
        )
    return Path(data_root)
