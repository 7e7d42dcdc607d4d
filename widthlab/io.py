"""Reading and writing artifacts: atomic writes, Parquet / NPZ / JSON with clear errors.

Every write goes to a temporary file in the destination folder first and is moved into place with
``os.replace``, so a killed job never leaves a half-written artifact under its final name.
Every read of a missing or corrupt artifact raises :class:`ArtifactError`, whose message names the
file, the format that was expected and what to do about it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

PROVENANCE_KEY = "provenance"  # the NPZ entry that holds the provenance record (JSON string)
RERUN_HINT = "rerun the rule that makes it"


class ArtifactError(Exception):
    """An artifact is missing, truncated or not in the format its reader expects."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``.

    The temporary name keeps the suffix of ``path`` (so writers that infer a format from it
    still work). On an exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600 files; artifacts follow the umask
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a leftover temporary file of :func:`atomic_path`."""
    name = Path(path).name
    return name.startswith(".") and ".tmp" in name


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _missing(path, what: str) -> ArtifactError:
    return ArtifactError(f"{path}: missing (expected {what}): {RERUN_HINT}")


# --------------------------------------------------------------------------------------- JSON


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types: numpy scalars and arrays, paths, tuples, sets, dataclasses."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, Mapping):
        return {str(key): to_jsonable(value) for key, value in obj.items()}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, set | frozenset):
        return sorted((to_jsonable(item) for item in obj), key=repr)
    if isinstance(obj, list | tuple):
        return [to_jsonable(item) for item in obj]
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return to_jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "items") and callable(obj.items):  # e.g. Snakemake's Namedlist
        with contextlib.suppress(Exception):
            return {str(key): to_jsonable(value) for key, value in obj.items()}
    return str(obj)


def save_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (numpy values and paths converted), atomically."""
    write_text(path, json.dumps(to_jsonable(obj), indent=2) + "\n")


def load_json(path: str | os.PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise _missing(path, "a JSON file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{path}: not a readable JSON file ({error}): {RERUN_HINT}") from None


# ------------------------------------------------------------------------------------ Parquet


def write_parquet(
    df: pd.DataFrame, path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``df`` to Parquet atomically; ``metadata`` joins the schema metadata (pandas' kept)."""
    table = pa.Table.from_pandas(df)
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({str(k).encode(): str(v).encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _parquet_error(path, error: Exception) -> ArtifactError:
    if isinstance(error, FileNotFoundError):
        return _missing(path, "a Parquet file")
    return ArtifactError(f"{path}: not a readable Parquet file ({error}): {RERUN_HINT}")


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    try:
        return pq.read_table(path, columns=columns).to_pandas()
    except (OSError, pa.ArrowException, ValueError) as error:
        raise _parquet_error(path, error) from None


def read_parquet_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The schema metadata of a Parquet file as ``{str: str}`` (only the footer is read)."""
    if not os.path.exists(path):
        raise _missing(path, "a Parquet file")
    try:
        raw = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException, ValueError) as error:
        raise _parquet_error(path, error) from None
    return {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in raw.items()}


# ---------------------------------------------------------------------------------------- NPZ


def save_npz(
    path: str | os.PathLike,
    arrays: Mapping[str, Any],
    provenance: Mapping[str, Any] | None = None,
    *,
    compress: bool = False,
) -> None:
    """Write ``arrays`` (and ``provenance`` as a JSON string entry) to an NPZ file, atomically.

    Object arrays are refused: they would need pickle to load, and artifacts are never unpickled.
    """
    out: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        if key == PROVENANCE_KEY:
            raise ValueError(f"{path}: the array name {PROVENANCE_KEY!r} is reserved")
        array = np.asanyarray(value)
        if array.dtype.hasobject:
            raise ValueError(
                f"{path}: array {key!r} has dtype object, which NPZ cannot hold safely"
            )
        out[key] = array
    if provenance is not None:
        out[PROVENANCE_KEY] = np.array(json.dumps(to_jsonable(provenance)))
    writer = np.savez_compressed if compress else np.savez
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        writer(handle, **out)


def _open_npz(path):
    if not os.path.exists(path):
        raise _missing(path, "an NPZ archive")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ArtifactError(f"{path}: not a readable NPZ archive ({error}): {RERUN_HINT}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ArtifactError(f"{path}: a single .npy array, not an NPZ archive: {RERUN_HINT}")
    return archive


def _read_member(path, archive, key: str) -> np.ndarray:
    try:
        return archive[key]
    except Exception as error:  # zlib / CRC / truncated member / bad header
        raise ArtifactError(
            f"{path}: NPZ entry {key!r} is unreadable ({type(error).__name__}: {error}): "
            f"{RERUN_HINT}"
        ) from None


def load_npz(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """All arrays of an NPZ file except its provenance entry; ``required`` keys must be present."""
    with _open_npz(path) as archive:
        keys = [key for key in archive.files if key != PROVENANCE_KEY]
        missing = [key for key in required if key not in keys]
        if missing:
            raise ArtifactError(
                f"{path}: NPZ archive lacks the entries {missing} (has {sorted(keys)}): "
                f"{RERUN_HINT}"
            )
        return {key: _read_member(path, archive, key) for key in keys}


def read_npz_provenance(path: str | os.PathLike) -> dict | None:
    """The provenance entry of an NPZ file (read without loading the other arrays), or None."""
    with _open_npz(path) as archive:
        if PROVENANCE_KEY not in archive.files:
            return None
        text = str(_read_member(path, archive, PROVENANCE_KEY))
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{path}: its provenance entry is not JSON ({error})") from None
