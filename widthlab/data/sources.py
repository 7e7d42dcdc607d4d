"""Which source a dataset name reads, and its raw files: :func:`load_raw`, :func:`raw_files`
(what was read, for provenance), :func:`expected_raw_files` (the ``dataset`` rule's inputs) and
:func:`missing_raw_files` (what to tell a user before a run)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from widthlab.data.cifar import cifar_files, load_cifar10, load_cifar100
from widthlab.data.digits import digits_files, load_digits
from widthlab.data.idx import IDX_FILES, idx_paths, load_idx
from widthlab.data.raw import (
    FASHION_MNIST_DEBIAN,
    HOW_TO_GET,
    NO_DOWNLOAD,
    DataError,
    Raw,
    missing_error,
)
from widthlab.data.synthetic import load_synthetic
from widthlab.grid import DataSpec


def load_raw(
    spec: DataSpec | str, data_root, *, seed: int = 0, synthetic: Mapping | None = None
) -> Raw:
    """The raw splits of a dataset (no subsetting, ordering or standardisation)."""
    name = spec.name if isinstance(spec, DataSpec) else spec
    if name == "digits":
        return load_digits(seed)
    if name in ("fashion_mnist", "mnist"):
        return load_idx(name, data_root)
    if name == "cifar10":
        return load_cifar10(data_root)
    if name == "cifar100":
        return load_cifar100(data_root)
    if name == "synthetic":
        return load_synthetic(seed, synthetic)
    raise DataError(f"unknown dataset {name!r}")


def raw_files(spec: DataSpec | str, data_root) -> list[str]:
    """The raw files a dataset is read from (for provenance); raises DataError if missing."""
    name = spec.name if isinstance(spec, DataSpec) else spec
    if name in ("fashion_mnist", "mnist"):
        return [str(path) for path in idx_paths(name, data_root).values()]
    if name in ("cifar10", "cifar100"):
        files = cifar_files(name, data_root)
        for path in files:
            if not path.is_file():
                raise missing_error(path, name)
        return [str(path) for path in files]
    if name == "digits":
        return digits_files()
    return []


def expected_raw_files(name: str, data_root) -> list[str]:
    """The raw files dataset ``name`` is read from, whether or not they exist yet (the inputs
    of the workflow's ``dataset`` rule); [] for datasets that need no files of the user's."""
    if name in ("fashion_mnist", "mnist"):
        try:
            return [str(path) for path in idx_paths(name, data_root).values()]
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
