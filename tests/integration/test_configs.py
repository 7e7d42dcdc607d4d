"""Every study config under configs/ builds its DAG, and its header states the true job count."""

import functools
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


@functools.cache
def planned(config: Path) -> list:
    # a dry run in an empty directory (nothing under results/ counts), stand-in raw data
    return plan.parse_dry_run(plan.dry_run(REPO, config))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_the_dag_builds_and_the_header_counts_its_trainings(config):
    jobs = planned(config)
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


def test_the_study_table_in_the_docs_is_the_one_widthlab_plan_prints():
    # regenerate: widthlab plan --configfile configs/A.yaml --configfile … --docs docs/running.md
    studies = [(str(c.relative_to(REPO)), planned(c)) for c in CONFIGS]
    text = (REPO / "docs" / "running.md").read_text()
    block = re.search(r"widthlab:studies:begin[^\n]*\n(.*?)\n<!-- widthlab:studies:end", text, re.S)
    assert block, "docs/running.md has no studies block"
    assert block[1].strip() == plan.format_studies(studies).strip()
