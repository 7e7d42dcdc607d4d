"""widthlab.io: atomic writes, Parquet / NPZ / JSON round trips, and errors that name the file."""

import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from widthlab import io
from widthlab.io import ArtifactError


def table() -> pd.DataFrame:
    return pd.DataFrame({"width": [16, 32, 64], "acc": [0.5, 0.75, 1.0], "arch": ["mlp"] * 3})


def test_parquet_round_trip_keeps_data_pandas_metadata_and_ours(tmp_path):
    path = tmp_path / "deep" / "t.parquet"
    io.write_parquet(table(), path, {"widthlab.note": "hello", "other": "x"})
    pd.testing.assert_frame_equal(io.read_parquet(path), table())
    metadata = io.read_parquet_metadata(path)
    assert metadata["widthlab.note"] == "hello" and metadata["other"] == "x"
    assert "pandas" in metadata  # pandas' own schema metadata survives the merge


def test_npz_round_trip_hides_provenance_from_load(tmp_path):
    path = tmp_path / "a.npz"
    arrays = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "names": np.array(["a", "bc"])}
    io.save_npz(path, arrays, {"rule": "r", "seed": np.int64(3)})
    loaded = io.load_npz(path, required=("x",))
    assert set(loaded) == {"x", "names"}
    np.testing.assert_array_equal(loaded["x"], arrays["x"])
    assert loaded["x"].dtype == np.float32
    assert list(loaded["names"]) == ["a", "bc"]
    assert io.read_npz_provenance(path) == {"rule": "r", "seed": 3}
    with np.load(path, allow_pickle=False) as archive:  # a plain JSON string entry, no pickle
        assert archive["provenance"].shape == ()


def test_npz_without_provenance_and_compressed(tmp_path):
    path = tmp_path / "c.npz"
    io.save_npz(path, {"y": np.zeros(1000)}, compress=True)
    assert io.read_npz_provenance(path) is None
    assert io.load_npz(path)["y"].shape == (1000,)


def test_npz_refuses_object_arrays_and_the_reserved_name(tmp_path):
    with pytest.raises(ValueError, match="'bad'"):
        io.save_npz(tmp_path / "o.npz", {"bad": np.array([{}, 1], dtype=object)})
    with pytest.raises(ValueError, match="reserved"):
        io.save_npz(tmp_path / "o.npz", {"provenance": np.zeros(1)})
    assert not list(tmp_path.iterdir())


def test_json_round_trip_converts_numpy_and_paths(tmp_path):
    path = tmp_path / "m.json"
    io.save_json(path, {"acc": np.float32(0.5), "n": np.int64(3), "p": Path("a/b"), "t": (1, 2)})
    assert io.load_json(path) == {"acc": 0.5, "n": 3, "p": "a/b", "t": [1, 2]}


@pytest.mark.parametrize(
    ("reader", "name", "fmt"),
    [
        (io.read_parquet, "x.parquet", "Parquet"),
        (io.read_parquet_metadata, "x.parquet", "Parquet"),
        (io.load_npz, "x.npz", "NPZ"),
        (io.read_npz_provenance, "x.npz", "NPZ"),
        (io.load_json, "x.json", "JSON"),
    ],
)
def test_missing_file_names_the_path_and_format(tmp_path, reader, name, fmt):
    path = tmp_path / "results" / name
    with pytest.raises(ArtifactError, match="missing") as error:
        reader(path)
    assert str(path) in str(error.value) and fmt in str(error.value)
    assert f"`snakemake --force {path}`" in str(error.value)


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_parquet_names_the_file(tmp_path):
    path = tmp_path / "t.parquet"
    io.write_parquet(table(), path)
    truncate(path)
    for reader in (io.read_parquet, io.read_parquet_metadata):
        with pytest.raises(ArtifactError, match="not a readable Parquet file") as error:
            reader(path)
        assert str(path) in str(error.value)


def test_bytes_after_the_parquet_footer_make_it_unreadable(tmp_path):
    path = tmp_path / "t.parquet"
    io.write_parquet(table(), path)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match=str(path)):
        io.read_parquet(path)


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "t.parquet"
    path.write_text("width,acc\n16,0.5\n")
    with pytest.raises(ArtifactError, match="Parquet"):
        io.read_parquet(path)


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_npz_names_the_file(tmp_path, compress):
    path = tmp_path / "a.npz"
    io.save_npz(
        path, {"x": np.random.default_rng(0).normal(size=4000)}, {"r": 1}, compress=compress
    )
    truncate(path, 0.6)
    with pytest.raises(ArtifactError, match="NPZ") as error:
        io.load_npz(path)
    assert str(path) in str(error.value)


def test_corrupt_npz_member_names_the_file(tmp_path):
    path = tmp_path / "a.npz"
    io.save_npz(path, {"x": np.arange(20000, dtype=np.int64)}, compress=True)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(16)
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=str(path)):
        io.load_npz(path)


def test_text_and_npy_files_are_not_npz(tmp_path):
    text = tmp_path / "a.npz"
    text.write_text("not an archive")
    with pytest.raises(ArtifactError, match="NPZ"):
        io.load_npz(text)
    single = tmp_path / "b.npz"
    with open(single, "wb") as handle:
        np.save(handle, np.zeros(3))
    with pytest.raises(ArtifactError, match="not an NPZ archive"):
        io.load_npz(single)


def test_missing_required_entries_are_named(tmp_path):
    path = tmp_path / "a.npz"
    io.save_npz(path, {"x_train": np.zeros(2)})
    with pytest.raises(ArtifactError, match="y_train") as error:
        io.load_npz(path, required=("x_train", "y_train"))
    assert str(path) in str(error.value)


def test_corrupt_json_names_the_file(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"acc": 0.')
    with pytest.raises(ArtifactError, match="not a readable JSON file"):
        io.load_json(path)


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "t.parquet"
    io.write_parquet(table(), path)
    before = path.read_bytes()
    bad = pd.DataFrame({"mixed": [1, "a", object()]})
    with pytest.raises(Exception):  # noqa: B017 - whatever pyarrow raises
        io.write_parquet(bad, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_atomic_path_keeps_the_suffix_and_follows_the_umask(tmp_path):
    target = tmp_path / "fig.png"
    with io.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and io.is_temporary(tmp)
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
