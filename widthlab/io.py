"""Reading and writing artifacts: atomic writes, Parquet / NPZ / JSON with clear errors.

Every write goes to a temporary file in the destination folder first and is moved into place with
``os.replace``, so a killed job never leaves a half-written artifact under its final name.
Every read of a missing or corrupt artifact raises :class:`ArtifactError`, whose message names the
file, the format that was expected and the command that rebuilds it.

Every artifact carries the SHA-256 of its own content and every reader here checks it, so a
flipped bit or a table re-saved by other code is never consumed: Parquet in the schema metadata
key ``widthlab.content_sha256`` (over the encoded column data, which precedes the footer, and the
other metadata entries), NPZ in the entry ``content_sha256`` (over every array's name, dtype,
shape and bytes), any other file in its ``<file>.prov.json`` sidecar (``artifact_sha256``, over
the file's bytes). A Parquet or NPZ file without its hash is refused (``verify=False`` reads it
anyway); another file is checked when it has a sidecar.
"""

from __future__ import annotations

import contextlib
import hashlib
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
CONTENT_KEY = "content_sha256"  # the NPZ entry that holds the arrays' SHA-256
PARQUET_CONTENT_KEY = "widthlab.content_sha256"  # the Parquet metadata key of the data's SHA-256
SIDECAR_SUFFIX = ".prov.json"
RESERVED = (PROVENANCE_KEY, CONTENT_KEY)
_UNHASHED = (PARQUET_CONTENT_KEY, "ARROW:schema")  # the schema blob repeats the metadata


def rebuild_hint(path: str | os.PathLike) -> str:
    """The command that rebuilds ``path`` (and then its consumers)."""
    return (
        f"rebuild it with `snakemake --force {os.fspath(path)}` (plus your usual options, e.g. "
        "--workflow-profile), then run snakemake again for what reads it"
    )


class ArtifactError(Exception):
    """An artifact is missing, truncated or not in the format its reader expects."""


class ContentChanged(ArtifactError):
    """An artifact's content differs from the hash recorded when it was written."""


class NoContentHash(ArtifactError):
    """A Parquet or NPZ artifact without the hash of its content (re-saved by other code)."""


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
    return ArtifactError(f"{path}: missing (expected {what}): {rebuild_hint(path)}")


def _unreadable(path, what: str, error: Exception) -> ArtifactError:
    return ArtifactError(f"{path}: not a readable {what} ({error}): {rebuild_hint(path)}")


def content_mismatch(path, recorded: str, current: str) -> ArtifactError:
    return ContentChanged(
        f"{path}: content changed since it was written (sha256 {recorded[:12]} recorded, "
        f"{current[:12]} now): {rebuild_hint(path)}"
    )


def no_content_hash(path) -> ArtifactError:
    return NoContentHash(
        f"{path}: carries no content hash (re-saved by other code, or written before hashes were "
        f"recorded), so it cannot be trusted: {rebuild_hint(path)}"
    )


def _read_bytes(path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise _missing(path, what) from None
    except OSError as error:
        raise _unreadable(path, what, error) from None


def sidecar_hash(path: str | os.PathLike) -> str | None:
    """The ``artifact_sha256`` recorded in ``<path>.prov.json``; None without a sidecar."""
    sidecar = Path(f"{os.fspath(path)}{SIDECAR_SUFFIX}")
    if not sidecar.exists():
        return None
    try:
        recorded = json.loads(sidecar.read_text(encoding="utf-8")).get("artifact_sha256")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as error:
        raise _unreadable(sidecar, "provenance sidecar", error) from None
    return recorded if isinstance(recorded, str) else None


def check_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Raise :class:`ArtifactError` if ``data`` (the bytes of ``path``) differ from the hash its
    sidecar records; a file without a sidecar passes."""
    recorded = sidecar_hash(path)
    if recorded is not None:
        current = hashlib.sha256(data).hexdigest()
        if current != recorded:
            raise content_mismatch(path, recorded, current)


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


def load_json(path: str | os.PathLike, verify: bool = True) -> Any:
    """A JSON file; checked against the hash its sidecar records, if it has one."""
    data = _read_bytes(path, "a JSON file")
    if verify:
        check_bytes(path, data)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _unreadable(path, "JSON file", error) from None


# ------------------------------------------------------------------------------------ Parquet


def _footer_start(data: bytes | memoryview) -> int:
    """Where the footer of Parquet bytes begins: the column data lies before it."""
    if len(data) < 12 or bytes(data[-4:]) != b"PAR1":
        raise ValueError("no Parquet footer (truncated?)")
    start = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    if start < 4:
        raise ValueError("Parquet footer length out of range")
    return start


def parquet_content_hash(data: bytes | memoryview, metadata: Mapping[bytes, bytes]) -> str:
    """SHA-256 of a Parquet file's column data and schema metadata (but its own entry)."""
    digest = hashlib.sha256(memoryview(data)[: _footer_start(data)])
    for key in sorted(metadata):
        if key.decode("utf-8", "replace") not in _UNHASHED:
            digest.update(b"\0" + key + b"\0" + metadata[key])
    return digest.hexdigest()


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def write_parquet(
    df: pd.DataFrame, path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``df`` to Parquet atomically; ``metadata`` joins the schema metadata (pandas' kept),
    and so does the SHA-256 of the content (:func:`parquet_content_hash`)."""
    table = pa.Table.from_pandas(df)
    merged = dict(table.schema.metadata or {})
    merged.update({str(k).encode(): str(v).encode() for k, v in (metadata or {}).items()})
    merged.pop(PARQUET_CONTENT_KEY.encode(), None)
    first = _parquet_bytes(table.replace_schema_metadata(merged))
    sha = parquet_content_hash(first, merged)
    merged[PARQUET_CONTENT_KEY.encode()] = sha.encode()
    data = _parquet_bytes(table.replace_schema_metadata(merged))
    if parquet_content_hash(data, merged) != sha:  # the column data must not depend on metadata
        raise RuntimeError(f"{path}: Parquet column data changed with its metadata")
    write_bytes(path, data)


def _parquet_error(path, error: Exception) -> ArtifactError:
    if isinstance(error, FileNotFoundError):
        return _missing(path, "a Parquet file")
    return _unreadable(path, "Parquet file", error)


def _check_parquet(path, data: bytes) -> dict[bytes, bytes]:
    """The schema metadata of Parquet ``data`` after checking its content hash."""
    try:
        metadata = dict(pq.read_metadata(pa.BufferReader(data)).metadata or {})
        current = parquet_content_hash(data, metadata)
    except (OSError, pa.ArrowException, ValueError) as error:
        raise _parquet_error(path, error) from None
    recorded = metadata.get(PARQUET_CONTENT_KEY.encode())
    if recorded is None:
        raise no_content_hash(path)
    if recorded.decode("utf-8", "replace") != current:
        raise content_mismatch(path, recorded.decode("utf-8", "replace"), current)
    return metadata


def read_parquet(
    path: str | os.PathLike, columns: list[str] | None = None, verify: bool = True
) -> pd.DataFrame:
    """A Parquet table, read once; its content hash checked unless ``verify`` is False."""
    data = _read_bytes(path, "a Parquet file")
    if verify:
        _check_parquet(path, data)
    try:
        return pq.read_table(pa.BufferReader(data), columns=columns).to_pandas()
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
        if key in RESERVED:
            raise ValueError(f"{path}: the array name {key!r} is reserved")
        array = np.asanyarray(value)
        if array.dtype.hasobject:
            raise ValueError(
                f"{path}: array {key!r} has dtype object, which NPZ cannot hold safely"
            )
        out[key] = array
    hashed = npz_content_hash(out)
    if provenance is not None:
        out[PROVENANCE_KEY] = np.array(json.dumps(to_jsonable(provenance)))
    out[CONTENT_KEY] = np.array(hashed)
    writer = np.savez_compressed if compress else np.savez
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        writer(handle, **out)


def npz_content_hash(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over each array's name, dtype, shape and bytes, in name order (reserved entries
    left out)."""
    digest = hashlib.sha256()
    for key in sorted(k for k in arrays if k not in RESERVED):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"\0{key}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(memoryview(array).cast("B") if array.size else b"")
    return digest.hexdigest()


def check_npz(path, arrays: Mapping[str, np.ndarray], recorded: str | None) -> None:
    """Raise :class:`ArtifactError` unless ``arrays`` hash to ``recorded``."""
    if recorded is None:
        raise no_content_hash(path)
    current = npz_content_hash(arrays)
    if current != recorded:
        raise content_mismatch(path, recorded, current)


def _open_npz(path):
    if not os.path.exists(path):
        raise _missing(path, "an NPZ archive")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise _unreadable(path, "NPZ archive", error) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ArtifactError(
            f"{path}: a single .npy array, not an NPZ archive: {rebuild_hint(path)}"
        )
    return archive


def _read_member(path, archive, key: str) -> np.ndarray:
    try:
        return archive[key]
    except Exception as error:  # zlib / CRC / truncated member / bad header
        raise ArtifactError(
            f"{path}: NPZ entry {key!r} is unreadable ({type(error).__name__}: {error}): "
            f"{rebuild_hint(path)}"
        ) from None


def load_npz(
    path: str | os.PathLike, required: tuple[str, ...] = (), verify: bool = True
) -> dict[str, np.ndarray]:
    """All arrays of an NPZ file except its reserved entries; ``required`` keys must be present;
    their content hash is checked unless ``verify`` is False."""
    with _open_npz(path) as archive:
        keys = [key for key in archive.files if key not in RESERVED]
        missing = [key for key in required if key not in keys]
        if missing:
            raise ArtifactError(
                f"{path}: NPZ archive lacks the entries {missing} (has {sorted(keys)}): "
                f"{rebuild_hint(path)}"
            )
        arrays = {key: _read_member(path, archive, key) for key in keys}
        if verify:
            recorded = None
            if CONTENT_KEY in archive.files:
                recorded = str(_read_member(path, archive, CONTENT_KEY))
            check_npz(path, arrays, recorded)
        return arrays


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


# ------------------------------------------------------------------------------------- verify


def verify(path: str | os.PathLike) -> bool:
    """Check an artifact against the hash of its content it carries (Parquet, NPZ) or its
    sidecar records (any other file): :class:`ArtifactError` if it differs or, for Parquet and
    NPZ, if there is none. False for another file without a sidecar (nothing to check)."""
    suffix = Path(path).suffix
    if suffix == ".parquet":
        _check_parquet(path, _read_bytes(path, "a Parquet file"))
        return True
    if suffix == ".npz":
        load_npz(path)
        return True
    if sidecar_hash(path) is None:
        return False
    check_bytes(path, _read_bytes(path, "an artifact"))
    return True
