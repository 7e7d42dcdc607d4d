"""Integrity through the CLI on the tiny config: reruns of every stage, corrupted, misplaced
and re-saved artifacts, mixed code and config (issue 16)."""

import subprocess
import sys

import pytest
from conftest import fork, job_counts, snakemake

pytestmark = pytest.mark.integration

# stage → the rules `widthlab rerun STAGE` must run (the tiny config's rule names)
STAGES = {
    "activations": {"activations_0", "activations_1"},
    "similarity": {
        "similarity_models_0",
        "similarity_models_1",
        "similarity_cross",
        "similarity_summary",
    },
    "units": {"units_model_0", "units_model_1", "units_summary"},
    "clones": {"clones_model_0", "clones_model_1", "clones_summary"},
    "transfer": {"transfer_model", "transfer_atlas", "transfer_summary"},
    "bottleneck": {"bottleneck_study", "bottleneck_linear", "bottleneck_summary"},
    "report": {"headline", "joint_summary", "joint_prune_clone"},
    "training": {"training_summary"},
}


def widthlab_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "widthlab.cli", *args], cwd=cwd, capture_output=True, text=True
    )


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_rerun_plans_exactly_the_jobs_of_each_stage(tiny_run, stage):
    result = widthlab_cli("rerun", stage, "--", "-n", cwd=tiny_run)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BUG" not in result.stdout + result.stderr
    assert set(job_counts(result.stdout)) == STAGES[stage]


def test_rerun_of_two_stages_runs_them_and_nothing_else(tiny_run, tmp_path):
    workdir = fork(tiny_run, tmp_path)
    table = workdir / "results/summary/units_headline.parquet"
    before = table.stat().st_mtime_ns
    result = widthlab_cli("rerun", "activations", "units", "--", "--cores", "2", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert table.stat().st_mtime_ns > before
    assert "now run again with the next plain `snakemake`" in result.stdout
    counts = job_counts(snakemake(workdir, "-n").stdout)
    assert "activations_0" not in counts and "units_summary" not in counts
    assert "headline" in counts  # downstream of units: out of date, as the message says
