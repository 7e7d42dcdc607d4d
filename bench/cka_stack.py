"""Stacked all-pairs CKA vs the pairwise loop that recomputes both Grams for every pair.

Prints the time of each, their ratio and the largest difference, measured in one process:
    python bench/cka_stack.py [--layers 12] [--n 1000] [--pairs 12]
The loop is timed on a sample of pairs and extrapolated to all L² pairs.
"""

import argparse
import itertools
import time

import numpy as np

from widthlab.similarity import cka, cka_matrix

parser = argparse.ArgumentParser()
parser.add_argument("--layers", type=int, default=12)
parser.add_argument("--n", type=int, default=1000)
parser.add_argument("--pairs", type=int, default=12)
args = parser.parse_args()

rng = np.random.default_rng(0)
base = rng.standard_normal((args.n, 64))
layers = [
    np.maximum(base @ rng.standard_normal((64, 64 * 2 ** (i % 6))), 0) for i in range(args.layers)
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
print(f"layers={args.layers} n={args.n}")
print(f"stacked all pairs: {stacked_s:.2f} s")
print(f"pairwise loop (extrapolated from {len(sample)} pairs): {loop_s:.2f} s")
print(f"ratio loop/stacked: {loop_s / stacked_s:.1f}x   max |difference|: {difference:.1e}")
