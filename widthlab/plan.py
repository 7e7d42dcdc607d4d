"""``widthlab plan``: every job a config would run, what it asks the cluster for, in one table.

The jobs and their requests come from Snakemake itself: a dry run of the workflow (in an empty
working directory, so the whole study is planned, with ``data_root`` pointed at empty stand-ins
of the raw files, which a dry run never reads). Its job blocks are parsed
(:func:`parse_dry_run`) and summed per rule family (loop-made rules ``activations_<n>``,
``train_pack<n>_<hash>`` … count as one). Hours are the cost model's estimates, which every
job carries as the resource ``estimate_s`` beside its request.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from widthlab.data.sources import expected_raw_files
from widthlab.sizes import DATASETS

RULE_LINE = re.compile(r"^(local)?rule (\w+):$")
FIELD_LINE = re.compile(r"^    (\w+): (.*)$")


@dataclass
class PlannedJob:
    """One job of a dry run: its rule, its fields (input, output, wildcards …), resources."""

    rule: str
    local: bool = False
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def resources(self) -> dict[str, str]:
        text = self.fields.get("resources", "")
        pairs = (item.split("=", 1) for item in text.split(", ") if "=" in item)
        return {key.strip(): value.strip() for key, value in pairs}

    def number(self, resource: str) -> int:
        value = self.resources.get(resource, "0")
        return int(value) if value.isdigit() else 0

    @property
    def gpu(self) -> bool:
        return self.number("gpu") > 0

    @property
    def threads(self) -> int:
        return int(self.fields.get("threads", "1"))

    @property
    def family(self) -> str:
        return family(self.rule)

    def paths(self, key: str) -> list[str]:
        return [p for p in self.fields.get(key, "").split(", ") if p]


def family(rule: str) -> str:
    """``train_pack3_1ab2c3d4`` → ``train_pack``; ``activations_12`` → ``activations``."""
    if re.fullmatch(r"train_pack\d+_[0-9a-f]+", rule):
        return "train_pack"
    return re.sub(r"_\d+$", "", rule)


def parse_dry_run(text: str) -> list[PlannedJob]:
    """The job blocks of ``snakemake -n`` output (rule line, then indented ``key: value``)."""
    jobs: list[PlannedJob] = []
    current: PlannedJob | None = None
    for line in text.splitlines():
        if match := RULE_LINE.match(line):
            current = PlannedJob(match[2], bool(match[1]))
            jobs.append(current)
        elif current is not None and (match := FIELD_LINE.match(line)):
            current.fields[match[1]] = match[2]
        elif not line.strip():
            current = None
    return [job for job in jobs if job.rule != "all"]


@dataclass(frozen=True)
class Row:
    family: str
    jobs: int
    gpu_jobs: int
    gpu_hours: float
    cpu_hours: float  # core-hours of jobs without a GPU
    largest: PlannedJob  # the longest job of the family


def plan_rows(jobs: Iterable[PlannedJob]) -> list[Row]:
    """One row per rule family, in the dry run's order."""
    families: dict[str, list[PlannedJob]] = {}
    for job in jobs:
        families.setdefault(job.family, []).append(job)
    rows = []
    for name, members in families.items():
        hours = [j.number("estimate_s") / 3600 for j in members]
        rows.append(
            Row(
                name,
                len(members),
                sum(j.gpu for j in members),
                sum(h for h, j in zip(hours, members, strict=True) if j.gpu),
                sum(h * j.threads for h, j in zip(hours, members, strict=True) if not j.gpu),
                max(members, key=lambda j: (j.number("runtime"), j.number("mem_mb"))),
            )
        )
    return rows


def _request(job: PlannedJob) -> str:
    minutes = job.number("runtime")
    text = f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
    text += f", {job.number('mem_mb') / 1000:.3g} GB"
    if job.gpu:
        text += f", GPU {job.number('gpu_mem_mb') / 1000:.3g} GB"
    return text + f", {job.threads} CPU" + ("s" if job.threads > 1 else "")


def format_table(rows: Sequence[Row]) -> str:
    """Markdown: per rule family, jobs, GPU jobs, estimated GPU-hours and CPU core-hours, and
    the request of its longest job; a total line."""
    lines = [
        "| rule | jobs | GPU jobs | GPU-hours | CPU core-hours | longest job's request |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.family} | {r.jobs} | {r.gpu_jobs} | {r.gpu_hours:.1f} | {r.cpu_hours:.1f} "
            f"| {_request(r.largest)} |"
        )
    lines.append(f"| total | {_totals(rows, named=False)} |")
    return "\n".join(lines)


def _totals(rows: Sequence[Row], named: bool) -> str:
    """Jobs, GPU jobs, GPU-hours, CPU core-hours and the longest job of ``rows`` as cells."""
    longest = max((r.largest for r in rows), key=lambda j: j.number("runtime"))
    return (
        f"{sum(r.jobs for r in rows)} | {sum(r.gpu_jobs for r in rows)} "
        f"| {sum(r.gpu_hours for r in rows):.1f} | {sum(r.cpu_hours for r in rows):.1f} "
        f"| {longest.rule + ': ' if named else ''}{_request(longest)}"
    )


def stand_in_data(folder: Path) -> Path:
    """Empty files in place of every dataset's raw files under ``folder`` (a dry run checks
    that inputs exist, never reads them)."""
    for name in DATASETS:
        for path in expected_raw_files(name, folder):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).touch()
    return folder


def dry_run(workflow: Path, configfile: Path, *extra: str, config: Sequence[str] = ()) -> str:
    """The text of a dry run of the whole study of ``configfile`` (nothing under its results
    yet, stand-in raw data; ``config``: more ``key=value`` overrides); raises RuntimeError with
    Snakemake's message when it fails."""
    with tempfile.TemporaryDirectory(prefix="widthlab-plan-") as scratch:
        data = stand_in_data(Path(scratch) / "data")
        command = [
            *(sys.executable, "-m", "snakemake", "-n", "--cores", "256"),
            *("--snakefile", str(workflow / "Snakefile"), "--directory", scratch),
            *("--configfile", str(configfile.resolve())),
            *("--config", f"data_root={data}", *config),
            *extra,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        message = error_line(done.stdout + done.stderr)
        raise RuntimeError(message or f"snakemake exited {done.returncode}")
    return done.stdout


def error_line(stderr: str) -> str | None:
    """The message of Snakemake's error: the line after ``…Error in …:``, or the last line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    for here, line in enumerate(lines[:-1]):
        if re.match(r"^\w*(Error|Exception)\b", line):
            return lines[here + 1].strip()
    return lines[-1] if lines else None


def trainings(jobs: Iterable[PlannedJob]) -> int:
    """Models trained: one per ``train`` job, n per ``train_pack<n>_…`` job."""
    total = 0
    for job in jobs:
        if job.rule == "train":
            total += 1
        elif match := re.fullmatch(r"train_pack(\d+)_[0-9a-f]+", job.rule):
            total += int(match[1])
    return total


def format_studies(studies: Sequence[tuple[str, list[PlannedJob]]]) -> str:
    """Markdown, one row per config: trainings, jobs, estimated GPU-hours and CPU core-hours,
    and its longest job's request."""
    lines = [
        "| config | trainings | jobs | GPU jobs | GPU-hours | CPU core-hours | longest job |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, jobs in studies:
        lines.append(f"| `{name}` | {trainings(jobs)} | {_totals(plan_rows(jobs), named=True)} |")
    return "\n".join(lines)
