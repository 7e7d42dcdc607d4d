"""The audit: does every artifact under a results folder still hold what was written, from the
inputs it records, with one code version and one config?

Per artifact: a record that parses (an artifact without one is reported), its own content hash
(:func:`widthlab.io.verify`), every recorded input re-hashed. Across artifacts: the code versions
(commit, plus the diff's hash when the tree was dirty) and config hashes they were made with,
with counts; more than one of either is a problem unless mixing is allowed. Artifacts made from
a dirty tree are counted (a note, not a problem). Against the workflow (:func:`dag_problems`, from
``snakemake --summary``): outputs that are missing, out of date for the current config or code,
and files no rule of the current workflow makes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from widthlab import io
from widthlab.provenance.environment import _digest
from widthlab.provenance.records import RECORD_KEY, SIDECAR_SUFFIX, _parse, _resolve, workflow_root

# folders of a results tree that hold no artifacts (Snakemake's logs and benchmarks)
NOT_ARTIFACTS = ("logs", "benchmarks")
EMBEDDED = (".parquet", ".npz")


@dataclass(frozen=True)
class Problem:
    """One audit finding. kind: changed | missing (an input) | unreadable | modified (the
    artifact itself) | orphan (a sidecar without its file) | unrecorded (no provenance) |
    mixed (code versions or configs)."""

    artifact: str
    input: str | None
    kind: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class Report:
    """What :func:`audit_report` found: the artifacts carrying a record, the problems, the code
    versions and config hashes (short label → artifacts), the config each hash stands for (as
    recorded) and the artifacts from a dirty tree."""

    artifacts: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    code_versions: Counter = field(default_factory=Counter)
    config_hashes: Counter = field(default_factory=Counter)
    configs: dict = field(default_factory=dict)
    dirty: list[str] = field(default_factory=list)

    def run_config(self) -> dict | None:
        """The config every recorded artifact was made with, or None when they disagree."""
        if len(self.config_hashes) != 1:
            return None
        return self.configs.get(next(iter(self.config_hashes)))

    def __iter__(self):  # (artifacts, problems) = audit_report(...) as before
        return iter((self.artifacts, self.problems))


def _artifacts(directory: Path) -> Iterator[tuple[Path, Path | None]]:
    """(artifact, file holding its record or None) for every file under ``directory`` but
    Snakemake's logs and benchmarks, hidden and temporary files."""
    for folder, subfolders, files in os.walk(directory):
        top = Path(folder) == directory
        subfolders[:] = sorted(
            d for d in subfolders if not d.startswith(".") and not (top and d in NOT_ARTIFACTS)
        )
        names = set(files)
        for name in sorted(files):
            file = Path(folder) / name
            if name.startswith(".") or io.is_temporary(file):
                continue
            if name.endswith(SIDECAR_SUFFIX):
                if name[: -len(SIDECAR_SUFFIX)] not in names:  # an orphan sidecar
                    yield Path(folder) / name[: -len(SIDECAR_SUFFIX)], file
            elif f"{name}{SIDECAR_SUFFIX}" in names:
                yield file, Path(folder) / f"{name}{SIDECAR_SUFFIX}"
            else:
                yield file, file if file.suffix in EMBEDDED else None


def _embedded(file: Path) -> dict | None:
    if file.name.endswith(SIDECAR_SUFFIX):
        return io.load_json(file)
    if file.suffix == ".parquet":
        text = io.read_parquet_metadata(file).get(RECORD_KEY)
        return None if text is None else _parse(file, text)
    return io.read_npz_provenance(file)


def _self_check(artifact: Path) -> list[Problem]:
    name = str(artifact)
    try:
        io.verify(artifact)
    except io.NoContentHash as error:
        return [Problem(name, None, "unrecorded", str(error))]
    except io.ContentChanged as error:
        return [Problem(name, None, "modified", str(error))]
    except io.ArtifactError as error:
        return [Problem(name, None, "unreadable", f"{name}: unreadable: {error}")]
    return []


def _input_problems(name: str, rec: dict, base: Path) -> list[Problem]:
    problems = []
    for entry in rec.get("inputs", []):
        source, recorded = entry.get("path"), entry.get("sha256")
        if not source or not recorded:
            continue
        resolved = _resolve(base, source)
        if not resolved.exists():
            message = f"{name}: input {source} is missing (looked for {resolved})"
            problems.append(Problem(name, source, "missing", message))
            continue
        current = _digest(resolved)[0]
        if current != recorded:
            message = (
                f"{name}: input {source} changed since the artifact was made "
                f"(sha256 {recorded[:12]} recorded, {current[:12]} now)"
            )
            problems.append(Problem(name, source, "changed", message))
    return problems


def read_record(artifact: Path, holder: Path | None) -> tuple[dict | None, list[Problem]]:
    """(record, problems) of one artifact whose record lies in ``holder`` (None: nowhere)."""
    name = str(artifact)
    if holder is None:
        message = (
            f"{name}: carries no provenance (no {SIDECAR_SUFFIX} sidecar; made outside widthlab?)"
        )
        return None, [Problem(name, None, "unrecorded", message)]
    try:
        rec = _embedded(holder)
    except io.ArtifactError as error:
        return None, [Problem(name, None, "unreadable", f"{name}: unreadable: {error}")]
    if rec is None:
        message = f"{name}: carries no provenance record (re-saved by other code?)"
        return None, [Problem(name, None, "unrecorded", f"{message}: {io.rebuild_hint(name)}")]
    if not isinstance(rec, dict) or not isinstance(rec.get("inputs", []), list):
        return None, [Problem(name, None, "unreadable", f"{name}: malformed provenance record")]
    return rec, []


def check_artifact(
    artifact: Path, holder: Path | None, root: str | os.PathLike | None = None
) -> tuple[dict | None, list[Problem]]:
    """(its record or None, problems) for one artifact whose record lies in ``holder``."""
    rec, problems = read_record(artifact, holder)
    if holder is not None and holder != artifact and not artifact.exists():
        hint = io.rebuild_hint(artifact)
        message = f"{artifact}: missing, but its sidecar {holder} remains: {hint}"
        return rec, [Problem(str(artifact), None, "orphan", message)]
    if not any(p.kind == "unreadable" for p in problems):
        own = _self_check(artifact)
        problems += [p for p in own if not (problems and p.kind == "unrecorded")]
    if rec is not None:
        base = Path(root) if root is not None else workflow_root(artifact, rec)
        problems += _input_problems(str(artifact), rec, base)
    return rec, problems


def code_label(rec: dict) -> str:
    """The code version of a record: its commit, plus the diff's hash when the tree was dirty."""
    code = rec.get("code") or {}
    label = str(code.get("commit", "unknown"))[:12]
    if code.get("dirty"):
        label += f"+dirty:{str(code.get('diff_sha256', '?'))[:8]}"
    return label


def _counts(counter: Counter) -> str:
    return ", ".join(f"{label} ({n} artifacts)" for label, n in counter.most_common())


def _mixed(report: Report, allow_mixed: bool) -> list[Problem]:
    problems = []
    for what, counter in (
        ("code versions", report.code_versions),
        ("configs", report.config_hashes),
    ):
        if len(counter) > 1 and not allow_mixed:
            message = (
                f"artifacts from {len(counter)} {what}: {_counts(counter)}; rerun what is older "
                "(widthlab rerun STAGE), or pass --allow-mixed to accept"
            )
            problems.append(Problem("*", None, "mixed", message))
    return problems


def audit_report(
    directory: str | os.PathLike = "results",
    root: str | os.PathLike | None = None,
    *,
    allow_mixed: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """The :class:`Report` for everything under ``directory`` (``progress(done, total)`` is
    called after each artifact)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise io.ArtifactError(f"{directory}: not a directory of artifacts")
    report = Report()
    found = list(_artifacts(directory))
    for done, (artifact, holder) in enumerate(found, 1):
        rec, problems = check_artifact(artifact, holder, root)
        report.problems.extend(problems)
        if rec is not None:
            report.artifacts.append(str(artifact))
            report.code_versions[code_label(rec)] += 1
            label = str(rec.get("config_hash"))[:12]
            report.config_hashes[label] += 1
            if isinstance(rec.get("config"), dict):
                report.configs.setdefault(label, rec["config"])
            if (rec.get("code") or {}).get("dirty"):
                report.dirty.append(str(artifact))
        if progress is not None:
            progress(done, len(found))
    report.problems.extend(_mixed(report, allow_mixed))
    return report


def audit(directory: str | os.PathLike = "results", root=None, **options) -> list[Problem]:
    """The problems :func:`audit_report` finds under ``directory``."""
    return audit_report(directory, root, **options).problems


def _outputs(directory: Path) -> Iterator[Path]:
    """The files under ``directory`` a rule should have made (no sidecars, logs, benchmarks)."""
    for artifact, _ in _artifacts(directory):
        if artifact.exists():
            yield artifact


def study_configfile(directory: str | os.PathLike, run_config: dict | None) -> Path | None:
    """The config file, in the current workflow directory, of the study whose results are
    ``directory``: the one of ``config.yaml`` and ``configs/*.yaml`` whose ``results`` folder
    holds it (the deepest such folder); of several, the one whose content is the config the run
    recorded, else the first.
    Its current content is what the audit compares under, so an edit to it is reported."""
    target = Path(directory).resolve()
    candidates = []
    for file in [Path("config.yaml"), *sorted(Path("configs").glob("*.yaml"))]:
        try:
            config = yaml.safe_load(file.read_text())
        except (OSError, yaml.YAMLError):
            continue
        results = config.get("results") if isinstance(config, dict) else None
        if isinstance(results, str) and target.is_relative_to(Path(results).resolve()):
            candidates.append((len(Path(results).resolve().parts), file, config))
    # The deepest results folder wins: results/fashion_mnist_medium belongs to its own study,
    # not to the default study whose results folder is results/.
    deepest = max((depth for depth, _, _ in candidates), default=0)
    candidates = [(file, config) for depth, file, config in candidates if depth == deepest]
    exact = [file for file, config in candidates if config == run_config]
    return (exact or [file for file, _ in candidates] or [None])[0]


def workflow_problems(
    directory: str | os.PathLike, extra: list[str], config: dict | None
) -> tuple[list[Problem], str]:
    """What ``snakemake --summary`` (run in the workflow directory, the current one) says about
    the outputs under ``directory``, and the config file it compared under: the one ``extra``
    names (--configfile), else the study's own (:func:`study_configfile`; ``config`` is the one
    the run recorded), else the workflow's default."""
    extra = list(extra)
    named = [a for a in extra if a.startswith("--configfile")]
    if named:
        used = "the --configfile given"
    else:
        own = study_configfile(directory, config)
        used = str(own) if own is not None else "the default config.yaml"
        if own is not None and own != Path("config.yaml"):
            extra += ["--configfile", str(own)]
    command = [sys.executable, "-m", "snakemake", "--summary", *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        message = f"could not compare with the current workflow under {used}: {_why(done.stderr)}"
        return [Problem("*", None, "workflow", message)], used
    return dag_problems(directory, done.stdout), used


def _why(stderr: str) -> str:
    """The line of a failed Snakemake's stderr that says why: its error message, not the
    traceback's last frame."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for marker in ("invalid configuration", "Error", "error"):
        hits = [line for line in lines if marker in line and not line.startswith("File ")]
        if hits:
            return hits[-1]
    return lines[-1] if lines else "no output"


def dag_problems(directory: str | os.PathLike, summary: str) -> list[Problem]:
    """Outputs of the current workflow under ``directory`` that are missing or out of date, and
    files there that no rule makes; ``summary`` is what ``snakemake --summary`` printed (run in
    the current directory)."""
    rows = [line.split("\t") for line in summary.splitlines() if line.count("\t") >= 5]
    rows = [row for row in rows if row[0] != "output_file"]
    directory = Path(directory)
    inside = os.path.normpath(os.path.relpath(directory))
    problems: list[Problem] = []
    pending: dict[str, list[str]] = {}
    for path, _date, rule, _logs, status, plan, *_ in rows:
        path = os.path.normpath(path)
        if not (path == inside or path.startswith(inside + os.sep)):
            continue
        if status == "missing" or not os.path.exists(path):
            message = f"{path}: an output of rule {rule} is missing: {io.rebuild_hint(path)}"
            problems.append(Problem(path, None, "missing", message))
        elif plan == "update pending":
            pending.setdefault(f"{rule} ({status})", []).append(path)
    for what, paths in pending.items():
        message = (
            f"rule {what}: {len(paths)} output(s) out of date for the current workflow, e.g. "
            f"{paths[0]}: run snakemake (the same options as the run) to update them"
        )
        problems.append(Problem(paths[0], None, "outdated", message))
    made = {os.path.normpath(row[0]) for row in rows}
    for file in _outputs(directory):
        path = os.path.normpath(os.path.relpath(file))
        if path not in made:
            message = f"{path}: no rule of the current workflow makes it (from an earlier config?)"
            problems.append(Problem(path, None, "extra", message))
    return problems
