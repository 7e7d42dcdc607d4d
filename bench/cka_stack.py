"""Stacked all-pairs CKA vs the pairwise loop that recomputes both Grams for every pair.

Prints the time of each, their ratio and the largest difference, measured in one process:
    python bench/cka_stack.py [--layers 30] [--n 2000] [--max-width 4096] [--pairs 12]
Defaults are the issue's goal setting: L = 30 ReLU layers of n = 2000 examples, widths cycling
through 64, 128, …, 4096; the goal is a ratio ≥ 50× on 2 CPU cores with max |difference| ≤ 1e-6
(both in float64). The loop is timed on a sample of pairs and extrapolated to all L² pairs.
"""

import argparse
import itertools
import time

import numpy as np
import torch

from widthlab.similarity import cka, cka_matrix

parser = argparse.ArgumentParser()
parser.add_argument("--layers", type=int, default=30)
parser.add_argument("--n", type=int, default=2000)
parser.add_argument("--max-width", type=int, default=4096)
parser.add_argument("--pairs", type=int, default=12)
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

pairs = list(itertools.product(range(args.layers), repeat=2))
sample = [pairs[i] for i in rng.choice(len(pairs), size=min(args.pairs, len(pairs)), replace=False)]
start = time.perf_counter()
looped = {(i, j): cka(layers[i], layers[j], estimator="debiased") for i, j in sample}
loop_s = (time.perf_counter() - start) * len(pairs) / len(sample)

difference = max(abs(stacked[i, j] - value) for (i, j), value in looped.items())
print(
    f"layers={args.layers} n={args.n} widths={widths[0]}…{widths[-1]} "
    f"threads={torch.get_num_threads()}"
)
print(f"stacked all pairs: {stacked_s:.2f} s")
print(f"pairwise loop (extrapolated from {len(sample)} pairs): {loop_s:.2f} s")
print(f"ratio loop/stacked: {loop_s / stacked_s:.1f}x   max |difference|: {difference:.1e}")
