"""The GPU benchmark runs end to end (tiny sizes, on CPU here), so it cannot rot between the
sessions that have a GPU to run it on."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_bench_quick_run_prints_every_table():
    result = subprocess.run(
        [sys.executable, "bench/gpu.py", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    titles = re.findall(r"^### (.+)$", out, flags=re.MULTILINE)
    assert [t.split(",")[0] for t in titles] == [
        "Training step",
        "CIFAR ResNet-8 ×1",
        "Many small MLPs",
        "Similarity stage",
    ]
    speedups = [float(x) for x in re.findall(r"\| ([0-9.]+)× \|$", out, flags=re.MULTILINE)]
    assert len(speedups) == 4 and all(s > 0 for s in speedups)  # 2 epoch rows, 2 MLP rows
    # planned as the trainer would: 8 width-16 MLPs are one pack, widths 16 and 128 two bands
    packs = re.findall(r"^\| (\d+) (?:tiny )?MLPs.*? \| eager \| (\d+) \|", out, flags=re.MULTILINE)
    assert packs == [("4", "2"), ("8", "1")]


def test_verify_reads_bench_prints_both_times_and_their_ratio():
    result = subprocess.run(
        [sys.executable, "bench/verify_reads.py", "--synthetic-mb", "1", "--repeats", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    ratio = float(re.search(r"^ratio verified / unverified: ([0-9.]+)$", result.stdout, re.M)[1])
    assert ratio > 0 and "2 artifacts" in result.stdout
