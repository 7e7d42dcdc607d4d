"""What checking every artifact's content hash adds to reading it, in one process.

    python bench/verify_reads.py [RESULTS] [--repeats 3] [--synthetic-mb 64]

Reads every artifact under RESULTS (default: results) the way consumers do, through
``widthlab.io`` (Parquet, NPZ, JSON) and ``widthlab.model_files.load_model`` (model.pt), once with
the hash check and once without (``verify=False``; for JSON and model.pt the same reads without
the sidecar comparison), alternating, best of ``--repeats``. Prints both times, their ratio and
the extra seconds; when RESULTS holds Snakemake's benchmarks (``benchmarks/**/*.tsv``) also the
extra seconds as a share of the run's summed job time (each artifact read once: a file read by
k consumers costs k times its share). Without RESULTS it writes a synthetic set first: one NPZ
and one Parquet table of ``--synthetic-mb`` MB each.
"""

import argparse
import io as bytes_io
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from widthlab import io
from widthlab.model_files import load_model

parser = argparse.ArgumentParser()
parser.add_argument("results", nargs="?")
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--synthetic-mb", type=float, default=64)
args = parser.parse_args()


def synthetic(folder: Path, mb: float) -> Path:
    rng = np.random.default_rng(0)
    n = int(mb * 2**20 / 4)
    io.save_npz(folder / "layers.npz", {"tap": rng.standard_normal(n, dtype=np.float32)})
    rows = int(mb * 2**20 / 16)
    table = pd.DataFrame({"a": rng.standard_normal(rows), "b": rng.integers(0, 9, rows)})
    io.write_parquet(table, folder / "table.parquet")
    return folder


def artifacts(results: Path) -> list[Path]:
    skip = {"logs", "benchmarks"}
    found = []
    for path in sorted(results.rglob("*")):
        if not path.is_file() or skip & set(path.relative_to(results).parts[:1]):
            continue
        if path.suffix in (".parquet", ".npz") or path.name in ("metrics.json", "model.pt"):
            found.append(path)
    return found


def read(path: Path, verify: bool) -> None:
    if path.suffix == ".parquet":
        io.read_parquet(path, verify=verify)
    elif path.suffix == ".npz":
        io.load_npz(path, verify=verify)
    elif path.suffix == ".json":
        io.load_json(path, verify=verify)
    elif verify:
        load_model(path)
    else:  # load_model without the sidecar comparison (and without the folder check)
        torch.load(bytes_io.BytesIO(path.read_bytes()), weights_only=True)


def timed(paths: list[Path], verify: bool) -> float:
    start = time.perf_counter()
    for path in paths:
        read(path, verify)
    return time.perf_counter() - start


def run_seconds(results: Path) -> float | None:
    tables = list((results / "benchmarks").rglob("*.tsv"))
    if not tables:
        return None
    return sum(float(pd.read_csv(t, sep="\t")["s"].sum()) for t in tables)


with tempfile.TemporaryDirectory() as scratch:
    results = Path(args.results) if args.results else synthetic(Path(scratch), args.synthetic_mb)
    paths = artifacts(results)
    size = sum(p.stat().st_size for p in paths) / 1e6
    timed(paths, True)  # warm the page cache and imports
    plain, checked = [], []
    for _ in range(args.repeats):
        plain.append(timed(paths, False))
        checked.append(timed(paths, True))
    run = run_seconds(results)
plain_s, checked_s = min(plain), min(checked)
print(f"{len(paths)} artifacts, {size:.1f} MB, best of {args.repeats}")
print(f"unverified reads: {plain_s:.3f} s")
print(f"verified reads:   {checked_s:.3f} s")
print(f"ratio verified / unverified: {checked_s / plain_s:.3f}")
print(f"extra: {checked_s - plain_s:.3f} s")
if run is not None:
    print(f"share of the run's job time ({run:.1f} s): {100 * (checked_s - plain_s) / run:.2f} %")
