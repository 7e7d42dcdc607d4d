"""MNIST and Fashion-MNIST from the original IDX files (gzipped or not), read by our own
validating reader; Fashion-MNIST also from the Debian package's folder."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from widthlab.data.raw import (
    FASHION_MNIST_DEBIAN,
    FORMATS,
    HOW_TO_GET,
    DataError,
    Raw,
    missing_error,
    need_root,
)

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
        raise missing_error(path, dataset, fmt)
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


def idx_folder(dataset: str, data_root) -> Path:
    """The folder holding the four IDX files: data_root itself or a conventional subfolder."""
    if data_root is None and dataset == "fashion_mnist":
        candidates = [FASHION_MNIST_DEBIAN]
    else:
        root = need_root(dataset, data_root)
        subfolders = (
            ("fashion-mnist", "fashion_mnist") if dataset == "fashion_mnist" else ("mnist",)
        )
        candidates = [root, *(root / sub for sub in subfolders)]
    first = IDX_FILES["x_train"]
    for folder in candidates:
        if (folder / first).is_file() or (folder / f"{first}.gz").is_file():
            return folder
    raise missing_error(
        candidates[0] / f"{first}.gz",
        dataset,
        f"the four IDX files {', '.join(f'{n}[.gz]' for n in IDX_FILES.values())} in "
        f"{candidates[0]} (also looked in {', '.join(map(str, candidates[1:])) or 'nothing else'})",
    )


def idx_paths(dataset: str, data_root) -> dict[str, Path]:
    """The four IDX files by split key; the .gz one where both forms exist."""
    folder = idx_folder(dataset, data_root)
    paths = {}
    for key, stem in IDX_FILES.items():
        gz, plain = folder / f"{stem}.gz", folder / stem
        if gz.is_file():
            paths[key] = gz
        elif plain.is_file():
            paths[key] = plain
        else:
            raise missing_error(
                gz, dataset, f"{FORMATS[dataset]} (named {gz.name} or {plain.name})"
            )
    return paths


def load_idx(dataset: str, data_root) -> Raw:
    """``mnist`` or ``fashion_mnist`` from its four IDX files, the splits checked to match."""
    paths = idx_paths(dataset, data_root)
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
    return Raw(
        arrays["x_train"][:, None],
        arrays["y_train"].astype(np.int64),
        arrays["x_test"][:, None],
        arrays["y_test"].astype(np.int64),
        [str(name) for name in names],
    )
