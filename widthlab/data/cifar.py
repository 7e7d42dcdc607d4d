"""CIFAR-10 and CIFAR-100 from the python pickle batches, unpickled safely (plain containers
and numpy arrays only) and validated."""

from __future__ import annotations

import importlib
import os
import pickle
from pathlib import Path

import numpy as np

from widthlab.data.raw import (
    CIFAR10_DIR,
    CIFAR100_DIR,
    FORMATS,
    HOW_TO_GET,
    DataError,
    Raw,
    missing_error,
    need_root,
)

CIFAR_PIXELS = 3 * 32 * 32

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
        raise missing_error(path, dataset)
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
    root = need_root(dataset, data_root)
    if dataset == "cifar10":
        folder = root / CIFAR10_DIR
        names = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]
    else:
        folder = root / CIFAR100_DIR
        names = ["train", "test", "meta"]
    return [folder / name for name in names]


def load_cifar10(data_root) -> Raw:
    """CIFAR-10: five training batches and the test batch, class names from the meta file."""
    *train_files, test_file, meta_file = cifar_files("cifar10", data_root)
    for path in (*train_files, test_file, meta_file):  # name the first missing file up front
        if not path.is_file():
            raise missing_error(path, "cifar10")
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
    return Raw(x_train, y_train, x_test, y_test, names)


def load_cifar100(data_root) -> Raw:
    """CIFAR-100 with fine labels; coarse labels (and names) as extras."""
    files = cifar_files("cifar100", data_root)
    for path in files:
        if not path.is_file():
            raise missing_error(path, "cifar100")
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
    return Raw(out["x_train"], out["y_train"], out["x_test"], out["y_test"], fine, extras)
