"""One model's clone measurements as now against as before, in one process, with the per-model
tables compared: now the ridge and the information imbalance are called once per model (every
chunk size at once: the full layer's cross products, distances and ranks computed once, not once
per size), and the trained head's predictions take the argmax over a contiguous class axis;
before, both were called per size and the argmax ran over the strided class axis.

    python bench/clones_model.py [--width 512] [--train 1437] [--test 360] [--repeats 2]

The layer is a ReLU layer of a random rank-32 signal plus noise, shaped like the default study's
widest digits model (1437 train and 360 test examples, 10 classes); every other setting is
``analyses.clones``' default. Prints the time of each path (best of ``--repeats``, one torch
thread), their ratio, and whether the tables are identical (they must be: same numbers).
"""

import argparse
import time

import numpy as np
import pandas as pd
import torch

from widthlab.clones.accuracy import readout_accuracy
from widthlab.clones.chunks import chunk_blocks, chunk_sizes, ii_subsample, sample_chunks
from widthlab.clones.imbalance import chunk_information_imbalance
from widthlab.clones.measure import LastLayer, average_chunks, chunk_measurements
from widthlab.clones.regression import chunk_regression
from widthlab.clones.settings import MeasureSettings

parser = argparse.ArgumentParser()
parser.add_argument("--width", type=int, default=512)
parser.add_argument("--train", type=int, default=1437)
parser.add_argument("--test", type=int, default=360)
parser.add_argument("--repeats", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(1)

rng = np.random.default_rng(0)
n = args.train + args.test
labels = rng.integers(0, 10, n)
signal = np.eye(10)[labels] @ rng.standard_normal((10, 32)) + rng.standard_normal((n, 32))
h = np.maximum(signal @ rng.standard_normal((32, args.width)), 0)
h += 0.1 * rng.standard_normal(h.shape)
head = np.linalg.lstsq(h[: args.train], np.eye(10)[labels[: args.train]], rcond=None)[0].T
layer = LastLayer(
    h[: args.train], labels[: args.train], h[args.train :], labels[args.train :], head, np.zeros(10)
)
cfg = MeasureSettings()


def head_accuracies_before(h, y, weight, bias, chunks):
    """The trained head's chunk accuracies as before (argmax over the strided class axis)."""
    h, w = torch.as_tensor(h, dtype=torch.float64), torch.as_tensor(weight, dtype=torch.float64)
    b = torch.as_tensor(bias, dtype=torch.float64).reshape(-1)[None, :, None]
    y = torch.as_tensor(y).reshape(-1)
    h_t = h.T.contiguous()
    plain, rescaled = np.empty(len(chunks)), np.empty(len(chunks))
    for positions, block in chunk_blocks(chunks, lambda size: size * h.shape[0]):
        idx = torch.as_tensor(block)
        logits = torch.bmm(w[:, idx].permute(1, 0, 2), h_t[idx])
        for out, factor in ((plain, 1.0), (rescaled, h.shape[1] / idx.shape[1])):
            hits = ((logits * factor + b).argmax(dim=1) == y[None, :]).double().mean(dim=1)
            out[positions] = hits.numpy()
    return plain, rescaled


def once_per_size(layer: LastLayer, cfg: MeasureSettings) -> pd.DataFrame:
    """The measurements as before: the ridge and the imbalance called for each size alone."""
    assert cfg == MeasureSettings(), "the reference replicates the default settings only"
    h_train, h_test = torch.from_numpy(layer.h_train), torch.from_numpy(layer.h_test)
    width = h_train.shape[1]
    h_ii = h_test[torch.as_tensor(ii_subsample(len(h_test), cfg.ii_points, cfg.seed))]
    rows, done = [], False

    def add(size, values, metric, method, split):
        rows.extend(
            {"chunk_size": size, "chunk": k, "metric": metric, "method": method}
            | {"split": split, "value": float(v)}
            for k, v in enumerate(values)
        )

    n_max = max(cfg.n_accuracy_chunks, cfg.n_readout_chunks, cfg.n_r2_chunks, cfg.n_ii_chunks)
    for size in chunk_sizes(width):
        chunks = sample_chunks(width, size, n_max, cfg.seed)
        for split, x, y in (("train", h_train, layer.y_train), ("test", h_test, layer.y_test)):
            plain, rescaled = head_accuracies_before(x, y, layer.weight, layer.bias, chunks[:100])
            add(size, plain, "accuracy", "head", split)
            add(size, rescaled, "accuracy", "head_rescaled", split)
        if not done or size == width:
            tr, te = readout_accuracy(
                h_train, layer.y_train, h_test, layer.y_test, chunks[: cfg.n_readout_chunks]
            )
            add(size, tr, "accuracy", "readout", "train")
            add(size, te, "accuracy", "readout", "test")
            done = bool(np.all(tr == 1.0))
        r2, corr = chunk_regression(h_train, h_test, chunks[: cfg.n_r2_chunks], n_corr=10)
        add(size, r2, "r2", "ridge", "test")
        add(size, corr[: cfg.n_corr_chunks], "residual_corr", "ridge", "test")
        to_full, from_full = chunk_information_imbalance(h_ii, chunks[: cfg.n_ii_chunks])
        add(size, to_full, "ii_chunk_to_full", "euclidean", "test")
        add(size, from_full, "ii_full_to_chunk", "euclidean", "test")
    return average_chunks(pd.DataFrame(rows))


def best_of(function):
    times = []
    for _ in range(args.repeats):
        start = time.process_time()
        result = function()
        times.append(time.process_time() - start)
    return min(times), result


before_s, before = best_of(lambda: once_per_size(layer, cfg))
after_s, after = best_of(lambda: average_chunks(chunk_measurements(layer, cfg)))
print(f"W = {args.width}: once per size {before_s:.2f} s, once per model {after_s:.2f} s (CPU)")
print(f"ratio {before_s / after_s:.2f}×; tables identical: {before.equals(after)}")
