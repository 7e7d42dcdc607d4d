"""The dataset NPZ of the ``dataset`` rule (``results/data/{data id}.npz``): write, read back
validated, and the datasets of a job over several models."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from widthlab import io
from widthlab.data.dataset import Dataset
from widthlab.data.raw import DataError

if TYPE_CHECKING:
    from widthlab.grid import ModelSpec

ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test", "probe_idx")
EXTRA_PREFIX = "extra_"


class DatasetArtifactError(DataError, io.ArtifactError):
    """A dataset NPZ (``results/data/*.npz``) is unreadable: both a DataError and ArtifactError."""


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

    def trained_on(self, spec: ModelSpec) -> tuple[str, Dataset]:
        """(path, dataset) of the model ``spec`` with its train split cut to the examples the
        model was trained on (the first ``spec.train_size``, as training cuts it): a chunk's
        *training* error, or a fit on *training* representations, means those examples, not the
        unseen rest of the split."""
        path, dataset = self.of(spec.data.id)
        return path, dataset.subsample(spec.train_size)
