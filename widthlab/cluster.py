"""The ``cluster`` config section as Snakemake ``resources:`` and ``threads:`` of every rule.

One place names the partition, account, QoS and GPU model (``cluster.*``), and every rule,
including those made in loops (``train_pack*``, ``activations_<n>``, ``<stage>_model_<n>``),
takes them from :meth:`Cluster.resources`, together with its run time and memory from the cost
model (:mod:`widthlab.cost`): request = estimate × ``safety``, time and host memory doubled on
each retry. So no ``--set-resources`` per rule is needed; the SLURM executor plugin reads
``slurm_partition``, ``slurm_account``, ``qos``, ``gpu``, ``gpu_model``, ``runtime`` and
``mem_mb``, and sets ``--cpus-per-task`` from the rule's threads. ``gpu_mem_mb`` is for
Snakemake's own scheduler (``--resources gpu_mem_mb=80000`` shares one GPU among jobs) and for
``widthlab plan``; SLURM has no per-job GPU-memory request. ``estimate_s`` (the estimate
itself, read by ``widthlab plan``) is read by no scheduler.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from widthlab.cost import Ceilings, Estimate, request

EstimateOf = Estimate | Callable[[Any], Estimate]  # an estimate, or one per job's wildcards


def signal_lead_s(runtime_minutes: int, longest: int = 120) -> int:
    """Seconds before the time limit at which SLURM signals a job: two minutes, but at most a
    quarter of a short job's limit (a lead beyond the limit would signal it at once)."""
    return max(1, min(longest, runtime_minutes * 60 // 4))


@dataclass(frozen=True)
class Cluster:
    """Placement, threads and request rules of every job (the ``cluster`` config section)."""

    partition: str | None = None
    gpu_partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpu_model: str | None = None
    threads: int = 1
    gpu_threads: int = 4
    safety: float = 1.5
    min_minutes: int = 5
    ceilings: Ceilings = Ceilings(256.0, 168.0, 80.0, 1.5)

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> Cluster:
        safety = float(section.get("safety", 1.5))
        return cls(
            partition=section.get("partition"),
            gpu_partition=section.get("gpu_partition"),
            account=section.get("account"),
            qos=section.get("qos"),
            gpu_model=section.get("gpu_model"),
            threads=int(section.get("threads", 1)),
            gpu_threads=int(section.get("gpu_threads", 4)),
            safety=safety,
            min_minutes=int(section.get("min_job_minutes", 5)),
            ceilings=Ceilings(
                float(section.get("max_job_mem_gb", 256)),
                float(section.get("max_job_hours", 168)),
                section.get("gpu_mem_gb", 80),
                safety,
            ),
        )

    def job_threads(self, gpu: bool) -> int:
        return self.gpu_threads if gpu else self.threads

    def placement(self, gpu: bool) -> dict[str, str]:
        """The SLURM placement resources that are set: partition, account, QoS, GPU model."""
        chosen = {
            "slurm_partition": (self.gpu_partition or self.partition) if gpu else self.partition,
            "slurm_account": self.account,
            "qos": self.qos,
            "gpu_model": self.gpu_model if gpu else None,
        }
        return {key: value for key, value in chosen.items() if value}

    def check(self, estimate: Estimate, job: str) -> None:
        """Raise ValueError (one line) when ``job`` would ask for more than the ceilings."""
        problem = self.ceilings.problem(estimate)
        if problem is not None:
            raise ValueError(f"job {job} {problem}")

    def resources(
        self, estimate: EstimateOf, gpu: bool, job: str, signal: str | None = None, **extra
    ) -> dict[str, Any]:
        """``resources:`` of a rule: runtime (minutes) and mem_mb from ``estimate`` (a fixed
        estimate is checked against the ceilings now; a per-wildcards one when Snakemake asks),
        scaled on retry; ``gpu`` and ``gpu_mem_mb`` for GPU jobs; placement; ``extra``.
        ``signal`` (e.g. ``USR1``) asks SLURM to send it before the time limit
        (:func:`signal_lead_s` seconds before), so the job can checkpoint and exit."""
        if isinstance(estimate, Estimate):
            self.check(estimate, job)

        def of(wildcards) -> Estimate:
            if isinstance(estimate, Estimate):
                return estimate
            found = estimate(wildcards)
            self.check(found, f"{job} ({', '.join(map(str, wildcards))})")
            return found

        def runtime(wildcards, attempt):
            return request(of(wildcards), attempt, self.safety, self.min_minutes).runtime

        def mem_mb(wildcards, attempt):
            return request(of(wildcards), attempt, self.safety).mem_mb

        def estimate_s(wildcards):
            return round(of(wildcards).seconds)

        # estimate_s: the cost model's own figure, for `widthlab plan` (no scheduler reads it)
        resources: dict[str, Any] = {"runtime": runtime, "mem_mb": mem_mb, "estimate_s": estimate_s}
        if signal is not None:

            def slurm_extra(wildcards, attempt):
                lead = signal_lead_s(runtime(wildcards, attempt))
                return f"--signal={signal}@{lead}"

            resources["slurm_extra"] = slurm_extra
        if gpu:

            def gpu_mem_mb(wildcards):
                return request(of(wildcards), 1, self.safety).gpu_mem_mb

            resources.update(gpu=1, gpu_mem_mb=gpu_mem_mb)
        return {**resources, **self.placement(gpu), **extra}


# ------------------------------------------------------------------------- slurm-check

SLURM_PLUGIN = "snakemake_executor_plugin_slurm"


def slurm_problems() -> list[str]:
    """What stops `snakemake --workflow-profile profiles/slurm` here, each with its remedy."""
    import importlib.util
    import shutil

    problems = []
    if importlib.util.find_spec(SLURM_PLUGIN) is None:
        problems.append(
            "the Snakemake SLURM executor plugin is not installed (Snakemake would only say "
            "\"invalid choice: 'slurm'\"): pip install snakemake-executor-plugin-slurm, "
            "or pip install 'widthlab[slurm]'"
        )
    for command, what in (("sbatch", "submit jobs"), ("squeue", "watch them")):
        if shutil.which(command) is None:
            problems.append(
                f"`{command}` is not on PATH ({what}): run on a login node of the cluster"
            )
    if shutil.which("sacct") is not None:
        try:
            done = subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True, timeout=20)
            failed = done.returncode != 0
        except (OSError, subprocess.TimeoutExpired):
            failed = True
        if failed:
            problems.append(
                "`sacct` exists but fails (no slurmdbd?): the plugin checks job status with it "
                "and would wait forever; ask for accounting, or add `slurm-status-command: "
                "squeue` to a copy of profiles/slurm/config.yaml"
            )
    return problems
