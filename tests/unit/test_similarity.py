"""widthlab.similarity against independent math: published reference values, textbook formulas
written out here, explicit U-statistic loops, and known invariances."""

import itertools

import numpy as np
import pytest
import torch

from widthlab import cka as ck
from widthlab.similarity import blocks as B
from widthlab.similarity import errors as E
from widthlab.similarity import measure as M


@pytest.fixture(scope="module")
def kornblith_xy():
    legacy = np.random.RandomState(1337)  # the notebook's np.random.seed(1337); np.random.randn
    x = legacy.randn(100, 10)
    y = legacy.randn(100, 10) + x
    return x, y


def textbook_linear_cka(x, y):
    """HSIC(K, L) = tr(KHLH) with explicit centring matrix H (Kornblith et al. 2019, eq. 3)."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T  # noqa: E741

    def hsic(a, b):
        return np.trace(a @ h @ b @ h)

    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def song_hsic1_loops(k, l):  # noqa: E741
    """Song et al. (2012) HSIC₁ as the U-statistic over distinct ordered quadruples (i, j, q, r)
    with kernel k_ij l_ij + k_ij l_qr − 2 k_ij l_iq."""
    n = k.shape[0]
    total = 0.0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
    return total / (n * (n - 1) * (n - 2) * (n - 3))


def song_hsic1_closed_form(k, l):  # noqa: E741
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    one = np.ones(n)
    value = (
        np.trace(kt @ lt)
        + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * one @ kt @ lt @ one
    )
    return value / (n * (n - 3))


# --- reference values -------------------------------------------------------------------------


def test_kornblith_notebook_reference_values(kornblith_xy):
    x, y = kornblith_xy
    assert ck.cka(x, y, "linear") == pytest.approx(0.55761, abs=1e-4)
    assert ck.cka(x, y, "rbf", rbf_threshold=0.5) == pytest.approx(0.65483, abs=1e-4)
    assert ck.cka(x, y, "debiased") == pytest.approx(0.51346, abs=1e-4)


def test_linear_cka_matches_textbook_centring_matrix(kornblith_xy):
    x, y = kornblith_xy
    assert ck.cka(x, y, "linear") == pytest.approx(textbook_linear_cka(x, y), abs=1e-12)


def test_hsic1_matches_explicit_quadruple_loops():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 3)), rng.normal(size=(7, 4))
    b[:, 0] += a[:, 0]
    k, l = a @ a.T, np.exp(-((b[:, None] - b[None]) ** 2).sum(-1))  # noqa: E741
    slow = song_hsic1_loops(k, l)
    assert ck.hsic1(k, l) == pytest.approx(slow, rel=1e-10)
    assert song_hsic1_closed_form(k, l) == pytest.approx(slow, rel=1e-10)


def test_debiased_cka_is_ratio_of_loop_hsic1():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 5))
    y = x @ rng.normal(size=(5, 3)) + rng.normal(size=(7, 3))
    k, l = x @ x.T, y @ y.T  # noqa: E741
    expected = song_hsic1_loops(k, l) / np.sqrt(song_hsic1_loops(k, k) * song_hsic1_loops(l, l))
    assert ck.cka(x, y, "debiased") == pytest.approx(expected, rel=1e-10)
    assert ck.cka(x, y, "minibatch", batch_size=7) == pytest.approx(expected, rel=1e-10)


# --- invariances ------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["linear", "debiased", "rbf", "minibatch"])
def test_self_similarity_is_one(kornblith_xy, estimator):
    x, _ = kornblith_xy
    assert ck.cka(x, x, estimator, batch_size=50) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("estimator", ["linear", "debiased", "rbf"])
def test_invariant_to_orthogonal_maps_and_isotropic_scaling(kornblith_xy, estimator):
    x, y = kornblith_xy
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(10, 10)))
    base = ck.cka(x, y, estimator)
    assert ck.cka(x @ q, y, estimator) == pytest.approx(base, abs=1e-10)
    assert ck.cka(7.5 * x, 0.01 * y, estimator) == pytest.approx(base, abs=1e-10)
    assert ck.cka(x + 3.0, y - 100.0, estimator) == pytest.approx(base, abs=1e-10)


@pytest.mark.parametrize("estimator", ["linear", "debiased"])
def test_not_invariant_to_general_invertible_maps(kornblith_xy, estimator):
    x, y = kornblith_xy
    a = np.diag([1.0, 10.0, 0.1, 1, 1, 5, 1, 1, 0.2, 1]) + 0.3 * np.triu(np.ones((10, 10)), 1)
    assert abs(np.linalg.det(a)) > 1e-6
    assert abs(ck.cka(x @ a, y, estimator) - ck.cka(x, y, estimator)) > 1e-2


# --- minibatch estimator ----------------------------------------------------------------------


def correlated(n, p, noise, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    y = np.tanh(x @ rng.normal(size=(p, p)) / np.sqrt(p)) + noise * rng.normal(size=(n, p))
    return x, y


@pytest.mark.parametrize("batch_size", [64, 128])
def test_minibatch_converges_to_full_data_debiased(batch_size):
    x, y = correlated(1024, 32, 0.5, seed=3)
    full = ck.cka(x, y, "debiased")
    estimate = ck.cka(x, y, "minibatch", batch_size=batch_size, passes=10, seed=0)
    assert 0.2 < full < 0.95
    assert estimate == pytest.approx(full, abs=0.02)


def test_minibatch_error_shrinks_as_passes_accumulate():
    x, y = correlated(256, 16, 1.0, seed=4)
    full = ck.cka(x, y, "debiased")
    errors = [
        np.mean(
            [
                abs(ck.cka(x, y, "minibatch", batch_size=32, passes=p, seed=s) - full)
                for s in range(6)
            ]
        )
        for p in (1, 12)
    ]
    assert errors[1] < errors[0] / 2


def test_minibatch_is_not_an_average_of_per_batch_cka():
    x, y = correlated(512, 16, 1.0, seed=5)
    idx = np.array_split(np.random.default_rng(0).permutation(512), 16)
    averaged = np.mean([ck.cka(x[i], y[i], "linear") for i in idx])
    estimate = ck.cka(x, y, "minibatch", batch_size=32, passes=10)
    full = ck.cka(x, y, "debiased")
    assert abs(estimate - full) < abs(averaged - full)


def test_independent_wide_features_biased_rises_unbiased_stays_at_zero():
    rng = np.random.default_rng(6)
    n, p = 200, 800
    x, y = rng.normal(size=(n, p)), rng.normal(size=(n, p))
    assert ck.cka(x, y, "linear") == pytest.approx(p / (p + n), abs=0.03)
    assert abs(ck.cka(x, y, "debiased")) < 0.03
    assert abs(ck.cka(x, y, "minibatch", batch_size=64, passes=10)) < 0.03


def test_large_mean_float32_relu_features_give_the_float64_answer():
    rng = np.random.default_rng(7)
    n, p = 512, 64
    z = rng.normal(size=(n, p))
    x64 = np.maximum(z, 0) + 50.0
    y64 = np.maximum(z + 0.3 * rng.normal(size=(n, p)), 0) + 50.0
    truth = song_hsic1_closed_form
    xc, yc = x64 - x64.mean(0), y64 - y64.mean(0)
    k, l = xc @ xc.T, yc @ yc.T  # noqa: E741
    expected = truth(k, l) / np.sqrt(truth(k, k) * truth(l, l))
    x32, y32 = x64.astype(np.float32), y64.astype(np.float32)
    assert ck.cka(x32, y32, "debiased") == pytest.approx(expected, abs=1e-5)
    assert ck.cka(x32, y32, "minibatch", batch_size=n) == pytest.approx(expected, abs=1e-5)
    # The same Song formula on uncentred float32 features is visibly wrong: the test bites.
    k32, l32 = x32 @ x32.T, y32 @ y32.T
    with np.errstate(invalid="ignore"):
        naive = truth(k32, l32) / np.sqrt(truth(k32, k32) * truth(l32, l32))
    assert not abs(naive - expected) < 1e-3  # off, or NaN


# --- all pairs at once ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_layers():
    rng = np.random.default_rng(8)
    h = rng.normal(size=(120, 20))
    layers = []
    for width in (8, 16, 32, 16):
        h = np.maximum(h @ rng.normal(size=(h.shape[1], width)) / np.sqrt(h.shape[1]), 0) + 0.1
        layers.append(h.astype(np.float32))
    return layers


@pytest.mark.parametrize("estimator", ["linear", "debiased", "rbf", "minibatch"])
def test_matrix_equals_pairwise_values_and_chunking_changes_nothing(model_layers, estimator):
    kw = {"batch_size": 40, "passes": 3}
    full = ck.cka_matrix(model_layers, estimator, **kw)
    pairwise = np.array(
        [[ck.cka(a, b, estimator, **kw) for b in model_layers] for a in model_layers]
    )
    np.testing.assert_allclose(full, pairwise, atol=1e-12)
    np.testing.assert_allclose(full, full.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(full), 1.0, atol=1e-12)
    tiny_budget = ck.cka_matrix(model_layers, estimator, max_gram_bytes=1, **kw)
    np.testing.assert_allclose(full, tiny_budget, atol=1e-12)
    cross = ck.cross_cka(model_layers, model_layers[::-1], estimator, max_gram_bytes=1, **kw)
    np.testing.assert_allclose(cross, full[:, ::-1], atol=1e-12)


def test_conv_maps_are_flattened_per_example():
    rng = np.random.default_rng(9)
    conv = rng.normal(size=(50, 3, 4, 4)).astype(np.float32)
    dense = rng.normal(size=(50, 10))
    assert ck.cka(conv, dense) == pytest.approx(ck.cka(conv.reshape(50, -1), dense), abs=1e-12)


def test_torch_inputs_work(model_layers):
    tensors = [torch.from_numpy(x) for x in model_layers]
    np.testing.assert_allclose(
        ck.cka_matrix(tensors, "debiased"), ck.cka_matrix(model_layers, "debiased"), atol=1e-12
    )


# --- principal components and probes ---------------------------------------------------------


def test_pc1_share_of_known_spectrum():
    rng = np.random.default_rng(10)
    n, p = 300, 6
    u, _ = np.linalg.qr(rng.normal(size=(n, p)) - 0)
    u -= u.mean(0)
    u, _ = np.linalg.qr(u)  # orthonormal columns that sum to ~0 (centred)
    v, _ = np.linalg.qr(rng.normal(size=(p, p)))
    s = np.array([5.0, 2.0, 1.0, 1.0, 0.5, 0.5])
    x = u @ np.diag(s) @ v.T + 4.0
    assert ck.pc1_share(x) == pytest.approx(25 / np.sum(s**2), abs=1e-8)
    wide = np.concatenate([x, np.zeros((n, 500))], axis=1)  # p > n path
    assert ck.pc1_share(wide) == pytest.approx(25 / np.sum(s**2), abs=1e-8)


def test_remove_pc1_removes_a_shared_rank_one_signal():
    rng = np.random.default_rng(11)
    n = 400
    signal = rng.normal(size=(n, 1))
    x = 10 * signal @ rng.normal(size=(1, 30)) + rng.normal(size=(n, 30))
    y = 10 * signal @ rng.normal(size=(1, 40)) + rng.normal(size=(n, 40))
    assert ck.cka(x, y, "debiased") > 0.8
    assert abs(ck.cka(x, y, "debiased_pc1_removed")) < 0.05
    removed = ck.remove_pc1(x).numpy()
    assert abs(ck.pc1_share(x) - 1) < 0.1 and ck.pc1_share(removed) < 0.2
    wide = ck.remove_pc1(np.concatenate([x, x, x, x, x, x, x, x, x, x, x, x, x, x], 1)).numpy()
    assert np.allclose(wide[:, :30], removed, atol=1e-8)  # p > n path gives the same projection


def test_linear_probe_accuracy_separates_signal_from_noise():
    rng = np.random.default_rng(12)
    labels = np.repeat(np.arange(4), 60)
    centres = rng.normal(size=(4, 20)) * 3
    x = centres[labels] + rng.normal(size=(240, 20))
    assert M.linear_probe_accuracy(x, labels, seed=0) > 0.95
    noise = rng.normal(size=(240, 20))
    assert M.linear_probe_accuracy(noise, labels, seed=0) < 0.5


# --- blocks -----------------------------------------------------------------------------------


def test_find_blocks_on_hand_made_matrix():
    m = np.full((12, 12), 0.3)
    m[2:7, 2:7] = 0.95  # a block of 5 layers
    m[8:11, 8:11] = 0.92  # a block of 3 layers
    for i in range(11):  # adjacent layers are always similar; that alone is no block
        m[i, i + 1] = m[i + 1, i] = max(m[i, i + 1], 0.93)
    np.fill_diagonal(m, 1.0)
    blocks = B.find_blocks(m, threshold=0.9, min_size=2)
    assert [(b.start, b.end, b.size) for b in blocks] == [(2, 6, 5), (8, 10, 3), (0, 1, 2)]
    assert blocks[0].mean_cka == pytest.approx(0.95)
    assert blocks[1].mean_cka == pytest.approx((0.93 * 2 + 0.92) / 3)  # adjacent pairs 0.93
    assert [b.size for b in B.find_blocks(m, threshold=0.9, min_size=3)] == [5, 3]
    assert [b.size for b in B.find_blocks(m, threshold=0.94, min_size=3)] == [5]
    summary = B.block_summary(
        m, 0.9, 3, pc1_shares=np.r_[[0.1] * 2, [0.8] * 5, [0.1], [0.5] * 3, [0.1]]
    )
    assert summary["block_size"] == 5 and summary["block_start"] == 2
    assert summary["n_blocks"] == 2 and summary["block_fraction"] == pytest.approx(8 / 12)
    assert summary["pc1_share_in_blocks"] == pytest.approx((5 * 0.8 + 3 * 0.5) / 8)
    assert summary["pc1_share_outside"] == pytest.approx(0.1)
    assert B.block_summary(np.eye(4) * 0.5 + 0.5 * np.eye(4), 0.9, 2)["block_size"] == 0


def test_blocks_never_overlap():
    m = np.full((6, 6), 0.5)
    m[0:4, 0:4] = 0.95
    m[2:6, 2:6] = 0.95
    np.fill_diagonal(m, 1)
    blocks = B.find_blocks(m, 0.9, 2)
    covered = [i for b in blocks for i in range(b.start, b.end + 1)]
    assert len(covered) == len(set(covered)) and blocks[0].size == 4


# --- error patterns ---------------------------------------------------------------------------


def test_benjamini_hochberg_against_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.20])
    # sorted: 0.01, 0.03, 0.04, 0.20 → p·m/rank = 0.04, 0.06, 0.0533, 0.20 → cummin from the top
    expected_sorted = [0.04, 0.0533333333, 0.0533333333, 0.20]
    expected = np.array([expected_sorted[0], expected_sorted[2], expected_sorted[1], 0.20])
    np.testing.assert_allclose(E.benjamini_hochberg(p), expected, rtol=1e-8)


def test_per_class_difference_permutation_matches_exact_mcnemar():
    rng = np.random.default_rng(13)
    labels = np.repeat([0, 1, 2], 100)
    a = rng.random(300) < 0.9
    b = a.copy()
    flip = rng.random(300) < 0.15
    b[flip] = ~b[flip]
    b[:100] &= rng.random(100) < 0.6  # class 0: B much worse
    perm = E.per_class_difference(a, b, labels, n_permutations=20000, seed=0)
    exact = E.per_class_difference(a, b, labels, method="mcnemar")
    np.testing.assert_allclose(perm["p_value"], exact["p_value"], atol=0.01)
    assert perm.loc[0, "significant"] and perm.loc[0, "diff"] > 0.2
    assert list(perm.columns[:6]) == ["class", "n", "acc_a", "acc_b", "diff", "p_value"]
    np.testing.assert_allclose(perm["q_value"], E.benjamini_hochberg(perm["p_value"]))


def test_per_class_difference_accepts_seed_stacks_and_agreement():
    labels = np.repeat([0, 1], 20)
    a = np.ones((3, 40), dtype=bool)
    table = E.per_class_difference(a, a, labels, n_permutations=100)
    assert (table["p_value"] == 1).all() and (table["diff"] == 0).all()
    agree = E.prediction_agreement([1, 2, 3], [1, 0, 3])
    assert agree.tolist() == [True, False, True]


# --- tidy tables ------------------------------------------------------------------------------


def test_tables_are_tidy_and_round_trip(model_layers):
    names = [f"h{i}" for i in range(len(model_layers))]
    table = M.within_model_table(names, model_layers, ("debiased", "debiased_pc1_removed"))
    assert set(table.columns) == {"layer_i", "layer_j", "name_i", "name_j", "estimator", "cka"}
    assert len(table) == 2 * len(names) ** 2
    np.testing.assert_allclose(
        B.matrix_from_table(table, "debiased"), ck.cka_matrix(model_layers), atol=1e-12
    )
    cross = M.cross_model_table(names, model_layers, names[:2], model_layers[:2])
    assert B.matrix_from_table(cross, "debiased", ("a", "b")).shape == (4, 2)
    labels = np.repeat(np.arange(3), 40)
    layers = M.layer_table(names, model_layers, labels)
    assert list(layers.columns) == ["layer", "name", "units", "pc1_share", "probe_accuracy"]
    assert layers["units"].tolist() == [8, 16, 32, 16]
    assert layers["pc1_share"].between(0, 1).all()
