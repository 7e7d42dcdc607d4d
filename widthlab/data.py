"""Datasets: raw loaders, class subsets, label noise, fixed orders, the probe set, and the NPZ.

:func:`build_dataset` turns a :class:`~widthlab.grid.DataSpec` into a :class:`Dataset`:

1. load the raw splits (``digits`` from scikit-learn; ``fashion_mnist`` / ``mnist`` from the
   original IDX files; ``cifar10`` / ``cifar100`` from the python pickle batches; ``synthetic``
   from a seeded random teacher), all read by our own readers that validate what they read;
2. keep only ``spec.classes`` (relabelled 0..k-1 in the order given);
3. put the train split in a fixed, shuffled, *class-stratified* order (so the first n examples
   are balanced: :meth:`Dataset.subsample` takes a prefix), and the test split likewise;
4. replace exactly ``round(label_noise * n_train)`` training labels by uniform random labels
   (extras ``noisy_mask`` and ``y_train_clean`` record which and what they were);
5. standardise every channel with the mean and standard deviation of the *training* split;
6. the probe set = the first ``probe_size`` test examples (same ones, same order, for every
   model of the dataset).

Everything is seeded by ``seed`` (one independent random stream per step) and nothing is ever
downloaded: a missing or corrupt raw file raises :class:`DataError` naming the file, the format
expected and how to obtain it.

Extras (``Dataset.extras``) are arrays stored alongside; keys starting with ``y_train`` or
``train_`` and ``noisy_mask`` are aligned with the train split (cut by ``subsample``), keys
starting with ``y_test`` or ``test_`` with the test split.
"""

from __future__ import annotations

import gzip
import importlib
import math
import os
import pickle
import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from widthlab import io
from widthlab.grid import DataSpec


class DataError(Exception):
    """Raw data or a dataset artifact is missing, truncated, malformed, or asked for wrongly."""


class DatasetArtifactError(DataError, io.ArtifactError):
    """A dataset NPZ (``results/data/*.npz``) is unreadable: both a DataError and ArtifactError."""


NO_DOWNLOAD = "widthlab never downloads data at run time"
FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
CIFAR_PIXELS = 3 * 32 * 32

SYNTHETIC_DEFAULTS = {"dim": 32, "hidden": 64, "classes": 10, "n_train": 2000, "n_test": 1000}

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
_SPLIT, _NOISE, _TRAIN_ORDER, _TEST_ORDER, _SYNTHETIC = range(5)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream]))


# ------------------------------------------------------------------------------------ Dataset


def _train_aligned(key: str) -> bool:
    return key == "noisy_mask" or key.startswith(("y_train", "train_"))


def _test_aligned(key: str) -> bool:
    return key.startswith(("y_test", "test_"))


@dataclass
class Dataset:
    """One dataset variant: standardised splits (N×C×H×W float32, int64 labels) and the probe.

    The train split is stored in a fixed shuffled, class-stratified order, so that the first n
    examples (:meth:`subsample`) are balanced; ``probe_idx`` indexes the test split.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    probe_idx: np.ndarray
    class_names: list[str]
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(training examples, test examples, probe examples)."""
        return len(self.y_train), len(self.y_test), len(self.probe_idx)

    @property
    def x_probe(self) -> np.ndarray:
        return self.x_test[self.probe_idx]

    @property
    def y_probe(self) -> np.ndarray:
        return self.y_test[self.probe_idx]

    def subsample(self, n: int | None) -> Dataset:
        """The same dataset with only its first ``n`` training examples (None: all of them)."""
        if n is None:
            return self
        available = len(self.y_train)
        if not 1 <= n <= available:
            raise DataError(
                f"{self.name}: cannot take the first {n} training examples, "
                f"the train split has {available}"
            )
        extras = {
            key: (value[:n] if _train_aligned(key) else value) for key, value in self.extras.items()
        }
        return replace(self, x_train=self.x_train[:n], y_train=self.y_train[:n], extras=extras)

    def validate(self, where: str | None = None) -> None:
        """Raise :class:`DataError` unless shapes, dtypes and indices are consistent."""
        where = where or self.name
        problems = []
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 4 or x.dtype != np.float32:
                problems.append(f"x_{split} is {x.dtype} {x.shape}, expected float32 N×C×H×W")
            if y.ndim != 1 or y.dtype != np.int64 or len(y) != len(x):
                problems.append(f"y_{split} is {y.dtype} {y.shape}, expected int64 ({len(x)},)")
            elif len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                problems.append(f"y_{split} has labels outside 0..{self.num_classes - 1}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            problems.append(f"train {self.x_train.shape[1:]} vs test {self.x_test.shape[1:]}")
        idx = self.probe_idx
        if idx.ndim != 1 or idx.dtype != np.int64:
            problems.append(f"probe_idx is {idx.dtype} {idx.shape}, expected int64 (n,)")
        elif len(idx) and (idx.min() < 0 or idx.max() >= len(self.y_test)):
            problems.append(f"probe_idx points outside the {len(self.y_test)} test examples")
        for key, value in self.extras.items():
            if _train_aligned(key) and len(value) != len(self.y_train):
                problems.append(f"extra {key!r} has {len(value)} rows for the train split")
            if _test_aligned(key) and len(value) != len(self.y_test):
                problems.append(f"extra {key!r} has {len(value)} rows for the test split")
        if problems:
            raise DataError(f"{where}: inconsistent dataset: " + "; ".join(problems))


# -------------------------------------------------------------------------------- raw loading


@dataclass
class _Raw:
    """Raw splits before subsetting and ordering (x: N×C×H×W, any numeric dtype)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # split-aligned by key prefix


def _missing(path: Path, dataset: str, fmt: str | None = None) -> DataError:
    fmt = fmt or FORMATS[dataset]
    return DataError(
        f"{path}: missing (expected {fmt}); to get it, {HOW_TO_GET[dataset]}; {NO_DOWNLOAD}"
    )


def _need_root(dataset: str, data_root) -> Path:
    if data_root is None:
        raise DataError(
            f"dataset {dataset!r} is read from data_root, which is not set (config key "
            f"data_root); to get the files, {HOW_TO_GET[dataset]}; {NO_DOWNLOAD}"
        )
    return Path(data_root)


def _load_digits(seed: int) -> _Raw:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None, :, :]  # 1797 × 1 × 8 × 8, values 0..16
    y = bunch.target.astype(np.int64)
    split = int(_rng(seed, _SPLIT).integers(2**31 - 1))
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=split
    )
    return _Raw(x_train, y_train, x_test, y_test, [str(c) for c in range(10)])


# IDX ------------------------------------------------------------------------------------------


def read_idx(path: str | os.PathLike, magic: int, *, dataset: str = "mnist") -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped if its name ends in .gz), fully validated.

    ``magic`` is the expected magic number: 0x00000803 for images (N × rows × cols),
    0x00000801 for labels (N,). Raises :class:`DataError` naming the file on any problem.
    """
    path = Path(path)
    fmt = FORMATS.get(dataset, FORMATS["mnist"])

    def bad(problem: str) -> DataError:
        return DataError(f"{path}: {problem}; expected {fmt}; to get it, {HOW_TO_GET[dataset]}")

    if not path.is_file():
        raise _missing(path, dataset, fmt)
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise bad(f"cannot be read as an IDX file ({type(error).__name__}: {error})") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) >= 4:
        (found,) = struct.unpack(">I", raw[:4])
        if found != magic:
            raise bad(f"not this IDX kind: magic number 0x{found:08x}, expected 0x{magic:08x}")
    if len(raw) < header:
        raise bad(f"truncated IDX file: {len(raw)} bytes, shorter than its {header}-byte header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if min(dims) < 1:
        raise bad(f"IDX dimensions {dims} include zero")
    expected = math.prod(dims)
    body = len(raw) - header
    if body < expected:
        raise bad(f"truncated IDX file: {body} data bytes, its header {dims} needs {expected}")
    if body > expected:
        raise bad(f"IDX file has {body - expected} bytes beyond the {expected} its header says")
    return np.frombuffer(raw, dtype=np.uint8, count=expected, offset=header).reshape(dims)


def _idx_folder(dataset: str, data_root) -> Path:
    """The folder holding the four IDX files: data_root itself or a conventional subfolder."""
    if data_root is None and dataset == "fashion_mnist":
        candidates = [FASHION_MNIST_DEBIAN]
    else:
        root = _need_root(dataset, data_root)
        subfolders = (
            ("fashion-mnist", "fashion_mnist") if dataset == "fashion_mnist" else ("mnist",)
        )
        candidates = [root, *(root / sub for sub in subfolders)]
    first = IDX_FILES["x_train"]
    for folder in candidates:
        if (folder / first).is_file() or (folder / f"{first}.gz").is_file():
            return folder
    raise _missing(
        candidates[0] / f"{first}.gz",
        dataset,
        f"the four IDX files {', '.join(f'{n}[.gz]' for n in IDX_FILES.values())} in "
        f"{candidates[0]} (also looked in {', '.join(map(str, candidates[1:])) or 'nothing else'})",
    )


def _idx_paths(dataset: str, data_root) -> dict[str, Path]:
    folder = _idx_folder(dataset, data_root)
    paths = {}
    for key, stem in IDX_FILES.items():
        gz, plain = folder / f"{stem}.gz", folder / stem
        if gz.is_file():
            paths[key] = gz
        elif plain.is_file():
            paths[key] = plain
        else:
            raise _missing(gz, dataset, f"{FORMATS[dataset]} (named {gz.name} or {plain.name})")
    return paths


def _load_idx_dataset(dataset: str, data_root) -> _Raw:
    paths = _idx_paths(dataset, data_root)
    arrays = {}
    for key, path in paths.items():
        magic = IDX_IMAGES_MAGIC if key.startswith("x") else IDX_LABELS_MAGIC
        arrays[key] = read_idx(path, magic, dataset=dataset)
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y):
            raise DataError(
                f"{paths[f'x_{split}']} has {len(x)} images but {paths[f'y_{split}']} has "
                f"{len(y)} labels; expected matching IDX files"
            )
        if y.max() > 9:
            raise DataError(f"{paths[f'y_{split}']}: labels up to {y.max()}, expected 0..9")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(
            f"{paths['x_train']} holds {arrays['x_train'].shape[1:]} images but "
            f"{paths['x_test']} holds {arrays['x_test'].shape[1:]}"
        )
    names = FASHION_MNIST_CLASSES if dataset == "fashion_mnist" else range(10)
    return _Raw(
        arrays["x_train"][:, None],
        arrays["y_train"].astype(np.int64),
        arrays["x_test"][:, None],
        arrays["y_test"].astype(np.int64),
        [str(name) for name in names],
    )


# CIFAR pickles --------------------------------------------------------------------------------

# The only globals a CIFAR pickle needs: numpy array reconstruction (written by numpy 1 as
# numpy.core.*, by numpy 2 as numpy._core.*) and the bytes codec of Python 3 protocol-2 pickles.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a data file cannot run code."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load the global {module}.{name}")
        modules = [module]
        if module.startswith("numpy.core."):  # numpy 2 renamed numpy.core to numpy._core
            modules.insert(0, "numpy._core." + module.removeprefix("numpy.core."))
        elif module.startswith("numpy._core."):  # numpy 1 reading a numpy 2 pickle
            modules.append("numpy.core." + module.removeprefix("numpy._core."))
        for candidate in modules:
            try:
                return getattr(importlib.import_module(candidate), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"cannot resolve the global {module}.{name}")


def read_cifar_pickle(
    path: str | os.PathLike, keys: tuple[str, ...], *, dataset: str = "cifar10"
) -> dict:
    """One CIFAR python pickle as a dict with str keys; ``keys`` must be present.

    Python 2 pickles have bytes keys (``b'data'``); they are decoded. Only plain containers
    and numpy arrays are unpickled, so a data file cannot run code.
    """
    path = Path(path)
    fmt = FORMATS[dataset]
    if not path.is_file():
        raise _missing(path, dataset)
    try:
        with open(path, "rb") as handle:
            obj = _CifarUnpickler(handle, encoding="bytes").load()
    except Exception as error:  # unpickling fails in many ways: EOF, bad opcode, bad global...
        raise DataError(
            f"{path}: not a readable python pickle ({type(error).__name__}: {error}); "
            f"expected {fmt}; to get it, {HOW_TO_GET[dataset]}"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: holds a {type(obj).__name__}, expected {fmt}")
    out = {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}
    missing = [key for key in keys if key not in out]
    if missing:
        raise DataError(f"{path}: lacks the entries {missing} (has {sorted(out)}); expected {fmt}")
    return out


def _cifar_images(path: Path, data, dataset: str) -> np.ndarray:
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS:
        raise DataError(
            f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 N×{CIFAR_PIXELS} "
            f"(1024 red, 1024 green, 1024 blue bytes per image, row-major); {FORMATS[dataset]}"
        )
    return data.reshape(-1, 3, 32, 32)


def _cifar_labels(path: Path, labels, n: int, classes: int, key: str) -> np.ndarray:
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise DataError(f"{path}: {key!r} is not a list of integers ({error})") from None
    if labels.shape != (n,):
        raise DataError(f"{path}: {key!r} has shape {labels.shape}, expected ({n},) like 'data'")
    if n and (labels.min() < 0 or labels.max() >= classes):
        raise DataError(f"{path}: {key!r} has values outside 0..{classes - 1}")
    return labels


def _names(path: Path, names, expected: int, key: str) -> list[str]:
    names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    if len(names) != expected:
        raise DataError(f"{path}: {key!r} lists {len(names)} names, expected {expected}")
    return names


def cifar_files(dataset: str, data_root) -> list[Path]:
    """The raw files of ``cifar10`` / ``cifar100`` under ``data_root`` (not checked)."""
    root = _need_root(dataset, data_root)
    if dataset == "cifar10":
        folder = root / CIFAR10_DIR
        names = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]
    else:
        folder = root / CIFAR100_DIR
        names = ["train", "test", "meta"]
    return [folder / name for name in names]


def _load_cifar10(data_root) -> _Raw:
    *train_files, test_file, meta_file = cifar_files("cifar10", data_root)
    for path in (*train_files, test_file, meta_file):  # name the first missing file up front
        if not path.is_file():
            raise _missing(path, "cifar10")
    splits = []
    for files in (train_files, [test_file]):
        xs, ys = [], []
        for path in files:
            batch = read_cifar_pickle(path, ("data", "labels"), dataset="cifar10")
            x = _cifar_images(path, batch["data"], "cifar10")
            xs.append(x)
            ys.append(_cifar_labels(path, batch["labels"], len(x), 10, "labels"))
        splits.append((np.concatenate(xs), np.concatenate(ys)))
    meta = read_cifar_pickle(meta_file, ("label_names",), dataset="cifar10")
    names = _names(meta_file, meta["label_names"], 10, "label_names")
    (x_train, y_train), (x_test, y_test) = splits
    return _Raw(x_train, y_train, x_test, y_test, names)


def _load_cifar100(data_root) -> _Raw:
    files = cifar_files("cifar100", data_root)
    for path in files:
        if not path.is_file():
            raise _missing(path, "cifar100")
    train_file, test_file, meta_file = files
    out = {}
    for split, path in (("train", train_file), ("test", test_file)):
        batch = read_cifar_pickle(
            path, ("data", "fine_labels", "coarse_labels"), dataset="cifar100"
        )
        x = _cifar_images(path, batch["data"], "cifar100")
        out[f"x_{split}"] = x
        out[f"y_{split}"] = _cifar_labels(path, batch["fine_labels"], len(x), 100, "fine_labels")
        out[f"y_{split}_coarse"] = _cifar_labels(
            path, batch["coarse_labels"], len(x), 20, "coarse_labels"
        )
    meta = read_cifar_pickle(meta_file, ("fine_label_names",), dataset="cifar100")
    fine = _names(meta_file, meta["fine_label_names"], 100, "fine_label_names")
    extras = {"y_train_coarse": out["y_train_coarse"], "y_test_coarse": out["y_test_coarse"]}
    if "coarse_label_names" in meta:
        coarse = _names(meta_file, meta["coarse_label_names"], 20, "coarse_label_names")
        extras["coarse_names"] = np.array(coarse)
    return _Raw(out["x_train"], out["y_train"], out["x_test"], out["y_test"], fine, extras)


# synthetic ------------------------------------------------------------------------------------


def _load_synthetic(seed: int, settings: Mapping[str, Any] | None) -> _Raw:
    """Casper et al.'s random-teacher task: x ~ N(0, I_d), y = argmax of a random ReLU net.

    Teacher: ``logits = W2 relu(W1 x) + b2`` with W1 ~ N(0, 1/d) (hidden × d), W2 ~ N(0, 1/h)
    (classes × hidden), and b2 = minus the mean teacher logit over the training inputs (so no
    class dominates). Inputs are shaped (d, 1, 1).
    """
    unknown = sorted(set(settings or {}) - set(SYNTHETIC_DEFAULTS))
    if unknown:
        raise DataError(
            f"synthetic: unknown settings {unknown}; known: {sorted(SYNTHETIC_DEFAULTS)}"
        )
    cfg = {**SYNTHETIC_DEFAULTS, **(settings or {})}
    for key, value in cfg.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise DataError(f"synthetic: {key} must be a positive integer, got {value!r}")
    if cfg["classes"] < 2:
        raise DataError(f"synthetic: classes must be at least 2, got {cfg['classes']}")
    dim, hidden, classes = cfg["dim"], cfg["hidden"], cfg["classes"]
    rng = _rng(seed, _SYNTHETIC)
    w1 = rng.standard_normal((hidden, dim)) / math.sqrt(dim)
    w2 = rng.standard_normal((classes, hidden)) / math.sqrt(hidden)
    x_train = rng.standard_normal((cfg["n_train"], dim))
    x_test = rng.standard_normal((cfg["n_test"], dim))

    def teacher(x):
        return np.maximum(x @ w1.T, 0.0) @ w2.T

    b2 = -teacher(x_train).mean(axis=0)
    y_train = np.argmax(teacher(x_train) + b2, axis=1).astype(np.int64)
    y_test = np.argmax(teacher(x_test) + b2, axis=1).astype(np.int64)
    extras = {
        "teacher_w1": w1.astype(np.float32),
        "teacher_w2": w2.astype(np.float32),
        "teacher_b2": b2.astype(np.float32),
    }
    return _Raw(
        x_train.astype(np.float32)[:, :, None, None],
        y_train,
        x_test.astype(np.float32)[:, :, None, None],
        y_test,
        [str(c) for c in range(classes)],
        extras,
    )


def load_raw(
    spec: DataSpec | str, data_root, *, seed: int = 0, synthetic: Mapping | None = None
) -> _Raw:
    """The raw splits of a dataset (no subsetting, ordering or standardisation)."""
    name = spec.name if isinstance(spec, DataSpec) else spec
    if name == "digits":
        return _load_digits(seed)
    if name in ("fashion_mnist", "mnist"):
        return _load_idx_dataset(name, data_root)
    if name == "cifar10":
        return _load_cifar10(data_root)
    if name == "cifar100":
        return _load_cifar100(data_root)
    if name == "synthetic":
        return _load_synthetic(seed, synthetic)
    raise DataError(f"unknown dataset {name!r}")


def raw_files(spec: DataSpec | str, data_root) -> list[str]:
    """The raw files a dataset is read from (for provenance); raises DataError if missing."""
    name = spec.name if isinstance(spec, DataSpec) else spec
    if name in ("fashion_mnist", "mnist"):
        return [str(path) for path in _idx_paths(name, data_root).values()]
    if name in ("cifar10", "cifar100"):
        files = cifar_files(name, data_root)
        for path in files:
            if not path.is_file():
                raise _missing(path, name)
        return [str(path) for path in files]
    if name == "digits":
        import sklearn.datasets

        bundled = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
        return [str(bundled)] if bundled.is_file() else []
    return []


def expected_raw_files(name: str, data_root) -> list[str]:
    """The raw files dataset ``name`` is read from, whether or not they exist yet (the inputs
    of the workflow's ``dataset`` rule); [] for datasets that need no files of the user's."""
    if name in ("fashion_mnist", "mnist"):
        try:
            return [str(path) for path in _idx_paths(name, data_root).values()]
        except DataError:
            folder = FASHION_MNIST_DEBIAN if data_root is None else Path(data_root)
            return [str(folder / f"{stem}.gz") for stem in IDX_FILES.values()]
    if name in ("cifar10", "cifar100") and data_root is not None:
        return [str(path) for path in cifar_files(name, data_root)]
    return []


def missing_raw_files(name: str, data_root) -> str | None:
    """One line naming the raw files of ``name`` that are missing and how to get them, or
    None when all are there."""
    if name not in HOW_TO_GET:
        return None
    if name in ("cifar10", "cifar100") and data_root is None:
        return f"{name}: data_root is not set; to get the files, {HOW_TO_GET[name]}"
    missing = [path for path in expected_raw_files(name, data_root) if not Path(path).is_file()]
    if not missing:
        return None
    shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    return f"{name}: missing {shown}; to get them, {HOW_TO_GET[name]}; {NO_DOWNLOAD}"


# ------------------------------------------------------------------------------------ building


def stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A shuffled order of ``labels`` in which every prefix holds each class in proportion.

    Each class is shuffled; its j-th member gets the key (j + u_c) / n_c with a random offset
    u_c ∈ [0, 1) per class, and examples are sorted by key. Any prefix of length n then holds
    n · n_c / N examples of class c, up to about ±1.
    """
    labels = np.asarray(labels)
    keys = np.empty(len(labels), dtype=np.float64)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        members = members[rng.permutation(len(members))]
        keys[members] = (np.arange(len(members)) + rng.random()) / len(members)
    tiebreak = rng.permutation(len(labels))
    return np.lexsort((tiebreak, keys))


def _take(raw_extras: Mapping[str, np.ndarray], train: np.ndarray, test: np.ndarray) -> dict:
    out = {}
    for key, value in raw_extras.items():
        if _train_aligned(key):
            out[key] = value[train]
        elif _test_aligned(key):
            out[key] = value[test]
        else:
            out[key] = value
    return out


def build_dataset(
    spec: DataSpec,
    data_root: str | os.PathLike | None,
    *,
    probe_size: int | None,
    seed: int = 0,
    synthetic: Mapping[str, Any] | None = None,
) -> Dataset:
    """Load, subset, order, add label noise, standardise and fix the probe set (module doc)."""
    raw = load_raw(spec, data_root, seed=seed, synthetic=synthetic)
    names = list(raw.class_names)
    train = np.arange(len(raw.y_train))
    test = np.arange(len(raw.y_test))
    y_train, y_test = raw.y_train, raw.y_test

    if spec.classes is not None:
        bad = [c for c in spec.classes if not 0 <= c < len(names)]
        if bad:
            raise DataError(
                f"{spec.id}: classes {bad} do not exist; {spec.name} has classes "
                f"0..{len(names) - 1}"
            )
        relabel = np.full(len(names), -1, dtype=np.int64)
        relabel[list(spec.classes)] = np.arange(len(spec.classes))
        train = train[relabel[y_train] >= 0]
        test = test[relabel[y_test] >= 0]
        y_train, y_test = relabel[y_train], relabel[y_test]
        names = [names[c] for c in spec.classes]

    train = train[stratified_order(y_train[train], _rng(seed, _TRAIN_ORDER))]
    test = test[stratified_order(y_test[test], _rng(seed, _TEST_ORDER))]
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"{spec.id}: empty split ({len(train)} train, {len(test)} test examples)")
    y_train, y_test = y_train[train], y_test[test]
    extras = _take(raw.extras, train, test)

    if spec.label_noise:
        rng = _rng(seed, _NOISE)
        count = int(round(spec.label_noise * len(y_train)))
        noisy = np.zeros(len(y_train), dtype=bool)
        noisy[rng.choice(len(y_train), size=count, replace=False)] = True
        extras["y_train_clean"] = y_train.copy()
        extras["noisy_mask"] = noisy
        y_train = y_train.copy()
        y_train[noisy] = rng.integers(0, len(names), size=count)

    x_train = raw.x_train[train].astype(np.float32)
    x_test = raw.x_test[test].astype(np.float32)
    channels = x_train.shape[1]
    mean, std = np.zeros(channels), np.ones(channels)
    for c in range(channels):  # one channel at a time, in place: CIFAR stays within ~1 GB
        mean[c] = x_train[:, c].mean(dtype=np.float64)
        spread = x_train[:, c].std(dtype=np.float64)
        std[c] = spread if spread > 1e-8 else 1.0  # a constant channel is only centred
        for x in (x_train, x_test):
            x[:, c] -= np.float32(mean[c])
            x[:, c] /= np.float32(std[c])
    extras["channel_mean"] = mean.astype(np.float32)
    extras["channel_std"] = std.astype(np.float32)

    if not probe_size:
        probe_size = len(y_test)
    if not 0 < probe_size <= len(y_test):
        raise DataError(
            f"{spec.id}: probe_size {probe_size} asked for, but the test split has "
            f"{len(y_test)} examples"
        )
    dataset = Dataset(
        name=spec.id,
        x_train=x_train,
        y_train=y_train.astype(np.int64),
        x_test=x_test,
        y_test=y_test.astype(np.int64),
        probe_idx=np.arange(probe_size, dtype=np.int64),
        class_names=names,
        extras=extras,
    )
    dataset.validate()
    return dataset


# ---------------------------------------------------------------------------------------- NPZ

ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test", "probe_idx")
EXTRA_PREFIX = "extra_"


def dataset_arrays(ds: Dataset) -> dict[str, np.ndarray]:
    """The NPZ entries of a dataset (without provenance)."""
    arrays = {key: getattr(ds, key) for key in ARRAY_KEYS}
    arrays["name"] = np.array(ds.name)
    arrays["class_names"] = np.array([str(name) for name in ds.class_names])
    arrays.update({EXTRA_PREFIX + key: np.asarray(value) for key, value in ds.extras.items()})
    return arrays


def save_dataset(
    ds: Dataset, path: str | os.PathLike, provenance: Mapping[str, Any] | None = None
) -> None:
    """Write ``ds`` (and ``provenance`` as a JSON string entry) to an NPZ file, atomically."""
    io.save_npz(path, dataset_arrays(ds), provenance)


def load_dataset(path: str | os.PathLike) -> Dataset:
    """A dataset saved by :func:`save_dataset`; DataError naming the file if unreadable."""
    try:
        arrays = io.load_npz(path, required=(*ARRAY_KEYS, "class_names"))
    except io.ArtifactError as error:
        raise DatasetArtifactError(f"{error} (a dataset NPZ of the dataset rule)") from None
    name = str(arrays["name"]) if "name" in arrays else Path(path).stem
    ds = Dataset(
        name=name,
        **{key: arrays[key] for key in ARRAY_KEYS},
        class_names=[str(n) for n in arrays["class_names"]],
        extras={
            key.removeprefix(EXTRA_PREFIX): value
            for key, value in arrays.items()
            if key.startswith(EXTRA_PREFIX)
        },
    )
    try:
        ds.validate(where=str(path))
    except DataError as error:
        raise DatasetArtifactError(str(error)) from None
    return ds


class DatasetFiles:
    """The dataset files of a job over several models (named ``{data id}.npz``), each loaded
    once, on first use."""

    def __init__(self, paths: Iterable[str | os.PathLike]):
        self._paths = {Path(p).stem: str(p) for p in paths}
        self._loaded: dict[str, Dataset] = {}

    def of(self, data_id: str) -> tuple[str, Dataset]:
        """(path, dataset) of the dataset ``data_id``."""
        if data_id not in self._paths:
            raise DataError(f"no dataset file for {data_id!r} among {sorted(self._paths.values())}")
        if data_id not in self._loaded:
            self._loaded[data_id] = load_dataset(self._paths[data_id])
        return self._paths[data_id], self._loaded[data_id]
