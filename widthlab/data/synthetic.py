"""The synthetic random-teacher task (Casper et al.), drawn from a seed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from widthlab.data.raw import SYNTHETIC, DataError, Raw, random_stream

SYNTHETIC_DEFAULTS = {"dim": 32, "hidden": 64, "classes": 10, "n_train": 2000, "n_test": 1000}


def load_synthetic(seed: int, settings: Mapping[str, Any] | None) -> Raw:
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
    rng = random_stream(seed, SYNTHETIC)
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
    return Raw(
        x_train.astype(np.float32)[:, :, None, None],
        y_train,
        x_test.astype(np.float32)[:, :, None, None],
        y_test,
        [str(c) for c in range(classes)],
        extras,
    )
