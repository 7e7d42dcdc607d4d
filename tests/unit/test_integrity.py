"""Every artifact carries the hash of its own content and every reader checks it (issue 16):
a flipped bit, a table re-saved by other code, a model file copied into another model's folder
are refused with a message naming the file and the command that rebuilds it."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from widthlab import io, provenance
from widthlab.grid import parse_model_id
from widthlab.io import ArtifactError
from widthlab.model_files import load_model, save_model
from widthlab.models import build_model

W16 = "digits-mlp-w16-d1-nall-wd0-s0"
W32 = "digits-mlp-w32-d1-nall-wd0-s0"


def table() -> pd.DataFrame:
    return pd.DataFrame({"model": ["a", "b", "c"], "g": [1.566, 0.5, 2.0], "n": [1, 2, 3]})


def flip(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def footer_start(path: Path) -> int:  # the Parquet format: data, footer, 4-byte length, PAR1
    data = path.read_bytes()
    return len(data) - 8 - int.from_bytes(data[-8:-4], "little")


def test_every_flipped_bit_of_a_parquet_files_column_data_is_refused(tmp_path):
    path = tmp_path / "results" / "summary" / "headline.parquet"
    io.write_parquet(table(), path, {"widthlab.provenance": json.dumps({"rule": "r"})})
    pd.testing.assert_frame_equal(io.read_parquet(path), table())
    clean = path.read_bytes()
    for offset in range(4, footer_start(path)):  # every byte of every page, one bit each
        flip(path, offset, bit=offset % 8)
        with pytest.raises(ArtifactError) as error:
            io.read_parquet(path)
        assert str(path) in str(error.value), offset
        path.write_bytes(clean)
    assert io.read_parquet(path)["g"].tolist() == [1.566, 0.5, 2.0]


def test_a_changed_parquet_provenance_record_is_refused(tmp_path):
    path = tmp_path / "t.parquet"
    io.write_parquet(table(), path, {"widthlab.provenance": json.dumps({"rule": "units"})})
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"units"', b'"unitz"', 1))
    with pytest.raises(ArtifactError, match="content changed since it was written"):
        io.read_parquet(path)


def test_a_table_re_saved_by_other_code_is_refused_naming_the_rebuild_command(tmp_path):
    path = tmp_path / "results" / "units" / f"{W16}.parquet"
    io.write_parquet(table(), path, {"widthlab.provenance": "{}"})
    io.read_parquet(path).assign(g=42.0).to_parquet(path)
    with pytest.raises(ArtifactError) as error:
        io.read_parquet(path)
    message = str(error.value)
    assert message.startswith(f"{path}: carries no content hash")
    assert f"`snakemake --force {path}`" in message
    assert io.read_parquet(path, verify=False)["g"].tolist() == [42.0] * 3


def test_a_changed_npz_array_is_refused_and_the_hash_covers_every_array(tmp_path):
    path = tmp_path / "layers.npz"
    arrays = {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "tap_names": np.array(["a"])}
    io.save_npz(path, arrays, {"rule": "activations"})
    assert set(io.load_npz(path)) == {"x", "tap_names"}
    with np.load(path) as archive:
        stored = dict(archive)
    for name in ("x", "tap_names"):
        changed = dict(stored)
        changed[name] = np.flip(stored[name]) if name == "x" else np.array(["b"])
        np.savez(path, **changed)  # the recorded hash kept, one array changed
        with pytest.raises(ArtifactError, match=r"layers.npz: content changed .*snakemake --force"):
            io.load_npz(path)
    np.savez(path, **{k: v for k, v in stored.items() if k != io.CONTENT_KEY})
    with pytest.raises(ArtifactError, match="carries no content hash"):
        io.load_npz(path)


def test_npz_hash_tells_dtype_and_shape_apart():
    a = np.zeros(4, dtype=np.float32)
    assert io.npz_content_hash({"a": a}) != io.npz_content_hash({"a": a.reshape(2, 2)})
    assert io.npz_content_hash({"a": a}) != io.npz_content_hash({"a": a.view(np.int32)})
    assert io.npz_content_hash({"a": a}) != io.npz_content_hash({"b": a})


def test_a_json_artifact_that_differs_from_its_sidecar_is_refused(tmp_path):
    path = tmp_path / "metrics.json"
    job = provenance.Job.standalone("train")
    job.save_json(path, {"test_acc": 0.8})
    assert io.load_json(path) == {"test_acc": 0.8}
    path.write_text(json.dumps({"test_acc": 0.9}))
    with pytest.raises(ArtifactError, match="metrics.json: content changed since it was written"):
        io.load_json(path)


def save(tmp_path: Path, model_id: str) -> Path:
    spec = parse_model_id(model_id)
    path = tmp_path / "results" / "models" / model_id / "model.pt"
    path.parent.mkdir(parents=True)
    save_model(build_model(spec, (1, 8, 8), 10), spec, path)
    provenance.Job.standalone("train").sidecar(path)
    return path


def test_a_flipped_byte_in_model_pt_is_refused(tmp_path):
    path = save(tmp_path, W16)
    assert load_model(path)[1].id == W16
    flip(path, len(path.read_bytes()) // 2)
    with pytest.raises(ArtifactError, match="model.pt: content changed since it was written"):
        load_model(path)


def test_a_model_pt_copied_into_another_models_folder_is_refused(tmp_path):
    w16, w32 = save(tmp_path, W16), save(tmp_path, W32)
    for name in ("model.pt", "model.pt.prov.json"):  # the file and its sidecar, both copied
        (w16.parent / name).write_bytes((w32.parent / name).read_bytes())
    with pytest.raises(ArtifactError) as error:
        load_model(w16)
    assert f"holds model {W32}, not the {W16} its folder names" in str(error.value)
