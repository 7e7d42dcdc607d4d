"""Provenance records: what one artifact was made from, stored in the artifact (Parquet schema
metadata, NPZ entry) or its ``<file>.prov.json`` sidecar; reading them back and walking the chain
of inputs to the raw data."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from widthlab import __version__, io
from widthlab.provenance.environment import (
    _digest,
    code_version,
    config_hash,
    device_info,
    flatten,
    input_entry,
    iso,
    package_versions,
    slurm_info,
)

RECORD_KEY = "widthlab.provenance"
SIDECAR_SUFFIX = io.SIDECAR_SUFFIX
SCHEMA_VERSION = 1


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
    ``recorded`` (the consumer's ``{path, sha256, bytes}`` entry, None for the first),
    ``error`` (why an existing file's record could not be read, else None), ``changed`` (how the
    file now differs from the hash its consumer recorded, else None) and ``content`` (why the
    file no longer matches the hash of its own content, else None).
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
            "changed": None,
            "content": None,
        }
        if depth > 0 and step["exists"]:
            try:
                step["provenance"] = read_provenance(resolved)
            except io.ArtifactError as error:
                step["error"] = str(error)
        if step["exists"]:
            step["changed"] = _changed(resolved, recorded)
            if step["provenance"] is not None:
                step["content"] = _content_error(resolved)
        steps.append(step)
        inputs = (step["provenance"] or {}).get("inputs", [])
        for entry in reversed(inputs):  # reversed: the stack pops them in recorded order
            stack.append((entry["path"], _resolve(base, entry["path"]), depth + 1, entry))
    return steps


def _changed(path: Path, recorded: Mapping[str, Any] | None) -> str | None:
    """How ``path`` differs from the hash its consumer recorded (None: it does not)."""
    sha = (recorded or {}).get("sha256")
    if not sha:
        return None
    current = _digest(path)[0]
    return None if current == sha else f"sha256 {sha[:12]} recorded, {current[:12]} now"


def _content_error(path: Path) -> str | None:
    try:
        io.verify(path)
    except io.ArtifactError as error:
        return str(error)
    return None
