"""Stacked all-pairs CKA vs the pairwise loop that recomputes both Grams for every pair.

Prints the time of each, their ratio and the largest difference, measured in one process:
    python bench/cka_stack.py [--layers 30] [--n 2000] [--max-width 4096] [--cycles 1]
Defaults are the issue's goal setting: L = 30 ReLU layers of n = 2000 examples, widths cycling
through 64, 128, …, 4096; the goal is a ratio ≥ 50× on 2 CPU cores with max |difference| ≤ 1e-6
(both in float64). The loop is timed on a balanced sample of pairs and extrapolated to all L²
pairs: ``--cycles`` offsets k, each giving the L pairs (i, i + k mod L), so every layer's Gram is
built equally often, as in the full loop (a plain random sample of pairs over- or under-weights
the widest layers, whose Grams dominate the cost).
"""

import argparse
import time

import numpy as np
import torch

from widthlab.cka import cka, cka_matrix

parser = argparse.ArgumentParser()
parser.add_argument("--layers", type=int, default=30)
parser.add_argument("--n", type=int, default=2000)
parser.add_argument("--max-width", type=int, default=4096)
parser.add_argument("--cycles", type=int, default=1)
args = parser.parse_args()

rng = np.random.default_rng(0)
base = rng.standard_normal((args.n, 64))
widths = [64 * 2**k for k in range(int(np.log2(args.max_width // 64)) + 1)]
layers = [
    np.maximum(base @ rng.standard_normal((64, widths[i % len(widths)])), 0)
    for i in range(args.layers)
]

start = time.perf_counter()
stacked = cka_matrix(layers, estimator="debiased")
stacked_s = time.perf_counter() - start

L = args.layers
offsets = rng.choice(np.arange(1, L), size=min(args.cycles, L - 1), replace=False)
sample = [(i, (i + int(k)) % L) for k in offsets for i in range(L)]
start = time.perf_counter()
looped = {(i, j): cka(layers[i], layers[j], estimator="debiased") for i, j in sample}
loop_s = (time.perf_counter() - start) * L * L / len(sample)

difference = max(abs(stacked[i, j] - value) for (i, j), value in looped.items())
print(
    f"layers={args.layers} n={args.n} widths={widths[0]}…{widths[-1]} "
    f"threads={torch.get_num_threads()}"
)
print(f"stacked all pairs: {stacked_s:.2f} s")
print(f"pairwise loop (extrapolated from {len(sample)} pairs): {loop_s:.2f} s")
print(f"ratio loop/stacked: {loop_s / stacked_s:.1f}x   max |difference|: {difference:.1e}")
