"""Provenance: who made an artifact, from what, with which code, where and when.

A record (:func:`record`) holds the rule, wildcards, params, config (and its hash), every input's
path and SHA-256, the code version (git commit + dirty flag), package versions, device, seed,
host, SLURM job id and start/end time. It travels inside the artifact: Parquet schema metadata
key ``widthlab.provenance``, NPZ entry ``provenance``, or a ``<file>.prov.json`` sidecar for any
other file. :func:`chain` walks a record back to the raw data; :func:`audit` re-hashes inputs.

Input paths are stored as given (relative paths are relative to the workflow directory, the
working directory of the job). Readers resolve them against the workflow directory, which they
infer from where the artifact now lies and the path it was recorded under, so a results tree
copied elsewhere together with its inputs still checks out.

Workflow scripts use :class:`Job`; this module never imports Snakemake.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from widthlab import __version__, io

RECORD_KEY = "widthlab.provenance"
SIDECAR_SUFFIX = io.SIDECAR_SUFFIX
SCHEMA_VERSION = 1
PACKAGES = (
    "numpy",
    "torch",
    "pandas",
    "pyarrow",
    "scipy",
    "scikit-learn",
    "seaborn",
    "matplotlib",
    "snakemake",
)
SLURM_VARIABLES = (
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_RESTART_COUNT",
    "SLURM_CLUSTER_NAME",
    "SLURM_JOB_NODELIST",
)
_CHUNK = 1 << 20


# ------------------------------------------------------------------------------------- hashing


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_DIGESTS: dict[tuple, tuple[str, int]] = {}


def _digest(path: Path) -> tuple[str, int]:
    """(sha256, bytes) of a file, or of a directory tree (its files' relative paths and hashes).

    Cached on (real path, size, mtime, inode), so a job that writes several outputs, or an audit
    of many artifacts sharing an input, reads each input once.
    """
    stat = path.stat()
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _DIGESTS:
        if path.is_dir():
            tree = hashlib.sha256()
            total = 0
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                sha, size = _digest(file)
                tree.update(f"{file.relative_to(path).as_posix()}\0{sha}\n".encode())
                total += size
            _DIGESTS[key] = (tree.hexdigest(), total)
        else:
            _DIGESTS[key] = (sha256_file(path), stat.st_size)
    return _DIGESTS[key]


def input_entry(path: str | os.PathLike) -> dict[str, Any]:
    """``{path, sha256, bytes}`` for one input, the path kept as given."""
    resolved = Path(path)
    entry: dict[str, Any] = {"path": os.fspath(path)}
    if not resolved.exists():
        return {**entry, "sha256": None, "bytes": None, "missing": True}
    sha, size = _digest(resolved)
    entry.update(sha256=sha, bytes=size)
    if resolved.is_dir():
        entry["directory"] = True
    return entry


# --------------------------------------------------------------------------- the environment


def _git(directory: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    result = subprocess.run(
        # --no-optional-locks: never take index.lock, so a job cannot make a user's commit fail
        ["git", "--no-optional-locks", "-C", str(directory), *args],
        capture_output=True,
        env=env,
        timeout=30,
        check=True,
    )
    return result.stdout.decode("utf-8", "replace")


@functools.lru_cache(maxsize=8)
def _code_version(directory: str) -> tuple[tuple[str, Any], ...]:
    where = Path(directory)
    try:
        commit = _git(where, "rev-parse", "HEAD").strip()
        status = _git(where, "status", "--porcelain")
    except (OSError, subprocess.SubprocessError):
        return (("commit", "unknown"), ("dirty", None))
    version: dict[str, Any] = {"commit": commit, "dirty": bool(status.strip())}
    if version["dirty"]:
        try:  # tells two dirty states apart (untracked files only show up in `dirty`)
            diff = _git(where, "diff", "HEAD", "--binary")
            version["diff_sha256"] = hashlib.sha256(diff.encode()).hexdigest()
        except (OSError, subprocess.SubprocessError):
            pass
    return tuple(version.items())


def code_version(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """``{commit, dirty}`` of the git checkout holding ``path`` (default: the widthlab package).

    Outside a git checkout (an installed wheel, no git) the commit is ``"unknown"`` and dirty is
    None. Cached per directory for the life of the process.
    """
    directory = Path(path) if path is not None else Path(__file__).resolve().parent
    return dict(_code_version(str(directory.resolve())))


@functools.lru_cache(maxsize=1)
def _package_versions() -> tuple[tuple[str, str | None], ...]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    try:
        versions["widthlab"] = importlib.metadata.version("widthlab")
    except importlib.metadata.PackageNotFoundError:
        versions["widthlab"] = __version__
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return tuple(versions.items())


def package_versions() -> dict[str, str | None]:
    """Versions of python, widthlab and the scientific stack (None where not installed)."""
    return dict(_package_versions())


def config_hash(config: Mapping[str, Any] | None) -> str:
    """SHA-256 of the canonical JSON of ``config`` (sorted keys, no whitespace)."""
    canonical = json.dumps(
        io.to_jsonable(config or {}), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_info(device: Any = None) -> dict[str, Any]:
    """What ``device`` (None, "cpu", "cuda", "cuda:1", "auto", a torch.device) ran on."""
    requested = None if device is None else str(device)
    info: dict[str, Any] = {"requested": requested, "type": "cpu", "name": cpu_model()}
    info["cpu"] = info["name"]
    if requested is None or not (requested.startswith("cuda") or requested == "auto"):
        if requested is not None:
            info["type"] = requested.split(":")[0]
        return info
    try:
        import torch
    except ImportError:
        return info
    if not torch.cuda.is_available():
        return info
    index = int(requested.split(":")[1]) if ":" in requested else torch.cuda.current_device()
    info.update(
        type="cuda",
        index=index,
        name=torch.cuda.get_device_name(index),
        cuda=torch.version.cuda,
        count=torch.cuda.device_count(),
    )
    return info


def slurm_info() -> dict[str, str]:
    return {name: os.environ[name] for name in SLURM_VARIABLES if os.environ.get(name)}


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | str | float | None) -> str | None:
    """ISO-8601 UTC (``2025-01-31T12:00:00.000Z``) of a datetime, epoch seconds, or str as is."""
    if moment is None or isinstance(moment, str):
        return moment
    if isinstance(moment, int | float):
        moment = datetime.fromtimestamp(moment, UTC)
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def flatten(items: Any) -> list[str]:
    """Paths out of a path, or (nested) iterables of paths, as strings in order."""
    if items is None:
        return []
    if isinstance(items, str | os.PathLike):
        return [os.fspath(items)]
    if isinstance(items, Mapping):
        items = items.values()
    return [path for item in items for path in flatten(item)]


# ------------------------------------------------------------------------------------- records


def record(
    *,
    rule: str,
    wildcards: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
    config: Mapping[str, Any] | None,
    inputs: Iterable[str | os.PathLike],
    outputs: Iterable[str | os.PathLike] | None,
    seed: Any = None,
    device: Any = None,
    started: datetime | str | float,
    ended: datetime | str | float | None = None,
    artifact: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The provenance record of one artifact (``artifact``) written by one job."""
    slurm = slurm_info()
    return {
        "schema": SCHEMA_VERSION,
        "artifact": None if artifact is None else os.fspath(artifact),
        "rule": rule,
        "wildcards": io.to_jsonable(wildcards or {}),
        "params": io.to_jsonable(params or {}),
        "config_hash": config_hash(config),
        "config": io.to_jsonable(config or {}),
        "inputs": [input_entry(path) for path in flatten(inputs)],
        "outputs": flatten(outputs),
        "code": code_version(),
        "packages": package_versions(),
        "device": device_info(device),
        "seed": io.to_jsonable(seed),
        "host": socket.gethostname(),
        "slurm_job_id": slurm.get("SLURM_JOB_ID"),
        "slurm": slurm,
        "workdir": os.getcwd(),
        "started": iso(started),
        "ended": iso(ended),
        "widthlab": __version__,
    }


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(path)}{SIDECAR_SUFFIX}")


def write_sidecar(path: str | os.PathLike, rec: Mapping[str, Any]) -> Path:
    """Write ``<path>.prov.json`` with ``rec`` plus the artifact's own hash and size."""
    sha, size = _digest(Path(path))
    target = sidecar_path(path)
    io.save_json(target, {**rec, "artifact_sha256": sha, "artifact_bytes": size})
    return target


def read_provenance(path: str | os.PathLike) -> dict | None:
    """The record of an artifact: embedded (``.parquet``, ``.npz``) or its sidecar; None if none.

    A ``.prov.json`` path is read as the sidecar itself. Raises :class:`~widthlab.io.ArtifactError`
    when the artifact is missing or unreadable.
    """
    path = Path(path)
    if path.name.endswith(SIDECAR_SUFFIX):
        return io.load_json(path)
    embedded = None
    if path.suffix == ".parquet":
        text = io.read_parquet_metadata(path).get(RECORD_KEY)
        embedded = None if text is None else _parse(path, text)
    elif path.suffix == ".npz":
        embedded = io.read_npz_provenance(path)
    if embedded is not None:
        return embedded
    sidecar = sidecar_path(path)
    if sidecar.exists():
        return io.load_json(sidecar)
    if not path.exists():
        raise io.ArtifactError(f"{path}: missing (expected an artifact or raw file)")
    return None


def _parse(path: Path, text: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise io.ArtifactError(f"{path}: its provenance record is not JSON ({error})") from None


def workflow_root(path: str | os.PathLike, rec: Mapping[str, Any] | None) -> Path:
    """The workflow directory of an artifact: where its recorded (relative) path is rooted now.

    ``results/x.parquet`` recorded, found at ``/copy/results/x.parquet`` → ``/copy``; the current
    directory when that cannot be told.
    """
    recorded = (rec or {}).get("artifact")
    here = Path(os.path.abspath(path))
    if recorded and not os.path.isabs(recorded):
        parts = Path(os.path.normpath(recorded)).parts
        if ".." not in parts and here.parts[-len(parts) :] == parts:
            return Path(*here.parts[: -len(parts)]) if len(here.parts) > len(parts) else Path("/")
    return Path.cwd()


def _resolve(root: Path, path: str) -> Path:
    return Path(path) if os.path.isabs(path) else root / path


# --------------------------------------------------------------------------------------- chain


def chain(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[dict]:
    """Every step from an artifact back to the raw files, depth first, each file once.

    A step: ``path`` (as recorded by its consumer; as given for the first), ``resolved``,
    ``depth`` (0 for ``path``), ``exists``, ``provenance`` (the record, None for raw files),
    ``recorded`` (the consumer's ``{path, sha256, bytes}`` entry, None for the first) and
    ``error`` (why an existing file's record could not be read, else None).
    """
    first = read_provenance(path)
    base = Path(root) if root is not None else workflow_root(path, first)
    steps: list[dict] = []
    seen: set[str] = set()
    stack: list[tuple[str, Path, int, dict | None]] = [(os.fspath(path), Path(path), 0, None)]
    while stack:
        shown, resolved, depth, recorded = stack.pop()
        key = os.path.normpath(os.path.abspath(resolved))
        if key in seen:
            continue
        seen.add(key)
        step = {
            "path": shown,
            "resolved": str(resolved),
            "depth": depth,
            "exists": resolved.exists(),
            "provenance": first if depth == 0 else None,
            "recorded": recorded,
            "error": None,
        }
        if depth > 0 and step["exists"]:
            try:
                step["provenance"] = read_provenance(resolved)
            except io.ArtifactError as error:
                step["error"] = str(error)
        steps.append(step)
        inputs = (step["provenance"] or {}).get("inputs", [])
        for entry in reversed(inputs):  # reversed: the stack pops them in recorded order
            stack.append((entry["path"], _resolve(base, entry["path"]), depth + 1, entry))
    return steps


# --------------------------------------------------------------------------------------- audit


@dataclass(frozen=True)
class Problem:
    """One audit finding. kind: changed | missing | unreadable | modified | orphan."""

    artifact: str
    input: str | None
    kind: str
    message: str

    def __str__(self) -> str:
        return self.message


def _artifacts(directory: Path) -> Iterator[tuple[Path, Path]]:
    """(artifact, file holding its record) for each Parquet / NPZ / sidecar under ``directory``."""
    for folder, subfolders, files in os.walk(directory):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(files):
            file = Path(folder) / name
            if io.is_temporary(file):
                continue
            if name.endswith(SIDECAR_SUFFIX):
                yield Path(folder) / name[: -len(SIDECAR_SUFFIX)], file
            elif file.suffix in (".parquet", ".npz"):
                yield file, file


def _embedded(file: Path) -> dict | None:
    if file.name.endswith(SIDECAR_SUFFIX):
        return io.load_json(file)
    if file.suffix == ".parquet":
        text = io.read_parquet_metadata(file).get(RECORD_KEY)
        return None if text is None else _parse(file, text)
    return io.read_npz_provenance(file)


def check_artifact(
    artifact: Path, holder: Path, root: str | os.PathLike | None = None
) -> tuple[bool, list[Problem]]:
    """(carries a record, problems) for one artifact whose record lies in ``holder``."""
    name = str(artifact)
    try:
        rec = _embedded(holder)
    except io.ArtifactError as error:
        return True, [Problem(name, None, "unreadable", f"{name}: unreadable: {error}")]
    if rec is None:
        return False, []
    if not isinstance(rec, dict) or not isinstance(rec.get("inputs", []), list):
        return True, [Problem(name, None, "unreadable", f"{name}: malformed provenance record")]
    problems = []
    if holder != artifact:  # a sidecar: the artifact itself must still be what was recorded
        if not artifact.exists():
            message = f"{name}: missing, but its sidecar {holder} remains"
            return True, [Problem(name, None, "orphan", message)]
        recorded = rec.get("artifact_sha256")
        if recorded and _digest(artifact)[0] != recorded:
            message = f"{name}: changed since it was made (its sidecar records {recorded[:12]})"
            problems.append(Problem(name, None, "modified", message))
    base = Path(root) if root is not None else workflow_root(artifact, rec)
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
    return True, problems


def audit_report(
    directory: str | os.PathLike = "results", root: str | os.PathLike | None = None
) -> tuple[list[str], list[Problem]]:
    """(artifacts that carry a record, problems) for everything under ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise io.ArtifactError(f"{directory}: not a directory of artifacts")
    checked: list[str] = []
    problems: list[Problem] = []
    for artifact, holder in _artifacts(directory):
        has_record, found = check_artifact(artifact, holder, root)
        if has_record:
            checked.append(str(artifact))
        problems.extend(found)
    return checked, problems


def audit(directory: str | os.PathLike = "results", root=None) -> list[Problem]:
    """Re-hash every recorded input of every artifact under ``directory``; the mismatches.

    Reports inputs that changed or went missing, artifacts whose record cannot be read, and
    sidecar-recorded artifacts that changed themselves or are gone.
    """
    return audit_report(directory, root)[1]


# ----------------------------------------------------------------------------------------- Job


_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Job:
    """One job of a rule: logs to its log file and writes artifacts with their provenance.

    ``Job.from_snakemake(snakemake)`` in a workflow script; ``Job.standalone(...)`` elsewhere.
    ``inputs`` is a plain list of paths (extend it with files read that the rule does not
    declare, e.g. raw data); ``seed`` and ``device`` may be set once known.
    """

    def __init__(
        self,
        rule: str,
        *,
        wildcards: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        inputs: Any = (),
        outputs: Any = (),
        log_file: str | os.PathLike | None = None,
    ):
        self.rule = rule
        self.wildcards = dict(wildcards or {})
        self.params = dict(params or {})
        self.config = dict(config or {})
        self.inputs: list[str] = flatten(inputs)
        self.outputs: list[str] = flatten(outputs)
        self.log_file = None if log_file is None else os.fspath(log_file)
        self.seed: Any = None
        self.device: Any = None
        self.started = now()
        self.log = logging.getLogger(f"widthlab.job.{rule}")
        self._handler: logging.Handler | None = None
        self._excepthook = None
        if self.log_file is not None:
            self._start_logging()
        wildcards_text = "".join(f" {k}={v}" for k, v in self.wildcards.items())
        self.log.info(
            "rule %s%s on %s, code %s, started %s",
            rule,
            wildcards_text,
            socket.gethostname(),
            code_version()["commit"][:12],
            iso(self.started),
        )

    @classmethod
    def from_snakemake(cls, snakemake: Any) -> Job:
        """From the ``snakemake`` object of a ``script:`` rule (logging → ``snakemake.log[0]``)."""
        logs = flatten(getattr(snakemake, "log", None))
        return cls(
            snakemake.rule,
            wildcards=_named(getattr(snakemake, "wildcards", None)),
            params=_named(getattr(snakemake, "params", None)),
            config=getattr(snakemake, "config", None),
            inputs=getattr(snakemake, "input", ()),
            outputs=getattr(snakemake, "output", ()),
            log_file=logs[0] if logs else None,
        )

    @classmethod
    def standalone(
        cls,
        rule: str,
        inputs: Any = (),
        params: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        wildcards: Mapping[str, Any] | None = None,
        outputs: Any = (),
        log_file: str | os.PathLike | None = None,
    ) -> Job:
        """A job outside Snakemake (CLI, notebooks, tests); logs to ``log_file`` if given."""
        return cls(
            rule,
            wildcards=wildcards,
            params=params,
            config=config,
            inputs=inputs,
            outputs=outputs,
            log_file=log_file,
        )

    # -- logging

    def _start_logging(self) -> None:
        Path(self.log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        handler.setLevel(logging.INFO)
        root = logging.getLogger()
        root.addHandler(handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        self._handler = handler
        previous = sys.excepthook

        def log_then_raise(kind, value, traceback):  # the failure lands in the rule's log too
            self.log.critical("failed", exc_info=(kind, value, traceback))
            handler.flush()
            previous(kind, value, traceback)

        self._excepthook = previous
        sys.excepthook = log_then_raise

    def close(self) -> None:
        """Detach the log file (a script's end does this implicitly)."""
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        if self._excepthook is not None:
            sys.excepthook = self._excepthook
            self._excepthook = None

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- records and writers

    @contextlib.contextmanager
    def for_model(self, model_id: str, inputs: Iterable[str | os.PathLike]) -> Iterator[Job]:
        """Within: records describe one model's share of a job over several models (a pack, a
        stage's job of several models): only ``inputs`` (which must be inputs of the job) and
        ``model`` among the wildcards, so auditing one model's artifacts ignores the others."""
        inputs = flatten(inputs)
        foreign = [path for path in inputs if path not in self.inputs]
        if foreign:
            raise ValueError(f"{foreign} are not inputs of this job of rule {self.rule}")
        saved = self.inputs, self.wildcards
        self.inputs, self.wildcards = inputs, {**self.wildcards, "model": model_id}
        try:
            yield self
        finally:
            self.inputs, self.wildcards = saved

    def record(self, artifact: str | os.PathLike | None = None) -> dict[str, Any]:
        """A fresh record for ``artifact`` (end time now)."""
        return record(
            rule=self.rule,
            wildcards=self.wildcards,
            params=self.params,
            config=self.config,
            inputs=self.inputs,
            outputs=self.outputs,
            seed=self.seed,
            device=self.device,
            started=self.started,
            ended=now(),
            artifact=artifact,
        )

    def _wrote(self, path) -> None:
        self.log.info("wrote %s (%d bytes)", path, os.path.getsize(path))

    def write_parquet(self, df, path: str | os.PathLike) -> None:
        rec = json.dumps(self.record(path))
        io.write_parquet(df, path, {RECORD_KEY: rec})
        self._wrote(path)

    def save_npz(self, path: str | os.PathLike, arrays: Mapping[str, Any], **kwargs) -> None:
        io.save_npz(path, arrays, self.record(path), **kwargs)
        self._wrote(path)

    def save_json(self, path: str | os.PathLike, obj: Any) -> None:
        io.save_json(path, obj)
        self.sidecar(path)

    def save_torch(self, obj: Any, path: str | os.PathLike) -> None:
        import torch

        with io.atomic_path(path) as tmp:
            torch.save(obj, tmp)
        self.sidecar(path)

    def save_figure(self, fig, path: str | os.PathLike, dpi: int = 150) -> None:
        """``fig`` as PNG (or the format of the suffix) at ``dpi``; the figure is closed."""
        import matplotlib.pyplot as plt

        kind = Path(path).suffix.lstrip(".") or "png"
        try:
            with io.atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=dpi, format=kind, bbox_inches="tight")
        finally:
            plt.close(fig)
        self.sidecar(path)

    def sidecar(self, path: str | os.PathLike) -> Path:
        """Record ``path`` (written by other code) in ``<path>.prov.json``."""
        target = write_sidecar(path, self.record(path))
        self._wrote(path)
        return target


def _named(namedlist: Any) -> dict[str, Any]:
    """The named entries of a Snakemake Namedlist (or any mapping / object with ``items()``)."""
    if namedlist is None:
        return {}
    if isinstance(namedlist, Mapping):
        return dict(namedlist)
    items = getattr(namedlist, "items", None)
    return dict(items()) if callable(items) else {}
