"""The checks a contributor runs: snakemake --lint, snakefmt --check, ruff."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "snakemake", "--lint", "--cores", "1"],
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"],
        [sys.executable, "-m", "ruff", "check", "."],
        [sys.executable, "-m", "ruff", "format", "--check", "."],
    ],
    ids=["snakemake-lint", "snakefmt", "ruff-check", "ruff-format"],
)
def test_repository_is_clean(command):
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
