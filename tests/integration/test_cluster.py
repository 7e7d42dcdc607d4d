"""Every study config through profiles/slurm: each job asks for what the cost model says.

A dry run of each ``configs/*.yaml`` (stand-in raw data, a ``cluster`` section naming a CPU and
a GPU partition, an account and a GPU model) is parsed job by job; each job's estimate is
recomputed here from the models its inputs and outputs name, by the cost functions, and its
runtime and mem_mb must lie between 1× and 2× of it (the request is estimate × safety 1.5;
runtime at least ``cluster.min_job_minutes``);
every GPU job must carry the GPU partition, the account, the GPU model and the GPU threads.
"""

import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from widthlab import cost, cost_stages, plan
from widthlab.bottleneck import jobs as bottleneck_jobs
from widthlab.grid import MODEL_ID_PATTERN, grids_from_config, parse_model_id
from widthlab.similarity.jobs import choose_pairs

pytestmark = pytest.mark.integration

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
CLUSTER = "cluster={partition: cpu, gpu_partition: gpu, account: lab, gpu_model: h100}"
MODEL_IN_PATH = re.compile(rf"/({MODEL_ID_PATTERN})(?:/|\.parquet)")


def full_config(path: Path) -> dict:
    """The config as the workflow sees it: defaults from the schema, the cluster section."""
    from snakemake.utils import validate

    config = yaml.safe_load(path.read_text())
    config["cluster"] = {"partition": "cpu", "gpu_partition": "gpu", "account": "lab"}
    validate(config, str(REPO / "schemas" / "config.schema.yaml"))
    return config


def models_in(paths):
    found = (MODEL_IN_PATH.search(p) for p in paths)
    return list(dict.fromkeys(m[1] for m in found if m))


class Expected:
    """The cost model's estimate of a dry run's job, from what the job names."""

    def __init__(self, config: dict):
        self.config = config
        self.gpu = config["device"] != "cpu"
        self.threads = config["cluster"]["gpu_threads"] if self.gpu else 1
        self.s = cost.CostSettings.from_config(config, threads=self.threads)
        self.grids = grids_from_config(config)
        self.grid_of = {}
        for name, grid in self.grids.items():
            for spec in grid.specs():
                self.grid_of.setdefault(spec.id, name)

    def models(self, section: str) -> list[str]:
        grids = self.config["analyses"][section].get("grid", "main")
        names = [grids] if isinstance(grids, str) else grids
        ids = [spec.id for n in names if n in self.grids for spec in self.grids[n].specs()]
        return list(dict.fromkeys(ids))

    def train(self, ids):
        settings = {
            **self.config["train"],
            **self.config["grids"][self.grid_of[ids[0]]].get("train", {}),
        }
        return cost.train_cost([parse_model_id(m) for m in ids], settings, self.s)

    def __call__(self, job: plan.PlannedJob) -> tuple[cost.Estimate, bool]:
        """(estimate, whether the job runs on the device)."""
        specs = [parse_model_id(m) for m in models_in(job.paths("output"))]
        wildcards = dict(w.split("=", 1) for w in job.paths("wildcards"))
        section = self.config["analyses"].get("bottleneck", {})
        family, s = job.family, self.s
        if family in ("train", "train_pack"):
            return self.train([spec.id for spec in specs]), True
        device = {
            "activations": lambda: cost.activations_cost(specs, s),
            "similarity_models": lambda: cost_stages.similarity_models_cost(specs, s),
            "units_model": lambda: cost_stages.units_cost(specs, s),
            "clones_model": lambda: cost_stages.clones_cost(specs, s),
            "transfer_model": lambda: cost_stages.transfer_cost(specs, s),
            "joint_prune_clone": lambda: cost_stages.joint_cost(
                [parse_model_id(m) for m in self.models("report")], s
            ),
            "similarity_cross": lambda: cost_stages.similarity_cross_cost(
                [
                    (parse_model_id(p.a), parse_model_id(p.b))
                    for p in choose_pairs(
                        self.models("similarity"), self.config["analyses"]["similarity"]["pairs"]
                    )
                ],
                s,
            ),
            "bottleneck_study": lambda: cost_stages.bottleneck_study_cost(
                bottleneck_jobs.job_settings(section, wildcards["regime"], wildcards["job"]),
                wildcards["job"],
                s,
            ),
            "bottleneck_linear": lambda: cost_stages.bottleneck_linear_cost(
                bottleneck_jobs.linear_settings(section), s
            ),
        }
        if family in device:
            return device[family](), True
        if family == "transfer_atlas":
            atlas = self.config["analyses"]["transfer"]["atlas"]
            uses_model = atlas["images"] == "target" or atlas["random_control"]
            return cost_stages.atlas_cost(specs, s), uses_model or atlas["feature_visualisation"]
        if family == "dataset":
            return cost_stages.dataset_cost(wildcards["data"], s), False
        summarised = {
            "headline": 5,
            "bottleneck_summary": sum("/runs.parquet" in p for p in job.paths("input")),
            "joint_summary": len(self.models("report")),
        }.get(family, len(models_in(job.paths("input"))))
        return cost_stages.summary_cost(summarised, s), False


def within_twice(asked: int, estimate: float, floor: int = 1) -> bool:
    """``asked`` is the estimate × a safety between 1 and 2, rounded up, or the floor."""
    return estimate <= asked <= max(floor, -(-2 * estimate // 1))


@pytest.mark.parametrize("path", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_job_asks_for_its_cost_model_estimate_and_its_placement(path):
    text = plan.dry_run(
        REPO, path, "--workflow-profile", str(REPO / "profiles" / "slurm"), config=[CLUSTER]
    )
    jobs = plan.parse_dry_run(text)
    assert jobs, text
    expected = Expected(full_config(path))
    gpu_jobs = 0
    for job in jobs:
        estimate, on_device = expected(job)
        gpu = expected.gpu and on_device
        resources = job.resources
        where = f"{path.name}: {job.rule} {job.fields.get('wildcards', '')}"
        floor = expected.config["cluster"]["min_job_minutes"]
        assert within_twice(job.number("runtime"), estimate.minutes, floor), (where, estimate)
        assert within_twice(job.number("mem_mb"), estimate.host_mb), (where, estimate)
        assert job.gpu == gpu, where
        if family_trains := job.family in ("train", "train_pack"):
            lead = min(120, job.number("runtime") * 60 // 4)  # checkpoint before the limit
            assert resources["slurm_extra"] == f"--signal=USR1@{lead}", where
        assert family_trains or "slurm_extra" not in resources, where
        if job.local:
            continue
        assert resources.get("slurm_account") == "lab", where
        if gpu:
            gpu_jobs += 1
            assert resources.get("slurm_partition") == "gpu", where
            assert resources.get("gpu_model") == "h100", where
            assert job.number("gpu_mem_mb") >= estimate.gpu_mb, where
            assert job.threads == expected.threads, where
        else:
            assert resources.get("slurm_partition") == "cpu", where
            assert "gpu_model" not in resources, where
    if expected.gpu:
        assert gpu_jobs > len(jobs) / 2, f"{path.name}: {gpu_jobs} of {len(jobs)} on a GPU"


def test_widthlab_plan_prints_a_table_for_every_config():
    import subprocess
    import sys

    args = [a for c in CONFIGS for a in ("--configfile", str(c.relative_to(REPO)))]
    done = subprocess.run(
        [sys.executable, "-m", "widthlab.cli", "plan", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| `configs/")]
    assert len(rows) == len(CONFIGS)
    nguyen = next(r for r in rows if "cifar10_nguyen" in r).split(" | ")
    assert nguyen[1] == "96"  # trainings, as its header states
    assert 40 < float(nguyen[4]) < 120  # GPU-hours: training alone is ≈ 49 by the header


def test_a_dry_run_without_the_raw_data_names_the_files(tmp_path):
    from conftest import snakemake

    config = yaml.safe_load((REPO / "configs" / "cifar10_nguyen.yaml").read_text())
    config["data_root"] = str(tmp_path / "nowhere")
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(REPO, "-n", "--configfile", str(tmp_path / "study.yaml"), check=False)
    assert result.returncode != 0
    message = plan.error_line(result.stdout + result.stderr)
    assert message.startswith("missing raw data: cifar10: missing ")
    assert f"{tmp_path}/nowhere/cifar-10-batches-py/data_batch_1" in message
    assert "extract it into data_root" in message


def test_a_model_too_big_for_any_node_stops_the_run_naming_its_grid_key(tmp_path):
    from conftest import snakemake

    config = yaml.safe_load((REPO / "tests" / "integration" / "tiny.yaml").read_text())
    config["grids"]["main"]["width"] = [2**30]
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(REPO, "-n", "--configfile", str(tmp_path / "study.yaml"), check=False)
    assert result.returncode != 0
    message = plan.error_line(result.stdout + result.stderr)
    assert message.startswith(
        "invalid configuration: config key grids.main: model digits-mlp-w1073741824"
    ), message
    assert "cluster.max_job_mem_gb" in message
