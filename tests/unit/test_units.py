"""widthlab.units against independent math: hand-built networks whose prunable and redundant units
are known by construction, hand-made agreement curves, data with a known PCA spectrum, and width
series with known growth."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from widthlab.grid import DataSpec, ModelSpec
from widthlab.units import ablation, counts, measure, redundancy, settings
from widthlab.units import summary as S

# --- tiny TappedModels (the protocol of widthlab.models, built here) -----------------------------


def _apply_mask(h: torch.Tensor, mask) -> torch.Tensor:
    if mask is None:
        return h
    mask = mask.to(h.dtype)
    if mask.dim() == 1:
        mask = mask.unsqueeze(0)
    return h * mask.view(mask.shape[0], mask.shape[1], *([1] * (h.dim() - 2)))


class TinyMLP(nn.Module):
    def __init__(self, layers, head):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.head = head
        self.tap_names = [f"hidden{i + 1}" for i in range(len(layers))]

    def forward(self, x, return_taps=False, masks=None):
        h = x.flatten(1)
        taps = {}
        for name, layer in zip(self.tap_names, self.layers, strict=True):
            h = _apply_mask(torch.relu(layer(h)), (masks or {}).get(name))
            taps[name] = h
        logits = self.head(h)
        return (logits, taps) if return_taps else logits


class TinyCNN(nn.Module):
    def __init__(self, channels=(4, 6), classes=3):
        super().__init__()
        self.convs = nn.ModuleList()
        c_in = 1
        for c in channels:
            self.convs.append(nn.Conv2d(c_in, c, 3, padding=1))
            c_in = c
        self.head = nn.Linear(c_in, classes)
        self.tap_names = [f"conv{i + 1}" for i in range(len(channels))]

    def forward(self, x, return_taps=False, masks=None):
        h = x
        taps = {}
        for name, conv in zip(self.tap_names, self.convs, strict=True):
            h = _apply_mask(torch.relu(conv(h)), (masks or {}).get(name))
            taps[name] = h
        logits = self.head(h.mean(dim=(2, 3)))
        return (logits, taps) if return_taps else logits


def random_mlp(sizes=(5, 12, 9), classes=4, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    return TinyMLP(layers, nn.Linear(sizes[-1], classes)).eval()


def frivolous_net(u=5, k=2, d=3):
    """One hidden layer of n = u + k + d units on inputs x ∈ [-1, 1]^u:

    - units 0..u-1: h_i = x_i + 100 (independent, always active);
    - units u..u+k-1: exact duplicates of units 0..k-1;
    - the last d units are dead (zero weights, bias −1 → ReLU 0).

    Head (2 classes): logit_0 = Σ_groups g − b, logit_1 = 0, where a group is a singleton unit
    (weight 1) or an original+duplicate pair (weight ½ each), b = 424 for u = 5 groups. Every
    example is class 0. Zeroing a singleton or a whole pair, or halves of two pairs, drops
    logit_0 below 0 (≤ 101·4 − 424 < 0); zeroing dead units or one half of one pair does not
    (≥ 99·5 − 50.5 − 424 > 0). The duplicates matter only jointly.
    """
    assert u == 5, "the bias below is worked out for five groups"
    n = u + k + d
    hidden = nn.Linear(u, n)
    head = nn.Linear(n, 2)
    with torch.no_grad():
        w = torch.zeros(n, u)
        b = torch.full((n,), 100.0)
        for i in range(u):
            w[i, i] = 1.0
        for j in range(k):
            w[u + j, j] = 1.0
        b[u + k :] = -1.0
        hidden.weight.copy_(w)
        hidden.bias.copy_(b)
        hw = torch.zeros(2, n)
        hw[0, :u] = 1.0
        hw[0, :k] = 0.5
        hw[0, u : u + k] = 0.5
        head.weight.copy_(hw)
        head.bias.copy_(torch.tensor([-424.0, 0.0]))
    return TinyMLP([hidden], head).eval()


def frivolous_inputs(u=5, n=200, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, u)).astype(np.float32)


def harmless(ablated, u=5, k=2, d=3):
    """The oracle of frivolous_net: a set of zeroed units leaves every prediction unchanged iff it
    holds only dead units and at most one member of the duplicate pairs."""
    dead = set(range(u + k, u + k + d))
    pair_members = set(range(k)) | set(range(u, u + k))
    rest = set(ablated) - dead
    return rest <= pair_members and len(rest) <= 1


# --- ablation machinery ---------------------------------------------------------------------------


def reference_curves(model, x, orders, fractions):
    """One forward pass per configuration with a (units,) mask, written out independently."""
    with torch.no_grad():
        xt = torch.as_tensor(x)
        base = model(xt).argmax(1)
        _, taps = model(xt[:1], return_taps=True)
        sizes = {t: taps[t].shape[1] for t in model.tap_names}
        rows = []
        for scope in ["all", *model.tap_names]:
            for k, order in enumerate(orders):
                for f in fractions:
                    masks = {}
                    for tap, n in sizes.items():
                        keep = torch.ones(n)
                        if scope in ("all", tap):
                            keep[torch.as_tensor(order[tap][: int(np.floor(f * n + 1e-9))])] = 0
                        masks[tap] = keep
                    pred = model(xt, masks=masks).argmax(1)
                    rows.append((scope, k, float(f), (pred == base).double().mean().item()))
    return pd.DataFrame(rows, columns=["scope", "order", "fraction", "agreement"])


@pytest.mark.parametrize("batch_size", [7, 64, 100_000])
def test_batched_masks_equal_one_at_a_time(batch_size):
    model = random_mlp()
    x = np.random.default_rng(1).normal(size=(30, 5)).astype(np.float32)
    fractions = np.linspace(0, 1, 7)
    curves = ablation.ablation_curves(model, x, fractions, orders=3, seed=11, batch_size=batch_size)
    orders = ablation.random_orders({"hidden1": 12, "hidden2": 9}, 3, 11)
    ref = reference_curves(model, x, orders, fractions)
    merged = curves.merge(ref, on=["scope", "order", "fraction"], suffixes=("", "_ref"))
    assert len(merged) == len(ref) == 3 * 3 * 7
    np.testing.assert_allclose(merged["agreement"], merged["agreement_ref"], atol=1e-12)
    assert (curves.loc[curves.fraction == 0, "agreement"] == 1.0).all()
    full = curves[(curves.scope == "all") & (curves.fraction == 1.0)]
    assert (full["n_units_ablated"] == 21).all() and (full["units"] == 21).all()


def test_conv_taps_ablate_whole_channels():
    torch.manual_seed(0)
    model = TinyCNN().eval()
    x = np.random.default_rng(0).normal(size=(16, 1, 6, 6)).astype(np.float32)
    curves = ablation.ablation_curves(
        model, x, np.linspace(0, 1, 5), orders=2, seed=3, batch_size=20
    )
    ref = reference_curves(
        model, x, ablation.random_orders({"conv1": 4, "conv2": 6}, 2, 3), np.linspace(0, 1, 5)
    )
    merged = curves.merge(ref, on=["scope", "order", "fraction"], suffixes=("", "_ref"))
    np.testing.assert_allclose(merged["agreement"], merged["agreement_ref"])
    assert set(curves.loc[curves.scope == "conv2", "units"]) == {6}
    # every channel of the last conv zeroed: logits = head bias for every example
    with torch.no_grad():
        base = model(torch.as_tensor(x)).argmax(1)
        constant = int(model.head.bias.argmax())
    last = curves[(curves.scope == "conv2") & (curves.fraction == 1.0)]["agreement"]
    np.testing.assert_allclose(last, (base == constant).double().mean().item())


def test_nested_orders_and_unit_counts():
    assert ablation.n_ablated(1 / 6, 6) == 1  # 1/6 · 6 is a hair below 1 in floating point
    assert (
        ablation.n_ablated(0.5, 7) == 3
        and ablation.n_ablated(1.0, 7) == 7
        and ablation.n_ablated(0.0, 7) == 0
    )
    a, b = (
        ablation.random_orders({"t": 10}, 2, seed=4),
        ablation.random_orders({"t": 10}, 2, seed=4),
    )
    assert all((x["t"] == y["t"]).all() for x, y in zip(a, b, strict=True))
    assert sorted(a[0]["t"].tolist()) == list(range(10))
    assert not (a[0]["t"] == a[1]["t"]).all()


def test_widthlab_models_satisfy_the_ablation_protocol():
    models = pytest.importorskip("widthlab.models")

    torch.manual_seed(0)
    spec = ModelSpec(DataSpec("digits"), "cnn", 4, 2)
    model = models.build_model(spec, (1, 8, 8), 10).eval()
    x = np.random.default_rng(0).normal(size=(12, 1, 8, 8)).astype(np.float32)
    curves = ablation.ablation_curves(
        model, x, np.linspace(0, 1, 4), orders=2, seed=5, batch_size=30
    )
    sizes = ablation.tap_sizes(model, x)
    ref = reference_curves(model, x, ablation.random_orders(sizes, 2, 5), np.linspace(0, 1, 4))
    merged = curves.merge(ref, on=["scope", "order", "fraction"], suffixes=("", "_ref"))
    assert len(merged) == len(ref)
    np.testing.assert_allclose(merged["agreement"], merged["agreement_ref"])


# --- hand-built frivolous units ------------------------------------------------------------------


def test_dead_units_are_prunable_and_duplicates_matter_only_jointly():
    model, x = frivolous_net(), frivolous_inputs()
    n, fractions = 10, np.arange(11) / 10
    dead_first = {"hidden1": np.array([7, 8, 9, 4, 0, 1, 2, 3, 5, 6])}  # dead, then a singleton
    half_pair = {"hidden1": np.array([7, 8, 9, 0, 4, 1, 2, 3, 5, 6])}  # dead, one half, singleton
    curves = ablation.ablation_curves(model, x, fractions, orders=[dead_first, half_pair])
    mine = curves[curves.scope == "all"].pivot(
        index="fraction", columns="order", values="agreement"
    )
    np.testing.assert_array_equal(mine[0], [1.0] * 4 + [0.0] * 7)
    np.testing.assert_array_equal(mine[1], [1.0] * 5 + [0.0] * 6)
    # threshold 1.0: the crossing sits exactly on the last fully agreeing fraction
    assert ablation.prunability(fractions, mine[0], threshold=1.0) == pytest.approx(3 / n)
    assert ablation.prunability(fractions, mine[1], threshold=1.0) == pytest.approx(4 / n)
    # default threshold: within one grid step above it
    assert 3 / n < ablation.prunability(fractions, mine[0]) < 4 / n


def test_random_orders_follow_the_oracle():
    model, x = frivolous_net(), frivolous_inputs()
    fractions = np.arange(11) / 10
    curves = ablation.ablation_curves(model, x, fractions, orders=5, seed=2)
    orders = ablation.random_orders({"hidden1": 10}, 5, 2)
    for _, row in curves[curves.scope == "all"].iterrows():
        ablated = orders[row["order"]]["hidden1"][: round(row["fraction"] * 10)]
        assert row["agreement"] == (1.0 if harmless(ablated) else 0.0)


def test_known_counts_pcs_rule_with_dead_and_duplicate_units():
    model, x = frivolous_net(), frivolous_inputs()
    dead_first = {"hidden1": np.array([7, 8, 9, 4, 0, 1, 2, 3, 5, 6])}
    curves = ablation.ablation_curves(model, x, np.arange(11) / 10, orders=[dead_first])
    red = redundancy.redundancy_table(measure.layer_activations(model, x))
    row = red.iloc[0]
    assert row["units"] == 10 and row["n_pcs"] == 5 and row["dead_units"] == 3
    assert row["compressibility"] == pytest.approx(0.5)  # 2 duplicates + 3 dead of 10
    assert row["mean_abs_corr_count"] == pytest.approx(4 / 10)  # 2 pairs, each sees its twin
    table = counts.per_model_table(curves, red, threshold=1.0, rule="pcs")
    for layer in ("hidden1", "all"):
        r = table.set_index("layer").loc[layer]
        assert r["prunable"] == pytest.approx(3)  # the dead units
        assert r["non_prunable"] == pytest.approx(7)
        assert r["redundant"] == pytest.approx(2)  # the duplicates
        assert r["non_redundant"] == pytest.approx(5)  # the independent units
        assert "dead_units" in r["flags"]


def test_known_counts_product_rule_with_duplicates():
    model, x = frivolous_net(u=5, k=2, d=0), frivolous_inputs()
    singleton_first = {"hidden1": np.array([4, 0, 1, 2, 3, 5, 6])}
    curves = ablation.ablation_curves(model, x, np.arange(8) / 7, orders=[singleton_first])
    red = redundancy.redundancy_table(measure.layer_activations(model, x))
    assert red.iloc[0]["compressibility"] == pytest.approx(2 / 7)
    table = counts.per_model_table(curves, red, threshold=1.0, rule="product").set_index("layer")
    assert table.loc["all", "prunable"] == pytest.approx(0.0)
    assert table.loc["all", "redundant"] == pytest.approx(2.0)
    assert table.loc["all", "non_redundant"] == pytest.approx(5.0)
    assert table.loc["all", "flags"] == ""


def test_per_model_table_network_row_sums_layers():
    model = random_mlp(sizes=(5, 12, 9))
    x = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
    curves = ablation.ablation_curves(model, x, orders=3, seed=0)
    red = redundancy.redundancy_table(measure.layer_activations(model, x))
    table = counts.per_model_table(curves, red, columns={"model": "m", "width": 12}).set_index(
        "layer"
    )
    assert list(table.index) == ["hidden1", "hidden2", "all"]
    assert table.loc["all", "units"] == 21 and (table["model"] == "m").all()
    p = table.loc["all", "prunability"]
    expected_red = (1 - p) * (red["compressibility"] * red["units"]).sum()
    assert table.loc["all", "redundant"] == pytest.approx(expected_red)
    for q in ("prunable", "non_prunable", "redundant", "non_redundant"):
        assert (table[q] >= -1e-12).all()
    np.testing.assert_allclose(table["prunable"] + table["non_prunable"], table["units"])
    np.testing.assert_allclose(table["redundant"] + table["non_redundant"], table["non_prunable"])


# --- prunability from an agreement curve ----------------------------------------------------------


def test_crossing_interpolates_linearly():
    f = np.linspace(0, 1, 7)
    a = [1.0, 0.95, 0.9, 0.6, 0.3, 0.1, 0.05]
    value, flag = ablation.crossing(f, a, 0.8)
    assert flag == "crosses" and value == pytest.approx(2 / 6 + (0.1 / 0.3) / 6)
    # first crossing counts, even if the curve recovers later
    assert ablation.prunability(f, [1.0, 0.7, 0.9, 0.9, 0.9, 0.9, 0.9]) == pytest.approx(
        (0.2 / 0.3) / 6
    )
    # agreement exactly at the threshold is not below it
    assert ablation.prunability(f, [1.0, 0.8, 0.8, 0.4, 0.0, 0.0, 0.0]) == pytest.approx(
        2 / 6 + 0.0
    )


def test_crossing_never_crosses_and_starts_below():
    f = np.linspace(0, 1, 7)
    assert ablation.crossing(f, [1.0, 1, 1, 0.95, 0.9, 0.85, 0.81]) == (1.0, "never_crosses")
    assert ablation.crossing(f, [0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]) == (0.0, "starts_below")
    assert ablation.crossing(f[::-1], [0.81, 0.85, 0.9, 0.95, 1, 1, 1.0]) == (1.0, "never_crosses")


def test_prunability_table_flags_and_order_spread():
    rows = []
    for order, drop in enumerate([0.5, 0.7]):
        for f in np.linspace(0, 1, 6):
            rows.append(("all", order, f, 1.0 if f < drop else 0.0, 0, 10))
            rows.append(("t", order, f, 1.0, 0, 10))
    curves = pd.DataFrame(
        rows, columns=["scope", "order", "fraction", "agreement", "n_units_ablated", "units"]
    )
    table = ablation.prunability_table(curves).set_index("scope")
    assert (
        table.loc["t", "prunability"] == 1.0
        and table.loc["t", "prunability_flag"] == "never_crosses"
    )
    assert table.loc["all", "prunability_flag"] == "crosses"
    assert table.loc["all", "prunability_sd"] > 0


# --- redundancy ---------------------------------------------------------------------------------


def test_compressibility_of_gaussian_data_with_known_spectrum():
    rng = np.random.default_rng(0)
    variances = np.array([10, 10] + [1e-6] * 8)
    x = rng.normal(size=(5000, 10)) * np.sqrt(variances)
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))  # a rotation keeps the spectrum
    values = redundancy.pca_spectrum(x @ q)
    np.testing.assert_allclose(values[:2], 10, rtol=0.1)
    assert redundancy.compressibility(values) == pytest.approx(0.8)
    assert redundancy.layer_redundancy(x @ q)["compressibility"] == pytest.approx(0.8)


def test_exact_spectrum_and_energy_boundaries():
    rng = np.random.default_rng(1)
    n, spectrum = 400, np.array([4.0, 3.0, 2.0, 1.0])
    z = rng.normal(size=(n, 4))
    z -= z.mean(0)
    u, _ = np.linalg.qr(z)  # orthonormal, centred columns
    v, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    x = u * np.sqrt(spectrum * (n - 1)) @ v.T
    np.testing.assert_allclose(redundancy.pca_spectrum(x), spectrum, rtol=1e-10)
    assert redundancy.n_components(spectrum, 0.95) == 4
    assert redundancy.n_components(spectrum, 0.90) == 3  # exactly 90 % held by three components
    assert redundancy.n_components(spectrum, 0.40) == 1
    assert redundancy.compressibility(spectrum, 0.90) == pytest.approx(0.25)
    assert redundancy.n_components([0, 0, 0]) == 0 and redundancy.compressibility([0.0, 0.0]) == 1.0


@pytest.mark.parametrize("samples", [5, 40])
def test_spectrum_with_fewer_samples_than_units(samples):
    x = np.random.default_rng(5).normal(size=(samples, 12)) @ np.diag(np.arange(1.0, 13.0))
    reference = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False)))[::-1]
    values = redundancy.pca_spectrum(x)
    assert values.shape == (12,)
    np.testing.assert_allclose(values, np.clip(reference, 0, None), atol=1e-9)
    assert redundancy.n_components(values) <= samples - 1  # n samples span at most n − 1 directions


def test_auto_batch_size():
    x = np.zeros((3, 5), dtype=np.float32)
    assert measure.auto_batch_size(random_mlp(), x, 77) == 77
    # widest tap 12 floats = 48 bytes a row: 4 MiB / 48 B > the row cap
    assert measure.auto_batch_size(random_mlp(), x) == measure.AUTO_BATCH_MAX_ROWS
    # 1024 units = 4 KiB a row: 1024 rows in 4 MiB
    assert measure.auto_batch_size(random_mlp(sizes=(5, 1024, 9)), x) == (4 << 20) // 4096
    # a conv map of 6 channels × 6 × 6 positions = 864 bytes an example
    cnn = TinyCNN(channels=(4, 6)).eval()
    maps = np.zeros((2, 1, 6, 6), dtype=np.float32)
    assert measure.auto_batch_size(cnn, maps) == (4 << 20) // (6 * 36 * 4)


def test_duplicated_units_are_compressible():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(300, 6))
    k = 3
    x = np.concatenate([base, base[:, :k] * 2.0 - 1.0], axis=1)  # affine copies
    info = redundancy.layer_redundancy(x)
    assert info["compressibility"] >= k / x.shape[1] - 1e-12
    assert info["mean_abs_corr_count"] == pytest.approx(2 * k / x.shape[1])


def test_dead_units_in_correlation_counts():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(100, 1))
    x = np.concatenate(
        [a, -a, rng.normal(size=(100, 1)), np.zeros((100, 2)), np.full((100, 1), 3.0)], axis=1
    )
    counts = redundancy.similar_unit_counts(x)
    np.testing.assert_array_equal(counts, [1, 1, 0, 0, 0, 0])
    assert redundancy.dead_units(x).tolist() == [False, False, False, True, True, True]
    assert redundancy.layer_redundancy(np.zeros((10, 4)))["n_pcs"] == 0


def test_conv_positions_are_samples_and_rows_are_subsampled():
    rng = np.random.default_rng(4)
    maps = rng.normal(size=(20, 3, 5, 5))
    maps[:, 2] = maps[:, 0] + maps[:, 1]  # channel 2 is a linear combination
    samples = redundancy.unit_samples(maps)
    assert samples.shape == (500, 3)
    np.testing.assert_array_equal(samples[7], maps[0, :, 1, 2])
    assert redundancy.layer_redundancy(maps)["n_pcs"] == 2
    sub = redundancy.unit_samples(maps, max_rows=123, seed=0)
    assert sub.shape == (123, 3)
    np.testing.assert_array_equal(sub, redundancy.unit_samples(maps, max_rows=123, seed=0))


# --- growth statistic and the grid summary ----------------------------------------------------


def test_growth_statistic_on_known_series():
    w = np.array([8, 16, 32, 64, 128])
    assert S.growth_statistic(w, 3.0 * w) == pytest.approx(2.0)
    assert S.growth_statistic(w, 0.5 * w**2) == pytest.approx(4.0)
    assert S.growth_statistic(w, np.full(5, 7.0)) == pytest.approx(1.0)
    assert S.growth_statistic(w[::-1], (3.0 * w)[::-1]) == pytest.approx(2.0)  # order-free
    assert S.growth_statistic(w, [0, 0, 4, 8, 16]) == pytest.approx(2.0)  # zero counts left out
    assert math.isnan(S.growth_statistic(w, np.zeros(5)))
    assert S.growth_statistic([8, 16, 48], [1, 2, 6]) == pytest.approx(2.0)  # any widths
    # the geometric mean of the doubling ratios: ratios 3 and 4/3 give √(3 · 4/3) = 2, where
    # their arithmetic mean (the biased old statistic) would say 2.17
    assert S.growth_statistic([8, 16, 32], [1, 3, 4]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="two widths"):
        S.growth_statistic([8], [1])


def fake_tables(widths=(16, 32, 64, 128), seeds=(0, 1, 2)):
    tables = []
    for seed in seeds:
        for w in widths:
            noise = 1.0 + 0.01 * seed
            table = pd.DataFrame(
                {
                    "layer": ["hidden1", "all"],
                    "layer_index": [0, -1],
                    "units": [w, w],
                    "prunability": [0.5, 0.5],
                    "prunable": [w**2 / 64 * noise] * 2,
                    "non_prunable": [5.0 * noise] * 2,
                    "redundant": [float(w)] * 2,
                    "non_redundant": [0.0] * 2,
                }
            )
            spec = ModelSpec(DataSpec("digits"), "mlp", w, 1, seed=seed).columns()
            for name, value in spec.items():
                table[name] = value
            tables.append(table)
    return tables


def test_summary_and_growth_tables():
    summary = S.summary_table(fake_tables())
    assert set(summary["quantity"]) == set(settings.COUNT_QUANTITIES)
    widest = summary[(summary.width == 128) & (summary.quantity != "non_redundant")]
    np.testing.assert_allclose(widest["normalised"], 1.0)
    units = summary[(summary.quantity == "units") & (summary.width == 16)]
    np.testing.assert_allclose(units["normalised"], 16 / 128)
    growth = S.growth_table(summary).set_index("quantity")
    assert growth.loc["units", "g"] == pytest.approx(2.0)
    assert growth.loc["prunable", "g"] == pytest.approx(4.0)
    assert growth.loc["prunable", "g_ci_low"] == pytest.approx(4.0)
    assert growth.loc["non_prunable", "g"] == pytest.approx(1.0)
    assert math.isnan(growth.loc["non_redundant", "g"])
    assert growth.loc["units", "n_seeds"] == 3 and growth.loc["units", "widths"] == "16,32,64,128"


def test_growth_table_takes_any_width_series_and_flags_single_widths():
    summary = S.summary_table(fake_tables(widths=(16, 48)))  # not doublings: g is still defined
    growth = S.growth_table(summary).set_index("quantity")
    assert growth.loc["units", "g"] == pytest.approx(2.0)
    single = S.growth_table(S.summary_table(fake_tables(widths=(16,))))
    assert single["g"].isna().all() and single["flag"].str.contains("two widths").all()


# --- figures from tables ---------------------------------------------------------------------


def stage_tables(models):
    """The figure tables of the stage from random MLPs; ``models`` = [(width, depth, axes)]."""
    x = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
    curves, tables = [], []
    for width, depth, axes in models:
        seed = axes.get("seed", 0)
        model = random_mlp(sizes=(5, *[width] * depth), classes=3, seed=seed)
        cols = ModelSpec(DataSpec("digits"), "mlp", width, depth, **axes).columns()
        c = measure.analyse_model(model, x, settings={"orders": 2}, columns=cols, seed=seed)
        tables.append(c[0])
        curves.append(c[1])
    summary = S.summary_table(tables)
    return {
        "curves": pd.concat(curves, ignore_index=True),
        "units": pd.concat(tables, ignore_index=True),
        "summary": summary,
        "growth": S.growth_table(summary, None),
    }


def draw_all(stage, tmp_path):
    from widthlab.plots import save
    from widthlab.units import figures as P

    figures = {}
    for name, figure in P.FIGURES.items():
        fig = figure(stage)
        figures[name] = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
        save(fig, str(tmp_path / f"{name}.png"))
        assert (tmp_path / f"{name}.png").stat().st_size > 5000, name
    return figures


def test_figures_are_drawn_from_tables(tmp_path):
    models = [
        (width, depth, {"weight_decay": wd, "seed": seed})
        for depth in (1, 2)
        for wd in (0.0, 5e-4)
        for seed in (0, 1)
        for width in (4, 8, 16)
    ]
    legends = draw_all(stage_tables(models), tmp_path)
    assert legends["ablation_curves"] == ["4", "8", "16"]
    assert legends["split"][0] == "prunable"


def test_figures_of_a_mixed_grid(tmp_path):
    """Setups that exist at one depth only (dropout at depth 1) and width series that differ."""
    models = [(w, 1, {"dropout": do}) for do in (0.0, 0.5) for w in (8, 16, 32)]
    models += [(w, 2, {}) for w in (4, 8)]
    stage = stage_tables(models)
    from widthlab.units.figures import setup_axes

    assert setup_axes(stage["units"]) == ["dropout"]
    legends = draw_all(stage, tmp_path)
    assert legends["ablation_curves"] == ["4", "8", "16", "32"]  # from every panel


# --- the per-model analysis end to end -----------------------------------------------------------


def copies_net(n=12, essential=7, bias=650.0):
    """One hidden layer of ``n`` identical units h = x + 100 (x ∈ [-1, 1]), head logit_0 =
    Σ h − bias, logit_1 = 0: every example is class 0 while at least ``essential`` copies are on
    (7 · 99 > 650) and class 1 once fewer are (6 · 101 < 650), whatever the ablation order."""
    hidden, head = nn.Linear(1, n), nn.Linear(n, 2)
    with torch.no_grad():
        hidden.weight.fill_(1.0)
        hidden.bias.fill_(100.0)
        head.weight.zero_()
        head.weight[0].fill_(1.0)
        head.bias.copy_(torch.tensor([-bias, 0.0]))
    assert essential * 99 > bias > (essential - 1) * 101
    return TinyMLP([hidden], head).eval()


@pytest.mark.parametrize("rule", ["product", "pcs"])
def test_analyse_model_on_identical_copies(rule):
    n = 12
    x = np.random.default_rng(0).uniform(-1, 1, size=(50, 1)).astype(np.float32)
    y = np.arange(50) % 2  # half the labels are the class the net always predicts
    settings = {"orders": 4, "redundancy_rule": rule, "batch_size": 64}
    cols = {"model": "copies", "width": n}
    table, curves = measure.analyse_model(copies_net(n), x, y, settings, cols, seed=3)
    # linspace(0, 1, 7) zeroes 0, 2, 4, 6, … of 12 units; 6 off leaves 6 < 7 on: agreement 1,1,1,0…
    mean = curves[curves.scope == "all"].groupby("fraction")["agreement"].mean()
    np.testing.assert_array_equal(mean.to_numpy(), [1, 1, 1, 0, 0, 0, 0])
    assert set(curves["order"]) == {0, 1, 2, 3} and list(curves.columns[:2]) == ["model", "width"]
    p = 2 / 6 + (1 - 0.8) / (1 - 0) * (1 / 6)
    for layer in ("hidden1", "all"):
        r = table.set_index("layer").loc[layer]
        assert r["prunability"] == pytest.approx(p) and r["prunability_sd"] == pytest.approx(0)
        assert r["n_pcs"] == 1 and r["compressibility"] == pytest.approx(11 / 12)
        assert r["mean_abs_corr_count"] == pytest.approx(11)  # every copy sees 11 twins
        assert r["prunable"] == pytest.approx(p * n)
        non_prunable = n - p * n
        redundant = 11 / 12 * non_prunable if rule == "product" else non_prunable - 1
        assert r["redundant"] == pytest.approx(redundant)
        assert r["examples"] == 50 and r["intact_accuracy"] == pytest.approx(0.5)
        assert r["pca_rows"] == 50


def test_analyse_model_rejects_bad_settings():
    x = np.zeros((4, 1), dtype=np.float32)
    with pytest.raises(ValueError, match="unknown units settings"):
        measure.analyse_model(copies_net(), x, settings={"order": 3})
    with pytest.raises(ValueError, match="at least 2 examples"):
        measure.analyse_model(copies_net(), x[:1])
    with pytest.raises(ValueError, match="at least 2 ablation fractions"):
        measure.analyse_model(copies_net(), x, settings={"fractions": 1})


def test_fraction_grid():
    assert measure.fraction_grid(7) == pytest.approx([i / 6 for i in range(7)])
    assert measure.fraction_grid([0.5, 0.0, 1.0, 0.5]) == [0.0, 0.5, 1.0]
    for bad in ([0.5], [0.0, 1.5], True):
        with pytest.raises(ValueError):
            measure.fraction_grid(bad)


def test_model_seed_differs_between_model_seeds():
    assert measure.model_seed(0, 1) == measure.model_seed(0, 1)
    assert len({measure.model_seed(0, 0), measure.model_seed(0, 1), measure.model_seed(1, 0)}) == 3


def test_unit_samples_of_conv_maps_keep_positions_of_their_example():
    torch.manual_seed(0)
    model = TinyCNN(channels=(3, 4)).eval()
    x = np.random.default_rng(0).normal(size=(10, 1, 6, 6)).astype(np.float32)
    full = measure.layer_activations(model, x)
    # enough rows for every position: the same samples as all positions (row order aside)
    every = measure.unit_sample_sets(model, x, max_rows=10 * 36, seed=0, batch_size=4)
    for tap, maps in full.items():
        reference = np.moveaxis(maps, 1, -1).reshape(-1, maps.shape[1])
        np.testing.assert_allclose(
            np.sort(every[tap], axis=0), np.sort(reference, axis=0), rtol=1e-6
        )
    # 25 rows for 10 examples: ceil(25 / 10) = 3 distinct positions of each example, in order
    few = measure.unit_sample_sets(model, x, max_rows=25, seed=1, batch_size=4)
    again = measure.unit_sample_sets(model, x, max_rows=25, seed=1, batch_size=4)
    for tap, maps in full.items():
        assert few[tap].shape == (30, maps.shape[1])
        np.testing.assert_array_equal(few[tap], again[tap])
        for i in range(10):
            positions = np.moveaxis(maps[i], 0, -1).reshape(-1, maps.shape[1])
            hits = [
                np.flatnonzero(np.all(np.isclose(positions, row, rtol=1e-6), axis=1))
                for row in few[tap][3 * i : 3 * i + 3]
            ]
            # each row is a position of example i, and three distinct positions can explain them
            # (ReLU zeros make several positions equal)
            assert any(len(set(c)) == 3 for c in itertools.product(*hits))
    dense = measure.unit_sample_sets(random_mlp(), np.ones((5, 5), np.float32), max_rows=2)
    assert dense["hidden1"].shape == (5, 12)  # dense taps keep one row per example


# --- model axes flow through, headline ------------------------------------------------------------


def test_model_columns_follow_the_model_spec():
    spec_columns = list(ModelSpec(DataSpec("digits"), "mlp", 8, 1).columns())
    assert S.model_columns() == spec_columns
    assert set(S.series_axes()) == set(spec_columns) - {"model", "width", "seed"}
    assert "weight_decay" in S.factor_axes() and "depth" not in S.factor_axes()


def spec_table(width, prunable_fraction, redundant_fraction, **axes):
    """A per-model table (network row only) of a model with ``width`` units in one layer."""
    spec = ModelSpec(DataSpec("digits"), "mlp", width, 1, **axes)
    prunable = prunable_fraction * width
    redundant = redundant_fraction * width
    table = pd.DataFrame(
        {
            "layer": ["all"],
            "layer_index": [-1],
            "units": [width],
            "prunability": [prunable_fraction],
            "prunable": [prunable],
            "non_prunable": [width - prunable],
            "redundant": [redundant],
            "non_redundant": [width - prunable - redundant],
        }
    )
    for i, (name, value) in enumerate(spec.columns().items()):
        table.insert(i, name, value)
    return table


def test_a_new_axis_separates_width_series():
    wide = 64
    tables = [
        spec_table(w, 0.1, 0.2, dropout=dropout, seed=seed)
        for dropout in (0.0, 0.5)
        for w in (16, 32, wide)
        for seed in (0, 1)
    ]
    tables[-1]["prunable"] *= 2  # the widest dropout model, seed 1, has twice the prunable units
    summary = S.summary_table(tables)
    widest = summary[(summary.width == wide) & (summary.quantity == "prunable")]
    np.testing.assert_allclose(widest["normalised"], 1.0)  # normalised within its own series
    growth = S.growth_table(summary)
    assert set(growth["dropout"]) == {0.0, 0.5}
    g = growth[growth.quantity == "prunable"].set_index("dropout")["g"]
    # seed 1 of dropout 0.5: log2 counts rise 0, 1, 3 over three widths → slope 1.5; seed 0 ∝ W
    assert g[0.0] == pytest.approx(2.0) and g[0.5] == pytest.approx(2 ** ((1 + 1.5) / 2))


def test_summarise_needs_model_columns_in_curves():
    tables = [spec_table(w, 0.3, 0.2) for w in (16, 32)]
    with pytest.raises(ValueError, match="ablation-curve table 0 lacks the model columns"):
        S.summarise(tables, [pd.DataFrame({"scope": ["all"]})])
