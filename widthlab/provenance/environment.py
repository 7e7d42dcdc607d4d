"""What a provenance record says about where and how a job ran: file hashes, the code version
(git commit, dirty flag), package versions, the device, SLURM, times."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from widthlab import __version__, io

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
