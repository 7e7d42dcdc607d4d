"""widthlab.clones against independent math: the information imbalance's definition written out as
loops and its known limits, exact linear algebra on layers built of clones, scikit-learn's Ridge,
and synthetic layers whose clone size is known by construction."""

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from widthlab.clones.accuracy import fit_logistic, head_accuracies, head_accuracy, readout_accuracy
from widthlab.clones.chunks import chunk_sizes, ii_subsample, sample_chunks
from widthlab.clones.claims import headline
from widthlab.clones.ensembles import (
    ensemble_gap_table,
    ensemble_table,
    error_infinity,
)
from widthlab.clones.growth import fit_clone_growth
from widthlab.clones.imbalance import (
    chunk_information_imbalance,
    information_imbalance,
    rank_matrix,
)
from widthlab.clones.measure import TABLE_COLUMNS, LastLayer, logits_table, per_model_table
from widthlab.clones.regression import chunk_regression, ridge_fit, variance_weighted_r2
from widthlab.clones.settings import CloneSettings, CloneThresholds, MeasureSettings
from widthlab.clones.summary import clone_count, growth_fits, model_summary, stage_tables


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors: one thread is faster, and immune to a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------------
# Information imbalance
# ----------------------------------------------------------------------------------------------


def euclid(x):
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def imbalance_loops(a, b, ties):
    """The definition, one point at a time: Δ(A→B) = 2/N · mean_i rank_B(i, NN_A(i)), ranks from 1,
    i excluded. ``index``: lowest index wins ties; ``average``: mean over tied nearest neighbours
    in A of the mean rank that j's tie block in B occupies."""
    da, db = euclid(a), euclid(b)
    n = len(da)
    total = 0.0
    for i in range(n):
        others = [k for k in range(n) if k != i]
        if ties == "index":
            nn = min(others, key=lambda k: (da[i, k], k))
            order = sorted(others, key=lambda k: (db[i, k], k))
            total += order.index(nn) + 1
        else:
            best = min(da[i, k] for k in others)
            nns = [k for k in others if da[i, k] == best]
            ranks = []
            for j in nns:
                below = sum(1 for k in others if db[i, k] < db[i, j])
                tied = sum(1 for k in others if k != j and db[i, k] == db[i, j])
                ranks.append(1 + below + tied / 2)
            total += sum(ranks) / len(ranks)
    return 2.0 * total / (n * n)


@pytest.mark.parametrize("ties", ["average", "index"])
def test_ii_of_a_space_with_itself_is_the_minimum_2_over_n(ties):
    x = np.random.default_rng(0).normal(size=(300, 5))
    assert information_imbalance(x, x, ties) == pytest.approx(2 / 300, abs=1e-15)


def test_ii_of_a_permuted_and_rotated_copy_is_minimal():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6))
    permuted = x[:, rng.permutation(6)]
    assert information_imbalance(x, permuted) == pytest.approx(2 / 300, abs=1e-15)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert information_imbalance(x, 3.0 * x @ q) == pytest.approx(2 / 300, abs=1e-15)


def test_ii_between_independent_spaces_is_about_one():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(1000, 4)), rng.normal(size=(1000, 4))
    # rank uniform on 1..N-1: Δ has mean 1 and sd ≈ 2 / sqrt(12 N) ≈ 0.018
    assert information_imbalance(a, b) == pytest.approx(1.0, abs=0.08)
    assert information_imbalance(b, a) == pytest.approx(1.0, abs=0.08)


def test_ii_is_asymmetric_when_one_space_contains_the_other():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(1000, 3))
    b = a[:, :1] + 1e-3 * rng.normal(size=(1000, 1))  # B: A's first coordinate, low noise
    a_to_b, b_to_a = information_imbalance(a, b), information_imbalance(b, a)
    assert a_to_b < 0.25  # A's neighbours are near in B
    assert b_to_a > 0.5  # B's neighbours are scattered in A's other coordinates
    assert b_to_a > 3 * a_to_b


@pytest.mark.parametrize("ties", ["average", "index"])
def test_ii_matches_the_definition_loop_with_ties(ties):
    rng = np.random.default_rng(4)
    # integer coordinates and duplicated points: many exact ties in both spaces
    a = rng.integers(0, 3, size=(14, 2)).astype(float)
    b = rng.integers(0, 2, size=(14, 1)).astype(float)
    a[5] = a[2]
    for x, y in ((a, b), (b, a), (a, a[:, :1]), (a[:, :1], a)):
        assert information_imbalance(x, y, ties) == pytest.approx(
            imbalance_loops(x, y, ties), abs=1e-14
        )


def test_ii_without_ties_is_dadapy_rank_semantics():
    """No ties: both tie rules agree with the argsort-position rank (self at position 0)."""
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(40, 3)), rng.normal(size=(40, 2))
    da, db = euclid(a), euclid(b)
    idx_a, idx_b = np.argsort(da, axis=1), np.argsort(db, axis=1)
    ranks = [np.where(idx_b[i] == idx_a[i, 1])[0][0] for i in range(40)]
    expected = np.mean(ranks) / (40 / 2)
    for ties in ("average", "index"):
        assert information_imbalance(a, b, ties) == pytest.approx(expected, abs=1e-14)


def test_ii_subsample_is_seeded_and_sorted():
    first = ii_subsample(5000, 1000, seed=3)
    assert np.array_equal(first, ii_subsample(5000, 1000, seed=3))
    assert len(np.unique(first)) == 1000 and np.all(np.diff(first) > 0)
    assert np.array_equal(ii_subsample(300, 1000), np.arange(300))


# ----------------------------------------------------------------------------------------------
# Chunks
# ----------------------------------------------------------------------------------------------


def test_chunk_sizes_and_sampling():
    assert chunk_sizes(64) == [1, 2, 4, 8, 16, 32, 64]
    assert chunk_sizes(48) == [1, 2, 4, 8, 16, 32, 48]
    chunks = sample_chunks(64, 8, 100, seed=1)
    assert chunks.shape == (100, 8)
    assert len({tuple(c) for c in chunks}) == 100
    assert all(np.all(np.diff(c) > 0) for c in chunks)
    assert np.array_equal(chunks, sample_chunks(64, 8, 100, seed=1))
    assert not np.array_equal(chunks, sample_chunks(64, 8, 100, seed=2))
    # fewer distinct chunks than asked for: all of them
    assert sample_chunks(64, 64, 100).shape == (1, 64)
    assert sample_chunks(8, 1, 100).shape == (8, 1)
    assert len({tuple(c) for c in sample_chunks(6, 3, 100)}) == math.comb(6, 3)


# ----------------------------------------------------------------------------------------------
# Ridge R² and residual correlation
# ----------------------------------------------------------------------------------------------


def test_ridge_matches_scikit_learn():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(200, 5)) + 3.0
    y = x @ rng.normal(size=(5, 12)) + rng.normal(size=(200, 12)) * np.linspace(0.1, 2, 12)
    coef, x_mean, y_mean = ridge_fit(torch.from_numpy(x), torch.from_numpy(y), 1e-8)
    pred = ((torch.from_numpy(x) - x_mean) @ coef + y_mean).numpy()
    reference = Ridge(alpha=1e-8).fit(x, y)
    assert np.allclose(pred, reference.predict(x), atol=1e-9)
    r2 = variance_weighted_r2(torch.from_numpy(y), torch.from_numpy(pred))
    assert r2 == pytest.approx(r2_score(y, pred, multioutput="variance_weighted"), abs=1e-12)


def test_a_chunk_of_distinct_clone_units_determines_the_layer():
    rng = np.random.default_rng(7)
    z = rng.normal(size=(300, 8))
    h = np.hstack([z, z, z, z])  # W = 32: four exact clones of an 8-unit representation
    chunk = np.array([0, 9, 18, 27, 4, 13, 22, 31])  # one copy of each of the 8 units
    r2, corr = chunk_regression(h[:200], h[200:], [np.sort(chunk)])
    assert r2[0] == pytest.approx(1.0, abs=1e-9)
    assert np.isnan(corr[0])  # every unit outside is determined exactly: no residuals left


def test_residual_correlation_uses_only_the_units_outside_the_chunk():
    rng = np.random.default_rng(8)
    n = 400
    z = rng.normal(size=(n, 8))
    noise = 0.05 * rng.normal(size=(n, 24))
    h = np.hstack([z, z + noise[:, :8], z + noise[:, 8:16], z + noise[:, 16:]])
    r2, corr = chunk_regression(h, h, [np.arange(8)])  # the noise-free clone, in sample
    # independent math: the outside residuals are the noise minus its projection on [1, z]
    design = np.hstack([np.ones((n, 1)), z])
    resid = noise - design @ np.linalg.lstsq(design, noise, rcond=None)[0]
    c = np.corrcoef(resid.T)
    expected = np.abs(c[np.triu_indices(24, 1)]).mean()
    assert corr[0] == pytest.approx(expected, abs=1e-10)
    assert corr[0] < 0.1  # ≈ sqrt(2 / (π n)) ≈ 0.04 for independent noise
    sst = ((h - h.mean(0)) ** 2).sum()
    assert r2[0] == pytest.approx(1 - (resid**2).sum() / sst, abs=1e-10)


def test_r2_of_a_clone_layer_is_the_fraction_of_units_covered():
    """In sample, with orthonormal equal-variance units, R² = (distinct units covered) / d."""
    rng = np.random.default_rng(9)
    n, d, c = 200, 4, 8
    q, _ = np.linalg.qr(rng.normal(size=(n, d + 1)))
    q = q - q.mean(axis=0)
    z, _ = np.linalg.qr(q[:, :d] - q[:, :d].mean(0))  # centred orthonormal columns
    z *= np.sqrt(n)
    h = np.tile(z, (1, c))
    chunks = sample_chunks(d * c, 4, 40, seed=0)
    r2, _ = chunk_regression(h, h, chunks)
    covered = np.array([len(set((chunk % d).tolist())) / d for chunk in chunks])
    assert np.allclose(r2, covered, atol=1e-9)
    assert covered.min() < 1 < covered.max() + 1e-12  # some chunks miss units, some cover all


# ----------------------------------------------------------------------------------------------
# Chunk accuracy
# ----------------------------------------------------------------------------------------------


def test_head_restricted_to_a_chunk_is_the_direct_computation():
    rng = np.random.default_rng(10)
    h, w, b = rng.normal(size=(100, 16)), rng.normal(size=(3, 16)), rng.normal(size=3)
    y = rng.integers(0, 3, 100)
    chunk = np.array([1, 5, 6, 11])
    got = head_accuracy(h, y, w, b, [chunk])[0]
    assert got == np.mean((h[:, chunk] @ w[:, chunk].T + b).argmax(1) == y)
    got = head_accuracy(h, y, w, b, [chunk], rescale=True)[0]
    assert got == np.mean((4 * h[:, chunk] @ w[:, chunk].T + b).argmax(1) == y)


def test_rescaled_head_on_one_clone_equals_the_full_network():
    rng = np.random.default_rng(11)
    n, d, c, classes = 500, 8, 4, 5
    z = rng.normal(size=(n, d))
    v, b = rng.normal(size=(classes, d)), 2.0 * rng.normal(size=classes)
    y = (z @ v.T + b + 0.5 * rng.normal(size=(n, classes))).argmax(1)
    h = np.tile(z, (1, c))
    w = np.tile(v / c, (1, c))  # head weights split equally over the clones
    full = np.mean((h @ w.T + b).argmax(1) == y)
    clone = np.arange(d) + 2 * d  # the third clone
    assert head_accuracy(h, y, w, b, [clone], rescale=True)[0] == full
    assert head_accuracy(h, y, w, b, [np.arange(d * c)])[0] == full
    # without rescaling the bias dominates the shrunken logits
    assert head_accuracy(h, y, w, b, [clone])[0] < full


def test_readout_separable_chunk_has_zero_training_error():
    rng = np.random.default_rng(12)
    z = rng.normal(size=(300, 4))
    y = (z @ rng.normal(size=(4, 3))).argmax(1)
    # labels are an exact linear function of z: the chunk holding z is separable
    h = np.hstack([z, rng.normal(size=(300, 4))])
    train, test = readout_accuracy(h[:200], y[:200], h[200:], y[200:], [np.arange(4)])
    assert train[0] == 1.0
    assert test[0] > 0.85


def test_readout_fit_is_scikit_learns_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(25)
    x = rng.normal(size=(300, 6))
    y = (x @ rng.normal(size=(6, 4)) + 1.5 * rng.normal(size=(300, 4))).argmax(1)  # overlapping
    weight, bias = fit_logistic(x, y, c=100.0, max_iter=500, tol=1e-8)
    reference = LogisticRegression(C=100.0, max_iter=500, tol=1e-8).fit(x, y)
    # the same objective: the same optimum (up to the optimiser's tolerance)
    assert np.allclose(weight, reference.coef_.T, atol=1e-4)
    assert np.allclose(
        bias - bias.mean(), reference.intercept_ - reference.intercept_.mean(), atol=1e-4
    )
    assert np.array_equal((x @ weight + bias).argmax(1), reference.predict(x))


# ----------------------------------------------------------------------------------------------
# Clone size and count
# ----------------------------------------------------------------------------------------------


def clone_layer(seed, d, c, mode, n=800, noise=0.05):
    """c clones of a d-unit signal Z plus independent noise on every unit. Z's coordinates are
    independent: each is ±5 (a random corner of a hypercube) plus unit Gaussian spread; the label
    is the corner's sign pattern on the first two coordinates (4 classes, linear in Z, with a
    wide margin). ``copy``: exact copies, H = [Z, …, Z]; ``mix``: every unit a random linear
    combination of Z's coordinates (each clone Z times its own random d×d matrix)."""
    rng = np.random.default_rng(seed)
    corners = rng.choice([-1.0, 1.0], size=(n, d))
    z = 5.0 * corners + rng.normal(size=(n, d))
    y = (corners[:, 0] > 0).astype(int) + 2 * (corners[:, 1] > 0).astype(int)
    if mode == "copy":
        h = np.tile(z, (1, c))
    else:
        h = z @ rng.normal(size=(d, d * c)) / np.sqrt(d)
    return h + noise * rng.normal(size=h.shape), y


def coverage(width, d, size):
    """P(a random chunk of ``size`` of the d·c units of an exact-copy layer holds every one of the
    d signal units at least once), by inclusion–exclusion (each unit has c = width / d copies)."""
    c = width // d
    terms = ((-1) ** k * math.comb(d, k) * math.comb(width - k * c, size) for k in range(d + 1))
    return sum(terms) / math.comb(width, size)


FAST = MeasureSettings(n_accuracy_chunks=10, n_readout_chunks=4, n_r2_chunks=10, n_ii_chunks=4)


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_copies_clone_size_is_where_random_chunks_hold_every_unit(seed):
    d, c = 4, 8
    h, y = clone_layer(seed, d, c, "copy")
    head = np.zeros((4, d * c))
    config = MeasureSettings(
        n_accuracy_chunks=20, n_readout_chunks=20, n_r2_chunks=20, n_ii_chunks=20, seed=seed
    )  # enough chunks that some at size 8 miss a unit (P(all 20 hold every unit) ≈ 0.002)
    table = per_model_table(
        LastLayer(h[:400], y[:400], h[400:], y[400:], head, np.zeros(4)), config
    )
    result = clone_count(table)
    # a chunk missing one of the d units loses a quarter of the signal; random chunks hold every
    # unit with probability 0.11, 0.73, 0.995 at sizes 4, 8, 16: the clone size is 16 = W / 2
    expected = min(s for s in chunk_sizes(d * c) if coverage(d * c, d, s) >= 0.95)
    assert expected == 16
    assert result["clone_size"] == expected and result["n_clones"] == 2 and not result["flagged"]
    r2 = table[table["metric"] == "r2"].set_index("chunk_size")["mean"]
    corr = table[table["metric"] == "residual_corr"].set_index("chunk_size")["mean"]
    assert r2[16] > 0.99
    assert corr[16] < 0.15 < corr[1]  # the residuals of the units outside are nearly independent


@pytest.mark.parametrize(("d", "c", "seed"), [(4, 16, 0), (4, 16, 1), (8, 8, 0), (8, 8, 1)])
def test_mixed_clones_give_clone_size_about_d_and_about_c_clones(d, c, seed):
    h, y = clone_layer(seed, d, c, "mix")
    head = np.zeros((4, d * c))
    config = dataclasses.replace(FAST, seed=seed)
    table = per_model_table(
        LastLayer(h[:400], y[:400], h[400:], y[400:], head, np.zeros(4)), config
    )
    result = clone_count(table)
    # any d units determine the layer (R² ≈ 1 from d on), but a random d×d mixture distorts the
    # distances (Δ ≈ 0.05 at w = d): the clone size is d or 2d
    assert result["clone_size"] in (d, 2 * d)
    assert result["n_clones"] == d * c / result["clone_size"] in (c, c / 2)
    assert not result["flagged"]
    r2 = table[table["metric"] == "r2"].set_index("chunk_size")["mean"]
    corr = table[table["metric"] == "residual_corr"].set_index("chunk_size")["mean"]
    assert r2[d // 2] < 0.9 < r2[d]
    assert r2[2 * d] > 0.99
    assert corr[d * c // 2] < 0.15 < corr[1]


def test_no_qualifying_chunk_is_flagged():
    rng = np.random.default_rng(13)
    h = rng.normal(size=(400, 16))
    y = rng.integers(0, 3, 400)
    table = per_model_table(
        LastLayer(h[:200], y[:200], h[200:], y[200:], np.zeros((3, 16)), np.zeros(3)), FAST
    )
    result = clone_count(table)
    assert result == result | {"clone_size": 16, "n_clones": 1.0, "flagged": True}


def _handmade_table(ii, r2, train_head, train_readout, sizes=(1, 2, 4, 8, 16)):
    rows = []
    for s, a, b, th, tr in zip(sizes, ii, r2, train_head, train_readout, strict=True):
        rows += [
            {
                "chunk_size": s,
                "metric": "ii_chunk_to_full",
                "method": "euclidean",
                "split": "test",
                "mean": a,
            },
            {"chunk_size": s, "metric": "r2", "method": "ridge", "split": "test", "mean": b},
            {"chunk_size": s, "metric": "accuracy", "method": "head", "split": "train", "mean": th},
            {
                "chunk_size": s,
                "metric": "accuracy",
                "method": "readout",
                "split": "train",
                "mean": tr,
            },
        ]
    return pd.DataFrame(rows)


def test_clone_count_rule_and_its_parameters():
    table = _handmade_table(
        ii=[0.5, 0.2, 0.04, 0.01, 0.0],
        r2=[0.3, 0.95, 0.95, 0.99, 1.0],
        train_head=[0.2, 0.3, 0.5, 0.9, 1.0],
        train_readout=[0.8, 1.0, 1.0, 1.0, 1.0],
    )
    assert clone_count(table)["clone_size"] == 4
    assert clone_count(table)["n_clones"] == 4
    assert clone_count(table, {"ii_max": 0.3})["clone_size"] == 2
    assert clone_count(table, {"ii_max": 0.3, "r2_min": 0.99})["clone_size"] == 8
    assert clone_count(table, {"accuracy_method": "head"})["clone_size"] == 16
    assert (
        clone_count(table, {"train_error_max": 0.1, "accuracy_method": "head"})["clone_size"] == 8
    )
    loose = {"ii_max": None, "r2_min": None, "train_error_max": None}
    assert clone_count(table, loose)["clone_size"] == 1
    with pytest.raises(ValueError):
        CloneThresholds(accuracy_method="knn")


# ----------------------------------------------------------------------------------------------
# Growth fit
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("critical", [64.0, 80.0, 8.0])
def test_fit_clone_growth_recovers_slope_and_breakpoint(critical):
    widths = np.array([16, 32, 64, 128, 256, 512, 1024], dtype=float)
    slope = 1 / 32
    n = np.where(widths <= critical, 1.0, 1.0 + slope * (widths - critical))
    fit = fit_clone_growth(widths, n)
    assert fit.slope == pytest.approx(slope, rel=1e-9)
    assert fit.critical_width == pytest.approx(max(critical, 8.0), rel=1e-9)
    assert fit.intercept == pytest.approx(1 - slope * critical, rel=1e-9, abs=1e-9)


def test_fit_clone_growth_keeps_the_critical_width_at_least_one():
    widths = np.array([16, 32, 64, 128, 256, 512], dtype=float)
    n = 1.5 + widths / 64  # the unconstrained line reaches 1 clone at W = -32
    fit = fit_clone_growth(widths, n)
    assert fit.critical_width == 1.0
    dx, dy = widths - 1, n - 1  # least squares through (1, 1), written out
    assert fit.slope == pytest.approx(np.dot(dx, dy) / np.dot(dx, dx), rel=1e-12)


def test_fit_clone_growth_with_seeds_and_noise_and_without_growth():
    rng = np.random.default_rng(14)
    widths = np.repeat([16, 32, 64, 128, 256, 512, 1024], 3).astype(float)
    n = np.where(widths <= 100, 1.0, 1.0 + (widths - 100) / 16) + 0.2 * rng.normal(size=widths.size)
    fit = fit_clone_growth(widths, n)
    assert fit.slope == pytest.approx(1 / 16, rel=0.02)
    assert fit.critical_width == pytest.approx(100, abs=12)
    flat = fit_clone_growth([16, 32, 64], [1, 1, 1])
    assert flat.slope == 0 and flat.intercept == 1 and np.isnan(flat.critical_width)


# ----------------------------------------------------------------------------------------------
# Tables and ensembles
# ----------------------------------------------------------------------------------------------


def test_per_model_and_summary_tables():
    h, y = clone_layer(1, 4, 4, "copy", n=300)
    columns = {"model": "toy-w16", "dataset": "toy", "arch": "mlp", "width": 16, "depth": 1}
    config = MeasureSettings(n_accuracy_chunks=5, n_readout_chunks=2, n_r2_chunks=3, n_ii_chunks=2)
    table = per_model_table(
        LastLayer(h[:150], y[:150], h[150:], y[150:], np.ones((4, 16)), np.zeros(4)),
        config,
        columns,
    )
    assert list(table.columns[:5]) == list(columns)
    assert set(TABLE_COLUMNS) <= set(table.columns)
    per_size = table.groupby("chunk_size").size()
    assert (per_size == 6 + 2 + 2).all()  # 3 methods × 2 splits, r2 + corr, 2 × Δ
    n_chunks = table.set_index(["chunk_size", "metric", "method", "split"])["n_chunks"]
    assert n_chunks[(1, "accuracy", "head", "test")] == 5
    assert n_chunks[(16, "accuracy", "head", "test")] == 1  # only one chunk of size W
    assert n_chunks[(4, "r2", "ridge", "test")] == 3
    other = table.assign(model="toy-w16b", width=16)
    summary = model_summary([table, other])
    assert list(summary["model"]) == ["toy-w16", "toy-w16b"]
    assert {"clone_size", "n_clones", "flagged", "full_test_acc_head"} <= set(summary.columns)
    growth = growth_fits(summary)
    assert len(growth) == 1 and growth["n_models"].iloc[0] == 2


def test_ensembles_and_error_infinity():
    rng = np.random.default_rng(15)
    n, classes = 400, 5
    labels = rng.integers(0, classes, n)
    signal = np.eye(classes)[labels]
    logits = {
        (w, s): signal * 1.0 + rng.normal(size=(n, classes)) * (4.0 / np.sqrt(w))
        for w in (1, 2, 4)
        for s in range(4)
    }
    table = ensemble_table(logits, labels)
    single = table[table["members"] == 1].set_index("width")["ensemble_error"]
    direct = np.mean([np.mean(logits[(2, s)].argmax(1) != labels) for s in range(4)])
    assert single[2] == pytest.approx(direct)
    row = table[(table["width"] == 1) & (table["members"] == 4)].iloc[0]
    assert row["total_width"] == 4 and row["n_groups"] == 1
    assert row["wide_error"] == pytest.approx(single[4])
    summed = sum(logits[(1, s)] for s in range(4))
    assert row["ensemble_error"] == np.mean(summed.argmax(1) != labels)
    err_inf, best = error_infinity(table)
    assert best["width"] == 4 and best["members"] == 4 and err_inf == best["ensemble_error"]
    clones = pd.DataFrame(
        {
            "model": "m",
            "chunk_size": [1, 2, 1],
            "metric": "accuracy",
            "method": ["head", "head", "readout"],
            "split": "test",
            "mean": [0.5, 0.7, 0.9],
            "std": 0.0,
        }
    )
    gap = ensemble_gap_table(clones, 0.1)
    assert np.allclose(gap["gap"], [0.4, 0.2, 0.0])
    assert list(itertools.islice(gap.columns, 3)) == ["model", "chunk_size", "method"]


def test_figures_are_drawn_from_the_tables(tmp_path):
    from widthlab.clones import figures as plots
    from widthlab.plots import save

    rng = np.random.default_rng(16)
    tables, logits = [], {}
    h, y = clone_layer(0, 4, 8, "mix", n=300)
    config = MeasureSettings(n_accuracy_chunks=3, n_readout_chunks=2, n_r2_chunks=2, n_ii_chunks=2)
    for width in (8, 16, 32):
        head = rng.normal(size=(4, width))
        columns = {"model": f"m{width}", "dataset": "toy", "width": width, "depth": 1}
        columns |= {"weight_decay": 0.0, "seed": 0}
        layer = h[:, :width]
        args = (layer[:150], y[:150], layer[150:], y[150:], head, np.zeros(4), config, columns)
        tables.append(per_model_table(LastLayer(*args[:6]), *args[6:]))
        logits[(width, 0)] = layer[150:] @ head.T
    table = pd.concat(tables, ignore_index=True)
    summary = model_summary(tables)
    ensembles = ensemble_table(logits, y[150:])
    gap = ensemble_gap_table(table, error_infinity(ensembles)[0])
    figures = {
        "accuracy": plots.chunk_accuracy(table),
        "similarity": plots.chunk_similarity(table),
        "growth": plots.clone_growth(summary, growth_fits(summary)),
        "gap": plots.ensemble_gap(gap),
        "ensembles": plots.ensembles(ensembles),
    }
    for name, fig in figures.items():
        save(fig, str(tmp_path / f"{name}.png"))
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


# ----------------------------------------------------------------------------------------------
# Batched estimators against one-chunk-at-a-time references
# ----------------------------------------------------------------------------------------------


def test_ii_to_a_row_permutation_is_about_one():
    """The same points in a random order: neighbourhoods carry no information either way."""
    rng = np.random.default_rng(20)
    x = rng.normal(size=(1000, 5))
    shuffled = x[rng.permutation(1000)]
    assert information_imbalance(x, shuffled) == pytest.approx(1.0, abs=0.08)
    assert information_imbalance(shuffled, x) == pytest.approx(1.0, abs=0.08)


@pytest.mark.parametrize("ties", ["average", "index"])
def test_rank_matrix_is_the_definition(ties):
    rng = np.random.default_rng(21)
    x = rng.integers(0, 3, size=(12, 2)).astype(float)  # many tied distances
    d = euclid(x)
    ranks = rank_matrix(torch.from_numpy(d), ties).numpy()
    for i in range(12):
        others = [k for k in range(12) if k != i]
        for j in others:
            if ties == "index":
                expected = sorted(others, key=lambda k: (d[i, k], k)).index(j) + 1
            else:
                below = sum(d[i, k] < d[i, j] for k in others)
                tied = sum(d[i, k] == d[i, j] for k in others if k != j)
                expected = 1 + below + tied / 2
            assert ranks[i, j] == expected


@pytest.mark.parametrize("ties", ["average", "index"])
def test_batched_chunk_imbalance_is_each_chunk_on_its_own(ties):
    rng = np.random.default_rng(22)
    # ReLU-like integer units: exact zeros and many exactly tied distances in both spaces
    h = np.maximum(rng.integers(-3, 4, size=(80, 12)), 0).astype(float)
    chunks = [c for size in (1, 3, 12) for c in sample_chunks(12, size, 4, seed=1)]
    to_full, from_full = chunk_information_imbalance(h, chunks, ties)
    for k, chunk in enumerate(chunks):
        part = h[:, chunk]
        assert to_full[k] == pytest.approx(imbalance_loops(part, h, ties), abs=1e-14)
        assert from_full[k] == pytest.approx(imbalance_loops(h, part, ties), abs=1e-14)


def test_batched_regression_is_scikit_learn_ridge_per_chunk():
    rng = np.random.default_rng(23)
    h = rng.normal(size=(260, 5)) @ rng.normal(size=(5, 10)) + 0.3 * rng.normal(size=(260, 10))
    h[:, 7] = h[:, 2]  # an exact duplicate: collinear chunks
    fit, ev = h[:180], h[180:]
    chunks = [c for size in (1, 2, 4, 9) for c in sample_chunks(10, size, 3, seed=2)]
    r2, corr = chunk_regression(fit, ev, chunks, n_corr=2)  # the first two of each size
    for k, chunk in enumerate(chunks):
        pred = Ridge(alpha=1e-8).fit(fit[:, chunk], fit).predict(ev[:, chunk])
        assert r2[k] == pytest.approx(r2_score(ev, pred, multioutput="variance_weighted"), abs=1e-8)
        if k % 3 < 2:  # three chunks of each size
            outside = np.setdiff1d(np.arange(10), chunk)
            resid = (ev - pred)[:, outside]
            resid = resid[:, resid.var(axis=0) > 1e-12 * ev.var(axis=0).mean()]
            if resid.shape[1] < 2:  # one unit outside a chunk of 9: no correlation to take
                assert np.isnan(corr[k])
                continue
            c = np.corrcoef(resid.T)
            assert corr[k] == pytest.approx(np.abs(c[np.triu_indices(len(c), 1)]).mean(), abs=1e-6)
        else:
            assert np.isnan(corr[k])


def test_batched_head_accuracy_matches_the_direct_computation_for_mixed_sizes():
    rng = np.random.default_rng(24)
    h, w, b = rng.normal(size=(90, 20)), rng.normal(size=(4, 20)), rng.normal(size=4)
    y = rng.integers(0, 4, 90)
    chunks = [c for size in (1, 5, 20) for c in sample_chunks(20, size, 3, seed=3)]
    plain, rescaled = head_accuracies(h, y, w, b, chunks)
    for k, chunk in enumerate(chunks):
        logits = h[:, chunk] @ w[:, chunk].T
        assert plain[k] == np.mean((logits + b).argmax(1) == y)
        assert rescaled[k] == np.mean((20 / len(chunk) * logits + b).argmax(1) == y)


def test_readouts_stop_once_every_chunk_fits_and_the_rule_carries_that_forward():
    h, y = clone_layer(3, 4, 16, "copy", n=400)
    config = MeasureSettings(n_accuracy_chunks=4, n_readout_chunks=4, n_r2_chunks=4, n_ii_chunks=2)
    table = per_model_table(
        LastLayer(h[:200], y[:200], h[200:], y[200:], np.zeros((4, 64)), np.zeros(4)), config
    )
    readout = table[(table["method"] == "readout") & (table["split"] == "train")]
    fitted = readout.set_index("chunk_size")["mean"]
    first = fitted[fitted == 1.0].index.min()
    # nothing fitted between the first separable size and the full layer, which is always fitted
    assert set(fitted.index) == {s for s in chunk_sizes(64) if s <= first} | {64}
    assert first < 32  # so at least one size (32) is skipped
    never = dataclasses.replace(config, readout_stop=False)
    full = per_model_table(
        LastLayer(h[:200], y[:200], h[200:], y[200:], np.zeros((4, 64)), np.zeros(4)), never
    )
    all_sizes = full[(full["method"] == "readout") & (full["split"] == "train")]
    assert set(all_sizes["chunk_size"]) == set(chunk_sizes(64))
    only_train = {"ii_max": None, "r2_min": None}
    assert clone_count(table, only_train)["clone_size"] == first
    assert clone_count(full, only_train)["clone_size"] == first


# ----------------------------------------------------------------------------------------------
# Summary, conditions, ensembles and headline on hand-built tables
# ----------------------------------------------------------------------------------------------


def _model_table(model, width, seed, wd, variant, clone_size, train_error, depth=2):
    """A per-model table whose rule gives exactly ``clone_size`` (Δ, R² and readout all cross
    their thresholds there) and whose full network has ``train_error``."""
    rows = []
    for size in chunk_sizes(width):
        good = size >= clone_size
        values = {
            ("ii_chunk_to_full", "euclidean", "test"): 0.01 if good else 0.4,
            ("r2", "ridge", "test"): 0.95 if good else 0.5,
            ("accuracy", "readout", "train"): 1.0 if good else 0.8,
            ("accuracy", "head", "train"): 1.0 - train_error if size == width else 0.5,
            ("accuracy", "head", "test"): 0.9 - 0.4 / np.sqrt(size) if size < width else 0.9,
        }
        for (metric, method, split), value in values.items():
            rows.append(
                {"chunk_size": size, "metric": metric, "method": method, "split": split}
                | {"mean": value, "std": 0.0, "n_chunks": 1}
            )
    table = pd.DataFrame(rows)
    table["layer_width"] = width
    columns = {"model": model, "dataset": "toy", "arch": "mlp", "width": width, "depth": depth}
    columns |= {"weight_decay": wd, "seed": seed, "variant": variant}
    front = pd.DataFrame({k: [v] * len(table) for k, v in columns.items()})
    return pd.concat([front, table], axis=1)


def _logits(width, seed, wd, variant, errors, n=200, depth=2):
    """A logits table whose argmax is wrong exactly on the examples in ``errors``."""
    labels = np.arange(n) % 4
    logits = np.eye(4)[labels] * 2.0
    logits[list(errors)] = np.eye(4)[(labels[list(errors)] + 1) % 4] * 3.0
    table = logits_table(logits, labels)
    columns = {"model": f"m{width}-{seed}-{wd}-{variant}", "dataset": "toy", "arch": "mlp"}
    columns |= {"width": width, "depth": depth, "weight_decay": wd, "seed": seed}
    columns |= {"variant": variant}
    for k, v in columns.items():
        table[k] = v
    return table


def summarise_stage(tables, logits, grids, primary, gap_method="head"):
    """The summary rule's tables and headline, as the workflow script builds them."""
    config = CloneSettings(grids=(primary,), gap_method=gap_method)
    out = stage_tables(tables, logits, grids, config)
    out["headline"] = headline(out, config)
    return out


def test_summarise_counts_clones_compares_conditions_and_writes_the_headline_contract():
    from widthlab.headline import HEADLINE_COLUMNS
    from widthlab.stats import verdict_of_row

    tables, grids = [], {}
    for seed in (0, 1, 2):
        for width in (32, 64, 128, 256):
            for wd, size in ((5e-4, 16), (0.0, width // 2)):  # wd: w_c* = 16 at every W
                name = f"main-{width}-{seed}-{wd}"
                tables.append(_model_table(name, width, seed, wd, None, size, 0.0))
                grids[name] = "main"
            name = f"early-{width}-{seed}"
            tables.append(_model_table(name, width, seed, 5e-4, "early", width, 0.2))
            grids[name] = "early"
    logits = [_logits(32, s, 5e-4, None, range(s, 40 + s)) for s in range(5)]
    logits.append(_logits(64, 0, 5e-4, None, range(30)))
    logits.append(_logits(128, 0, 5e-4, None, range(10)))
    out = summarise_stage(tables, logits, grids, "main")
    summary = out["summary"].set_index("model")
    assert summary.loc["main-256-0-0.0005", "clone_size"] == 16
    assert summary.loc["main-256-0-0.0005", "n_clones"] == 16
    assert summary.loc["main-256-0-0.0", "n_clones"] == 2
    assert summary.loc["early-64-0", "grid"] == "early"
    assert summary["interpolating"].sum() == 24 and not summary.loc["early-64-0", "interpolating"]
    # the declared alternatives (Δ ≤ 0.1 & R² ≥ 0.8; Δ ≤ 0.025 & R² ≥ 0.95) agree here
    assert (summary["n_clones_alt1"] == summary["n_clones"]).all()
    assert (summary["clone_size_alt2"] == summary["clone_size"]).all()
    cond = out["conditions"]
    assert len(cond) == 3 * 4 and (cond["n_models"] == 3).all()
    headline = out["headline"]
    assert list(headline.columns) == HEADLINE_COLUMNS
    for _, row in headline.iterrows():
        assert verdict_of_row(row) == row["holds"]
    growth, interp, decay, gap, wide = (headline.iloc[k] for k in range(5))
    # #clones = W / 16 at weight decay: exponent 1 in every seed, above any critical width
    # exactly linear growth sits on the null b = 1: not contradicted, and not "more than linear"
    assert growth["value"] == pytest.approx(1.0) and growth["n"] == 3
    assert growth["holds"] == "inconclusive"
    # log2(W/16) clones vs 1 clone when stopped early, the four widths averaged per seed
    assert interp["value"] == pytest.approx(np.mean(np.log2([2, 4, 8, 16])))
    assert interp["holds"] == "yes" and interp["n"] == 3
    # W/16 vs 2 clones
    assert decay["value"] == pytest.approx(np.mean(np.log2([1, 2, 4, 8]))) and decay["n"] == 3
    # ensembles: 5 seeds at width 32; error_∞ is the 5-member ensemble's error
    ens = out["ensembles"]
    five = ens[(ens["width"] == 32) & (ens["members"] == 5)].iloc[0]
    summed = sum(_logit_rows(t) for t in logits[:5])
    error_inf = np.mean(summed.argmax(1) != np.arange(200) % 4)
    assert five["ensemble_error"] == error_inf
    assert (ens["error_infinity"] == error_inf).all() and (ens["n_examples"] == 200).all()
    two = ens[(ens["width"] == 32) & (ens["members"] == 2)].iloc[0]
    assert two["wide_error"] == pytest.approx(30 / 200)
    assert set(out["gap"]["model"]) <= {m for m, g in grids.items() if g == "main"}
    assert (out["gap"]["error_infinity"] == error_inf).all()
    assert (out["gap"]["gap_floor"] == 1 / 200).all()  # one test example
    # chunk test error 0.1 + 0.4 / √w: the gap falls with w in every model
    assert gap["holds"] == "yes" and gap["value"] < 0
    # the wide net (W = 256, clones of 16, test error 0.1) against 5 nets of width 32
    assert wide["value"] == pytest.approx(error_inf - 0.1) and wide["holds"] == "yes"


def _logit_rows(table):
    return table[[f"logit_{c}" for c in range(4)]].to_numpy()


def test_headline_is_honest_with_one_model_per_condition():
    tables = [
        _model_table("a", 16, 0, 0.0, None, 16, 0.1),
        _model_table("b", 32, 0, 0.0, None, 32, 0.1),
    ]
    logits = [_logits(16, 0, 0.0, None, range(20)), _logits(32, 0, 0.0, None, range(15))]
    out = summarise_stage(tables, logits, {"a": "main", "b": "main"}, "main")
    headline = out["headline"]
    assert (headline["holds"] == "n/a").all() and headline["reason"].str.len().gt(10).all()
    assert headline.iloc[0]["reason"].startswith("floor")  # one clone at every width
    assert "no grid of models stopped" in headline.iloc[1]["reason"]
    assert "with and without weight decay" in headline.iloc[2]["reason"]
    assert "ensemble of ≥ 5 seeds" in headline.iloc[3]["reason"]
    assert headline.iloc[4]["reason"] == "width 32: no clones (w_c* = 32)"
    from widthlab.clones.figures import stage_figures
    from widthlab.clones.jobs import FIGURES

    drawn = stage_figures(tables, out, "main")  # no error_∞: the gap figure says why
    assert set(drawn) == set(FIGURES)
    assert "no error_∞" in drawn["ensemble_gap"].axes[0].texts[0].get_text()


def test_summarise_rejects_an_unknown_gap_method():
    with pytest.raises(ValueError, match="gap_method"):
        summarise_stage(
            [_model_table("a", 16, 0, 0.0, None, 16, 0.0)],
            [],
            {"a": "main"},
            "main",
            gap_method="knn",
        )


def test_every_size_at_once_gives_exactly_the_numbers_of_one_size_at_a_time():
    """chunk_measurements hands every size to the ridge and the imbalance in one call (the full
    layer's products, distances and ranks computed once): bit for bit the per-size values."""
    rng = np.random.default_rng(25)
    h = np.maximum(rng.normal(size=(150, 6)) @ rng.normal(size=(6, 16)), 0)
    by_size = {size: sample_chunks(16, size, 5, seed=4) for size in chunk_sizes(16)}
    every = [c for chunks in by_size.values() for c in chunks]
    r2, corr = chunk_regression(h[:100], h[100:], every, n_corr=3)
    to_full, from_full = chunk_information_imbalance(h[100:], every)
    start = 0
    for chunks in by_size.values():
        part = slice(start, start + len(chunks))
        alone = chunk_regression(h[:100], h[100:], chunks, n_corr=3)
        assert np.array_equal(r2[part], alone[0])
        assert np.array_equal(corr[part], alone[1], equal_nan=True)
        alone = chunk_information_imbalance(h[100:], chunks)
        assert np.array_equal(to_full[part], alone[0])
        assert np.array_equal(from_full[part], alone[1])
        start += len(chunks)
