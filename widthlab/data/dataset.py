"""The :class:`Dataset`: standardised splits, the probe set and split-aligned extras.

Extras (``Dataset.extras``) are arrays stored alongside; keys starting with ``y_train`` or
``train_`` and ``noisy_mask`` are aligned with the train split (cut by ``subsample``), keys
starting with ``y_test`` or ``test_`` with the test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from widthlab.data.raw import DataError


def train_aligned(key: str) -> bool:
    return key == "noisy_mask" or key.startswith(("y_train", "train_"))


def test_aligned(key: str) -> bool:
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
            key: (value[:n] if train_aligned(key) else value) for key, value in self.extras.items()
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
            if train_aligned(key) and len(value) != len(self.y_train):
                problems.append(f"extra {key!r} has {len(value)} rows for the train split")
            if test_aligned(key) and len(value) != len(self.y_test):
                problems.append(f"extra {key!r} has {len(value)} rows for the test split")
        if problems:
            raise DataError(f"{where}: inconsistent dataset: " + "; ".join(problems))
