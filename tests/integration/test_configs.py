"""Every study config under configs/ builds its DAG, and its header states the true job count."""

import re
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO, trainings

from widthlab import plan

pytestmark = pytest.mark.integration

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def stated_trainings(config: Path) -> int | None:
    """N from the header line 'Jobs: N trainings', if the config states one."""
    match = re.search(r"^# Jobs: (\d+) trainings", config.read_text(), flags=re.MULTILINE)
    return int(match[1]) if match else None


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_the_dag_builds_and_the_header_counts_its_trainings(config):
    # a dry run in an empty directory (nothing under results/ counts), stand-in raw data
    jobs = plan.parse_dry_run(plan.dry_run(REPO, config))
    counts = Counter(job.rule for job in jobs)
    assert counts
    stated = stated_trainings(config)
    if stated is not None:
        assert trainings(counts) == stated, f"{config.name} says {stated} trainings"


def test_every_full_scale_config_states_its_jobs_and_gpu_hours():
    for config in CONFIGS:
        text = config.read_text()
        if "device: cuda" in text:
            assert re.search(r"^# Jobs: \d+", text, flags=re.MULTILINE), config.name
            assert "GPU-hour" in text, config.name
