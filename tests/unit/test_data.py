"""widthlab.data: real digits, byte-exact IDX and CIFAR pickle fixtures, synthetic, the NPZ."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
from sklearn.datasets import load_digits

from widthlab import io
from widthlab.data.idx import read_idx
from widthlab.data.npz import DatasetFiles, dataset_arrays, load_dataset, save_dataset
from widthlab.data.raw import DataError
from widthlab.data.sources import load_raw, raw_files
from widthlab.data.splits import build_dataset
from widthlab.grid import DataSpec, parse_model_id

# ------------------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    return build_dataset(DataSpec("digits"), None, probe_size=0, seed=0)


@pytest.fixture(scope="module")
def raw_digits():
    """sklearn's digits: pixel bytes → original label, to check labels independently."""
    bunch = load_digits()
    images = bunch.images.astype(np.uint8)
    table = {}
    for image, label in zip(images, bunch.target, strict=True):
        table.setdefault(image.tobytes(), set()).add(int(label))
    return table


def unstandardise(ds, x):
    mean = ds.extras["channel_mean"].reshape(1, -1, 1, 1)
    std = ds.extras["channel_std"].reshape(1, -1, 1, 1)
    return x * std + mean


def original_labels(ds, x, table):
    pixels = np.rint(unstandardise(ds, x)).astype(np.uint8)[:, 0]
    labels = []
    for image in pixels:
        found = table[image.tobytes()]  # KeyError: not a digit of the original data
        assert len(found) == 1  # identical images with different labels would be ambiguous
        labels.append(next(iter(found)))
    return np.array(labels)


def test_digits_shapes_dtypes_and_80_20_split(digits):
    assert digits.name == "digits"
    assert digits.x_train.shape == (1437, 1, 8, 8) and digits.x_test.shape == (360, 1, 8, 8)
    assert digits.x_train.dtype == np.float32 and digits.x_test.dtype == np.float32
    assert digits.y_train.dtype == np.int64 and digits.y_test.dtype == np.int64
    assert digits.in_shape == (1, 8, 8) and digits.num_classes == 10
    assert digits.class_names == [str(c) for c in range(10)]
    assert digits.sizes == (1437, 360, 360)
    assert digits.probe_idx.dtype == np.int64
    np.testing.assert_array_equal(digits.probe_idx, np.arange(360))


def test_digits_standardised_with_train_statistics(digits):
    assert abs(float(digits.x_train.mean(dtype=np.float64))) < 1e-5
    assert abs(float(digits.x_train.std(dtype=np.float64)) - 1.0) < 1e-5
    assert abs(float(digits.x_test.mean())) < 0.1  # test split: train's statistics, close
    # the statistics are those of the raw 0..16 pixels (sklearn digits' mean is about 4.88)
    assert 4.5 < float(digits.extras["channel_mean"][0]) < 5.3
    raw = np.rint(unstandardise(digits, digits.x_train))
    assert raw.min() == 0 and raw.max() == 16
    np.testing.assert_allclose(unstandardise(digits, digits.x_train), raw, atol=1e-4)


def test_digits_labels_match_the_original_images(digits, raw_digits):
    np.testing.assert_array_equal(
        original_labels(digits, digits.x_train, raw_digits), digits.y_train
    )
    np.testing.assert_array_equal(original_labels(digits, digits.x_test, raw_digits), digits.y_test)


def test_digits_split_is_stratified_and_every_prefix_balanced(digits):
    full = np.bincount(load_digits().target, minlength=10)
    np.testing.assert_array_less(np.abs(np.bincount(digits.y_test) - full * 0.2), 1.01)
    for n in (10, 50, 100, 333, 1000):
        counts = np.bincount(digits.y_train[:n], minlength=10)
        expected = n * np.bincount(digits.y_train) / len(digits.y_train)
        assert np.abs(counts - expected).max() <= 1.5, (n, counts)
    counts = np.bincount(digits.y_test[:50], minlength=10)
    assert counts.min() >= 4 and counts.max() <= 6  # the probe prefix is balanced too


def test_digits_is_deterministic_and_seed_changes_the_order(digits):
    again = build_dataset(DataSpec("digits"), None, probe_size=0, seed=0)
    for key in ("x_train", "y_train", "x_test", "y_test", "probe_idx"):
        np.testing.assert_array_equal(getattr(again, key), getattr(digits, key))
    other = build_dataset(DataSpec("digits"), None, probe_size=0, seed=1)
    assert not np.array_equal(other.y_train, digits.y_train)


def test_probe_is_a_fixed_prefix_of_the_test_split(digits):
    small = build_dataset(DataSpec("digits"), None, probe_size=40, seed=0)
    larger = build_dataset(DataSpec("digits"), None, probe_size=100, seed=0)
    np.testing.assert_array_equal(small.probe_idx, np.arange(40))
    np.testing.assert_array_equal(small.x_probe, digits.x_test[:40])
    np.testing.assert_array_equal(small.y_probe, digits.y_test[:40])
    np.testing.assert_array_equal(larger.x_probe[:40], small.x_probe)
    assert small.x_probe.shape == (40, 1, 8, 8)
    with pytest.raises(DataError, match="probe_size 361.*360"):
        build_dataset(DataSpec("digits"), None, probe_size=361)


def test_test_size_keeps_a_balanced_prefix_of_the_test_split(digits):
    cut = build_dataset(DataSpec("digits"), None, probe_size=50, test_size=200, seed=0)
    assert cut.sizes == (len(digits.y_train), 200, 50)
    np.testing.assert_array_equal(cut.x_test, digits.x_test[:200])  # the same order, cut
    np.testing.assert_array_equal(cut.x_train, digits.x_train)  # training split untouched
    counts = np.bincount(cut.y_test, minlength=10)
    assert counts.min() >= 19 and counts.max() <= 21  # 20 per class, up to ±1
    with pytest.raises(DataError, match="test_size 361.*360"):
        build_dataset(DataSpec("digits"), None, probe_size=0, test_size=361)


def test_class_subset_relabels_in_the_given_order(raw_digits):
    ds = build_dataset(DataSpec("digits", classes=(7, 2, 5)), None, probe_size=0)
    assert ds.name == "digits-c725"
    assert ds.class_names == ["7", "2", "5"] and ds.num_classes == 3
    assert set(np.unique(ds.y_train)) == {0, 1, 2}
    original = original_labels(ds, ds.x_train, raw_digits)
    np.testing.assert_array_equal(np.array([7, 2, 5])[ds.y_train], original)
    np.testing.assert_array_equal(
        np.array([7, 2, 5])[ds.y_test], original_labels(ds, ds.x_test, raw_digits)
    )
    full = np.bincount(load_digits().target)
    assert len(ds.y_train) + len(ds.y_test) == full[7] + full[2] + full[5]
    with pytest.raises(DataError, match="classes \\[10\\]"):
        build_dataset(DataSpec("digits", classes=(1, 10)), None, probe_size=0)


def test_label_noise_replaces_an_exact_fraction_of_train_labels_only(digits):
    noisy = build_dataset(DataSpec("digits", label_noise=0.25), None, probe_size=0)
    assert noisy.name == "digits-rl0.25"
    mask = noisy.extras["noisy_mask"]
    assert mask.dtype == np.bool_ and mask.sum() == 359  # 0.25 × 1437 = 359.25
    # same images, same order; clean labels kept; untouched labels unchanged; test untouched
    np.testing.assert_array_equal(noisy.x_train, digits.x_train)
    np.testing.assert_array_equal(noisy.extras["y_train_clean"], digits.y_train)
    np.testing.assert_array_equal(noisy.y_train[~mask], digits.y_train[~mask])
    np.testing.assert_array_equal(noisy.y_test, digits.y_test)
    changed = (noisy.y_train[mask] != digits.y_train[mask]).mean()
    assert 0.8 < changed < 0.97  # uniform over 10 classes: 9 in 10 differ
    again = build_dataset(DataSpec("digits", label_noise=0.25), None, probe_size=0)
    np.testing.assert_array_equal(again.y_train, noisy.y_train)
    everything = build_dataset(DataSpec("digits", label_noise=1.0), None, probe_size=0)
    assert everything.extras["noisy_mask"].all()


def test_subsample_takes_the_first_n_training_examples(digits):
    noisy = build_dataset(DataSpec("digits", label_noise=0.5), None, probe_size=100)
    sub = noisy.subsample(200)
    assert sub.sizes == (200, 360, 100)
    np.testing.assert_array_equal(sub.x_train, noisy.x_train[:200])
    np.testing.assert_array_equal(sub.y_train, noisy.y_train[:200])
    np.testing.assert_array_equal(sub.extras["noisy_mask"], noisy.extras["noisy_mask"][:200])
    np.testing.assert_array_equal(sub.x_probe, noisy.x_probe)
    np.testing.assert_array_equal(sub.extras["channel_mean"], noisy.extras["channel_mean"])
    assert digits.subsample(None) is digits
    assert len(digits.subsample(1437).y_train) == 1437
    with pytest.raises(DataError, match="1438.*1437"):
        digits.subsample(1438)


def test_digits_raw_file_is_recorded_for_provenance():
    files = raw_files(DataSpec("digits"), None)
    assert len(files) == 1 and files[0].endswith("digits.csv.gz") and os.path.isfile(files[0])


# ---------------------------------------------------------------------------------------- IDX

IDX_TRAIN, IDX_TEST, ROWS, COLS = 20, 10, 4, 5


def fixture_image(i: int) -> np.ndarray:
    """Image i: pixel (r, c) = i·8 + r·5 + c (distinct per image, < 256)."""
    return np.array([[i * 8 + r * 5 + c for c in range(COLS)] for r in range(ROWS)], dtype=np.uint8)


def idx_images_bytes(first: int, n: int) -> bytes:
    header = bytes([0, 0, 0x08, 0x03]) + struct.pack(">III", n, ROWS, COLS)
    pixels = b"".join(
        bytes([i * 8 + r * 5 + c]) for i in range(first, first + n) for r in range(ROWS)
        for c in range(COLS)
    )  # fmt: skip
    return header + pixels


def idx_labels_bytes(labels) -> bytes:
    return bytes([0, 0, 0x08, 0x01]) + struct.pack(">I", len(labels)) + bytes(labels)


TRAIN_LABELS = [(3 * i) % 10 for i in range(IDX_TRAIN)]
TEST_LABELS = [(7 * i + 1) % 10 for i in range(IDX_TEST)]


def write_idx_fixture(folder, gz: bool):
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "train-images-idx3-ubyte": idx_images_bytes(0, IDX_TRAIN),
        "train-labels-idx1-ubyte": idx_labels_bytes(TRAIN_LABELS),
        "t10k-images-idx3-ubyte": idx_images_bytes(IDX_TRAIN, IDX_TEST),
        "t10k-labels-idx1-ubyte": idx_labels_bytes(TEST_LABELS),
    }
    for name, data in files.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def test_idx_header_bytes_are_the_standard_ones():
    data = idx_images_bytes(0, 2)
    assert data[:16].hex() == "00000803000000020000000400000005"
    assert data[16:21] == bytes([0, 1, 2, 3, 4]) and len(data) == 16 + 2 * 20


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_returns_the_written_pixels(tmp_path, gz):
    write_idx_fixture(tmp_path, gz)
    suffix = ".gz" if gz else ""
    images = read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", 0x00000803)
    labels = read_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", 0x00000801)
    assert images.shape == (IDX_TRAIN, ROWS, COLS) and images.dtype == np.uint8
    assert images[0, 0, 1] == 1 and images[0, 1, 0] == 5 and images[3, 2, 4] == 38
    np.testing.assert_array_equal(images[7], fixture_image(7))
    assert labels.tolist() == TRAIN_LABELS


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", ["fashion_mnist", "mnist"])
def test_idx_dataset_keeps_images_and_labels_together(tmp_path, gz, name):
    write_idx_fixture(tmp_path, gz)
    ds = build_dataset(DataSpec(name), tmp_path, probe_size=5)
    assert ds.x_train.shape == (IDX_TRAIN, 1, ROWS, COLS) and ds.x_test.shape == (10, 1, 4, 5)
    assert ds.num_classes == 10 and len(ds.probe_idx) == 5
    if name == "fashion_mnist":
        assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    for x, y, first, labels in (
        (ds.x_train, ds.y_train, 0, TRAIN_LABELS),
        (ds.x_test, ds.y_test, IDX_TRAIN, TEST_LABELS),
    ):
        pixels = np.rint(unstandardise(ds, x)).astype(int)[:, 0]
        ids = pixels[:, 0, 0] // 8  # pixel (0, 0) of image i is 8·i
        assert sorted(ids) == list(range(first, first + len(labels)))
        for image, i, label in zip(pixels, ids, y, strict=True):
            np.testing.assert_array_equal(image, fixture_image(i))
            assert label == labels[i - first]
    assert len(raw_files(DataSpec(name), tmp_path)) == 4


def test_idx_files_in_a_named_subfolder_are_found(tmp_path):
    write_idx_fixture(tmp_path / "fashion-mnist", gz=True)
    ds = build_dataset(DataSpec("fashion_mnist"), tmp_path, probe_size=0)
    assert ds.sizes == (IDX_TRAIN, IDX_TEST, IDX_TEST)


def test_missing_idx_files_name_the_path_and_how_to_get_them(tmp_path):
    with pytest.raises(DataError) as error:
        build_dataset(DataSpec("fashion_mnist"), tmp_path, probe_size=0)
    message = str(error.value)
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in message
    assert "IDX" in message and "dataset-fashion-mnist" in message
    assert "/usr/share/datasets/fashion-mnist" in message
    write_idx_fixture(tmp_path, gz=True)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz.*missing"):
        build_dataset(DataSpec("mnist"), tmp_path, probe_size=0)
    with pytest.raises(DataError, match="data_root"):
        build_dataset(DataSpec("mnist"), None, probe_size=0)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx_file_is_an_error_naming_it(tmp_path, gz):
    write_idx_fixture(tmp_path, gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    path = tmp_path / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    with pytest.raises(DataError) as error:
        build_dataset(DataSpec("fashion_mnist"), tmp_path, probe_size=0)
    assert str(path) in str(error.value) and "IDX" in str(error.value)


def test_truncated_idx_body_and_wrong_magic_are_reported(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(idx_images_bytes(0, 3)[:-1])
    with pytest.raises(DataError, match="truncated IDX file: 59 data bytes"):
        read_idx(path, 0x00000803)
    path.write_bytes(idx_images_bytes(0, 3) + b"\0")
    with pytest.raises(DataError, match="1 bytes beyond"):
        read_idx(path, 0x00000803)
    path.write_bytes(idx_labels_bytes([1, 2, 3]))
    with pytest.raises(DataError, match="magic number 0x00000801, expected 0x00000803"):
        read_idx(path, 0x00000803)
    path.write_bytes(b"\0\0\x08")
    with pytest.raises(DataError, match="truncated IDX file: 3 bytes, shorter than its 16-byte"):
        read_idx(path, 0x00000803)
    path.write_bytes(idx_images_bytes(0, 3)[:10])
    with pytest.raises(DataError, match="truncated IDX file: 10 bytes"):
        read_idx(path, 0x00000803)


# -------------------------------------------------------------------------------------- CIFAR

PER_BATCH = 20


def cifar_row(i: int) -> bytes:
    """Image i as stored: 1024 red bytes, then 1024 green, then 1024 blue (row-major 32×32)."""
    red = bytes([i] * 1024)
    green = bytes([(100 + r + c) % 256 for r in range(32) for c in range(32)])
    blue = bytes([(200 + c) % 256 for r in range(32) for c in range(32)])
    return red + green + blue


def cifar_data(first: int, n: int) -> np.ndarray:
    raw = b"".join(cifar_row(i) for i in range(first, first + n))
    return np.frombuffer(raw, dtype=np.uint8).reshape(n, 3072).copy()


def dump(path, obj, numpy1_names: bool = False):
    data = pickle.dumps(obj, protocol=2)
    if numpy1_names:  # the released files were written by numpy 1 (module numpy.core.*)
        data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        assert b"numpy.core.multiarray" in data
    path.write_bytes(data)


CIFAR10_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer"] + [
    b"dog",
    b"frog",
    b"horse",
    b"ship",
    b"truck",
]


def cifar10_label(i: int) -> int:
    return (i * 3 + 1) % 10


def write_cifar10(root, numpy1_names: bool = False):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{b}" for b in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        first = b * PER_BATCH
        batch = {
            b"batch_label": f"training batch {b + 1} of 5".encode(),
            b"labels": [cifar10_label(i) for i in range(first, first + PER_BATCH)],
            b"data": cifar_data(first, PER_BATCH),
            b"filenames": [f"img_{i}.png".encode() for i in range(first, first + PER_BATCH)],
        }
        dump(folder / name, batch, numpy1_names)
    meta = {b"label_names": CIFAR10_NAMES, b"num_cases_per_batch": PER_BATCH, b"num_vis": 3072}
    dump(folder / "batches.meta", meta)
    return folder


@pytest.mark.parametrize("numpy1_names", [False, True])
def test_cifar10_reader_decodes_the_channel_planar_layout(tmp_path, numpy1_names):
    write_cifar10(tmp_path, numpy1_names)
    raw = load_raw("cifar10", tmp_path)
    assert raw.x_train.shape == (100, 3, 32, 32) and raw.x_test.shape == (20, 3, 32, 32)
    assert raw.x_train.dtype == np.uint8
    assert raw.y_train.tolist() == [cifar10_label(i) for i in range(100)]
    assert raw.y_test.tolist() == [cifar10_label(i) for i in range(100, 120)]
    for i in (0, 37, 99):
        image = raw.x_train[i]
        assert (image[0] == i).all()  # the first 1024 bytes are the red plane
        assert image[1, 0, 0] == 100 and image[1, 0, 1] == 101 and image[1, 3, 0] == 103
        assert image[1, 31, 30] == (100 + 61) % 256
        assert image[2, 5, 7] == 207 and image[2, 31, 0] == 200
    assert (raw.x_test[4, 0] == 104).all()
    assert raw.class_names[0] == "airplane" and raw.class_names[9] == "truck"


def test_cifar10_dataset_keeps_images_and_labels_together(tmp_path):
    write_cifar10(tmp_path)
    ds = build_dataset(DataSpec("cifar10", classes=(3, 7)), tmp_path, probe_size=0)
    assert ds.class_names == ["cat", "horse"] and ds.in_shape == (3, 32, 32)
    assert ds.extras["channel_mean"].shape == (3,)
    pixels = np.rint(unstandardise(ds, ds.x_train)).astype(int)
    ids = pixels[:, 0, 0, 0]
    assert sorted(ids) == [i for i in range(100) if cifar10_label(i) in (3, 7)]
    for i, y in zip(ids, ds.y_train, strict=True):
        assert (3, 7)[y] == cifar10_label(i)
    assert len(raw_files(DataSpec("cifar10"), tmp_path)) == 7


def test_cifar10_missing_file_names_the_path_and_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as error:
        build_dataset(DataSpec("cifar10"), tmp_path, probe_size=0)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_1") in str(error.value)
    assert "cifar-10-python.tar.gz" in str(error.value)
    folder = write_cifar10(tmp_path / "again")
    os.remove(folder / "data_batch_3")
    with pytest.raises(DataError, match="data_batch_3: missing"):
        build_dataset(DataSpec("cifar10"), tmp_path / "again", probe_size=0)
    with pytest.raises(DataError, match="data_batch_3: missing"):
        raw_files(DataSpec("cifar10"), tmp_path / "again")


def test_corrupt_or_truncated_cifar_pickle_is_an_error_naming_it(tmp_path):
    folder = write_cifar10(tmp_path)
    path = folder / "test_batch"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as error:
        build_dataset(DataSpec("cifar10"), tmp_path, probe_size=0)
    assert str(path) in str(error.value) and "pickle" in str(error.value)
    path.write_bytes(b"this is not a pickle at all")
    with pytest.raises(DataError, match="test_batch: not a readable python pickle"):
        build_dataset(DataSpec("cifar10"), tmp_path, probe_size=0)


def test_cifar_pickle_with_wrong_layout_or_code_is_refused(tmp_path):
    folder = write_cifar10(tmp_path)
    path = folder / "data_batch_2"
    dump(path, {b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DataError, match="data_batch_2: 'data' is uint8 \\(2, 3000\\)"):
        load_raw("cifar10", tmp_path)
    dump(path, {b"data": cifar_data(0, 2), b"labels": [0]})
    with pytest.raises(DataError, match="data_batch_2: 'labels' has shape"):
        load_raw("cifar10", tmp_path)
    dump(path, {b"data": cifar_data(0, 2)})
    with pytest.raises(DataError, match="data_batch_2: lacks the entries \\['labels'\\]"):
        load_raw("cifar10", tmp_path)

    class Sneaky:
        def __reduce__(self):
            return (os.getcwd, ())

    dump(path, {b"data": Sneaky(), b"labels": []})
    with pytest.raises(DataError, match="refusing to load the global posix.getcwd"):
        load_raw("cifar10", tmp_path)


CIFAR100_TRAIN, CIFAR100_TEST = 40, 20


def fine_label(i: int) -> int:
    return (i % 20) * 7 % 100  # 20 of the 100 classes, each in both splits


def write_cifar100(root):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, first, n in (("train", 0, CIFAR100_TRAIN), ("test", CIFAR100_TRAIN, CIFAR100_TEST)):
        fine = [fine_label(i) for i in range(first, first + n)]
        batch = {
            b"filenames": [f"x{i}.png".encode() for i in range(first, first + n)],
            b"batch_label": name.encode(),
            b"fine_labels": fine,
            b"coarse_labels": [f // 5 for f in fine],
            b"data": cifar_data(first, n),
        }
        dump(folder / name, batch, numpy1_names=True)
    meta = {
        b"fine_label_names": [f"fine{c}".encode() for c in range(100)],
        b"coarse_label_names": [f"coarse{c}".encode() for c in range(20)],
    }
    dump(folder / "meta", meta)
    return folder


def test_cifar100_fine_and_coarse_labels_stay_aligned(tmp_path):
    write_cifar100(tmp_path)
    raw = load_raw("cifar100", tmp_path)
    assert raw.x_train.shape == (CIFAR100_TRAIN, 3, 32, 32)
    assert (raw.x_train[5, 0] == 5).all() and raw.x_test[0, 2, 0, 9] == 209
    assert raw.y_train.tolist() == [fine_label(i) for i in range(CIFAR100_TRAIN)]
    ds = build_dataset(DataSpec("cifar100"), tmp_path, probe_size=10)
    assert ds.num_classes == 100 and ds.class_names[42] == "fine42"
    assert ds.extras["coarse_names"].tolist()[19] == "coarse19"
    ids = np.rint(unstandardise(ds, ds.x_train)).astype(int)[:, 0, 0, 0]
    assert sorted(ids) == list(range(CIFAR100_TRAIN))
    np.testing.assert_array_equal(ds.y_train, [fine_label(i) for i in ids])
    np.testing.assert_array_equal(ds.extras["y_train_coarse"], [fine_label(i) // 5 for i in ids])
    test_ids = np.rint(unstandardise(ds, ds.x_test)).astype(int)[:, 0, 0, 0]
    np.testing.assert_array_equal(
        ds.extras["y_test_coarse"], [fine_label(i) // 5 for i in test_ids]
    )
    subset = build_dataset(DataSpec("cifar100", classes=(21, 7)), tmp_path, probe_size=0)
    assert subset.class_names == ["fine21", "fine7"]
    np.testing.assert_array_equal(
        subset.extras["y_train_coarse"], np.array([21 // 5, 7 // 5])[subset.y_train]
    )
    assert len(subset.subsample(1).extras["y_train_coarse"]) == 1


def test_cifar100_missing_meta_names_it(tmp_path):
    folder = write_cifar100(tmp_path)
    os.remove(folder / "meta")
    with pytest.raises(DataError) as error:
        build_dataset(DataSpec("cifar100"), tmp_path, probe_size=0)
    assert str(folder / "meta") in str(error.value)
    assert "cifar-100-python.tar.gz" in str(error.value)


# ---------------------------------------------------------------------------------- synthetic


def test_synthetic_teacher_task_is_deterministic_and_configurable():
    settings = {"dim": 12, "hidden": 16, "classes": 4, "n_train": 300, "n_test": 100}
    ds = build_dataset(DataSpec("synthetic"), None, probe_size=50, synthetic=settings)
    assert ds.x_train.shape == (300, 12, 1, 1) and ds.x_test.shape == (100, 12, 1, 1)
    assert ds.num_classes == 4 and ds.sizes == (300, 100, 50)
    assert np.bincount(ds.y_train, minlength=4).min() > 0
    again = build_dataset(DataSpec("synthetic"), None, probe_size=50, synthetic=settings)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    np.testing.assert_array_equal(again.y_test, ds.y_test)
    other = build_dataset(DataSpec("synthetic"), None, probe_size=50, seed=1, synthetic=settings)
    assert not np.array_equal(other.x_train, ds.x_train)
    # labels are the argmax of a one-hidden-layer ReLU teacher on the raw inputs
    w1, w2, b2 = (ds.extras[f"teacher_{k}"] for k in ("w1", "w2", "b2"))
    assert w1.shape == (16, 12) and w2.shape == (4, 16)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        raw = unstandardise(ds, x)[:, :, 0, 0].astype(np.float64)
        logits = np.maximum(raw @ w1.T, 0) @ w2.T + b2
        assert (logits.argmax(axis=1) == y).mean() > 0.99  # float32-stored teacher


def test_synthetic_defaults_and_bad_settings():
    ds = build_dataset(DataSpec("synthetic"), None, probe_size=0)
    assert ds.x_train.shape == (2000, 32, 1, 1) and len(ds.y_test) == 1000
    assert ds.num_classes == 10
    with pytest.raises(DataError, match="unknown settings \\['width'\\]"):
        build_dataset(DataSpec("synthetic"), None, probe_size=0, synthetic={"width": 3})
    with pytest.raises(DataError, match="n_train must be a positive integer"):
        build_dataset(DataSpec("synthetic"), None, probe_size=0, synthetic={"n_train": 0})


# ---------------------------------------------------------------------------------------- NPZ


def test_npz_round_trip_keeps_everything(tmp_path):
    ds = build_dataset(DataSpec("digits", (0, 1, 2), 0.5), None, probe_size=30)
    path = tmp_path / "data" / "digits-c012-rl0.5.npz"
    save_dataset(ds, path, {"rule": "dataset", "seed": 0})
    back = load_dataset(path)
    assert back.name == "digits-c012-rl0.5" and back.class_names == ["0", "1", "2"]
    for key in ("x_train", "y_train", "x_test", "y_test", "probe_idx"):
        np.testing.assert_array_equal(getattr(back, key), getattr(ds, key))
        assert getattr(back, key).dtype == getattr(ds, key).dtype
    assert set(back.extras) == set(ds.extras)
    for key, value in ds.extras.items():
        np.testing.assert_array_equal(back.extras[key], value)
    np.testing.assert_array_equal(back.x_probe, ds.x_probe)
    assert io.read_npz_provenance(path) == {"rule": "dataset", "seed": 0}
    with np.load(path, allow_pickle=False) as archive:  # plain arrays, no pickle needed
        assert archive["provenance"].shape == ()
        assert "extra_noisy_mask" in archive.files and "class_names" in archive.files
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_a_model_is_measured_on_the_training_examples_it_saw(tmp_path, digits):
    """Clones' chunk training error and the joint stage's fits use the model's own training
    examples: the first train_size of the split, as training takes them, never the unseen rest."""
    path = tmp_path / "digits.npz"
    save_dataset(digits, path, None)
    files = DatasetFiles([path])
    subset = parse_model_id("digits-mlp-w16-d1-n200-wd0-s0")
    where, seen = files.trained_on(subset)
    assert where == str(path) and len(seen.y_train) == 200
    np.testing.assert_array_equal(seen.x_train, digits.x_train[:200])
    np.testing.assert_array_equal(seen.y_train, digits.y_train[:200])
    np.testing.assert_array_equal(seen.x_test, digits.x_test)  # the test split is untouched
    _, everything = files.trained_on(parse_model_id("digits-mlp-w16-d1-nall-wd0-s0"))
    assert len(everything.y_train) == len(digits.y_train)
    too_many = parse_model_id(f"digits-mlp-w16-d1-n{len(digits.y_train) + 1}-wd0-s0")
    with pytest.raises(DataError, match="cannot take the first"):
        files.trained_on(too_many)


def test_npz_errors_name_the_file(tmp_path, digits):
    path = tmp_path / "digits.npz"
    with pytest.raises(DataError, match="digits.npz: missing"):
        load_dataset(path)
    save_dataset(digits, path, None)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as error:
        load_dataset(path)
    assert str(path) in str(error.value) and "NPZ" in str(error.value)
    path.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="digits.npz"):
        load_dataset(path)
    np.savez(path, x_train=digits.x_train, y_train=digits.y_train)
    with pytest.raises(DataError, match="digits.npz.*lacks.*x_test"):
        load_dataset(path)
    arrays = dataset_arrays(digits)
    arrays["probe_idx"] = np.array([0, 360])  # the test split has 360 examples
    io.save_npz(path, arrays)
    with pytest.raises(io.ArtifactError, match="digits.npz: inconsistent.*probe_idx points"):
        load_dataset(path)  # also an ArtifactError, like every other unreadable artifact
