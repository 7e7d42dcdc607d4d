import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOW_PARTS = (
    "Snakefile",
    "config.yaml",
    "rules",
    "workflow_scripts",
    "schemas",
    "envs",
    "report",
)


@pytest.fixture(autouse=True, scope="session")
def _run_from_repo_root():
    os.chdir(REPO)


def copy_workflow(destination: Path, config: dict | None = None) -> Path:
    """A fresh copy of the workflow in ``destination``, optionally with its own config.yaml."""
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(
                source, destination / part, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(source, destination / part)
    if config is not None:
        (destination / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return destination


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result


def tiny_config() -> dict:
    with open(REPO / "tests" / "integration" / "tiny.yaml") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny config run once through every stage; tests fork it (copy) before changing it."""
    workdir = copy_workflow(tmp_path_factory.mktemp("tiny"), tiny_config())
    snakemake(workdir)
    return workdir


def fork(tiny_run: Path, destination: Path) -> Path:
    """A copy of the finished run (results and Snakemake's metadata) to change freely."""
    workdir = destination / "fork"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    return workdir


def job_counts(dry_run_output: str) -> dict[str, int]:
    """{rule: jobs} from the 'Job stats' table that `snakemake -n` prints."""
    table = dry_run_output.split("Job stats:")[-1]
    rows = re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.MULTILINE)
    return {rule: int(count) for rule, count in rows if rule != "total"}


def stage_jobs(counts: dict[str, int], rule: str) -> int:
    """Jobs of a rule made once per job of a per-model stage (`<rule>_<job>`)."""
    return sum(n for name, n in counts.items() if re.fullmatch(rf"{rule}_\d+", name))


def trainings(counts: dict[str, int]) -> int:
    """Models trained by a dry run's jobs: one per `train` job, n per `train_pack<n>_…` job."""
    packed = (int(m[1]) * jobs for rule, jobs in counts.items() if (m := PACK_RULE.match(rule)))
    return counts.get("train", 0) + sum(packed)


PACK_RULE = re.compile(r"^train_pack(\d+)_[0-9a-f]+$")
