"""From raw splits to a :class:`~widthlab.data.dataset.Dataset` (the steps of
:mod:`widthlab.data`): class subset, fixed class-stratified orders, label noise,
standardisation with the training split's statistics, and the probe set."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from widthlab.data.dataset import Dataset, test_aligned, train_aligned
from widthlab.data.raw import NOISE, TEST_ORDER, TRAIN_ORDER, DataError, random_stream
from widthlab.data.sources import load_raw
from widthlab.grid import DataSpec


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
        if train_aligned(key):
            out[key] = value[train]
        elif test_aligned(key):
            out[key] = value[test]
        else:
            out[key] = value
    return out


def build_dataset(
    spec: DataSpec,
    data_root: str | os.PathLike | None,
    *,
    probe_size: int | None,
    test_size: int | None = None,
    seed: int = 0,
    synthetic: Mapping[str, Any] | None = None,
) -> Dataset:
    """Load, subset, order, cut the test split to ``test_size`` (0 or None: all of it), add
    label noise, standardise and fix the probe set (module doc)."""
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

    train = train[stratified_order(y_train[train], random_stream(seed, TRAIN_ORDER))]
    test = test[stratified_order(y_test[test], random_stream(seed, TEST_ORDER))]
    if test_size:  # a prefix of the stratified order: balanced, and the same for every model
        if test_size > len(test):
            raise DataError(
                f"{spec.id}: test_size {test_size} asked for, but the test split has "
                f"{len(test)} examples"
            )
        test = test[:test_size]
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"{spec.id}: empty split ({len(train)} train, {len(test)} test examples)")
    y_train, y_test = y_train[train], y_test[test]
    extras = _take(raw.extras, train, test)

    if spec.label_noise:
        rng = random_stream(seed, NOISE)
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
