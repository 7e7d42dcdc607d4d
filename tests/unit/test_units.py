"""widthlab.units against independent math: hand-built networks whose prunable and redundant units
are known by construction, hand-made agreement curves, data with a known PCA spectrum, and width
series with known growth."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from widthlab import units as U

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
    curves = U.ablation_curves(model, x, fractions, orders=3, seed=11, batch_size=batch_size)
    orders = U.random_orders({"hidden1": 12, "hidden2": 9}, 3, 11)
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
    curves = U.ablation_curves(model, x, np.linspace(0, 1, 5), orders=2, seed=3, batch_size=20)
    ref = reference_curves(
        model, x, U.random_orders({"conv1": 4, "conv2": 6}, 2, 3), np.linspace(0, 1, 5)
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
    assert U.n_ablated(1 / 6, 6) == 1  # 1/6 · 6 is a hair below 1 in floating point
    assert U.n_ablated(0.5, 7) == 3 and U.n_ablated(1.0, 7) == 7 and U.n_ablated(0.0, 7) == 0
    a, b = U.random_orders({"t": 10}, 2, seed=4), U.random_orders({"t": 10}, 2, seed=4)
    assert all((x["t"] == y["t"]).all() for x, y in zip(a, b, strict=True))
    assert sorted(a[0]["t"].tolist()) == list(range(10))
    assert not (a[0]["t"] == a[1]["t"]).all()


def test_widthlab_models_satisfy_the_ablation_protocol():
    models = pytest.importorskip("widthlab.models")
    from widthlab.grid import DataSpec, ModelSpec

    torch.manual_seed(0)
    spec = ModelSpec(DataSpec("digits"), "cnn", 4, 2)
    model = models.build_model(spec, (1, 8, 8), 10).eval()
    x = np.random.default_rng(0).normal(size=(12, 1, 8, 8)).astype(np.float32)
    curves = U.ablation_curves(model, x, np.linspace(0, 1, 4), orders=2, seed=5, batch_size=30)
    sizes = U.tap_sizes(model, x)
    ref = reference_curves(model, x, U.random_orders(sizes, 2, 5), np.linspace(0, 1, 4))
    merged = curves.merge(ref, on=["scope", "order", "fraction"], suffixes=("", "_ref"))
    assert len(merged) == len(ref)
    np.testing.assert_allclose(merged["agreement"], merged["agreement_ref"])


# --- hand-built frivolous units ------------------------------------------------------------------


def test_dead_units_are_prunable_and_duplicates_matter_only_jointly():
    model, x = frivolous_net(), frivolous_inputs()
    n, fractions = 10, np.arange(11) / 10
    dead_first = {"hidden1": np.array([7, 8, 9, 4, 0, 1, 2, 3, 5, 6])}  # dead, then a singleton
    half_pair = {"hidden1": np.array([7, 8, 9, 0, 4, 1, 2, 3, 5, 6])}  # dead, one half, singleton
    curves = U.ablation_curves(model, x, fractions, orders=[dead_first, half_pair])
    mine = curves[curves.scope == "all"].pivot(
        index="fraction", columns="order", values="agreement"
    )
    np.testing.assert_array_equal(mine[0], [1.0] * 4 + [0.0] * 7)
    np.testing.assert_array_equal(mine[1], [1.0] * 5 + [0.0] * 6)
    # threshold 1.0: the crossing sits exactly on the last fully agreeing fraction
    assert U.prunability(fractions, mine[0], threshold=1.0) == pytest.approx(3 / n)
    assert U.prunability(fractions, mine[1], threshold=1.0) == pytest.approx(4 / n)
    # default threshold: within one grid step above it
    assert 3 / n < U.prunability(fractions, mine[0]) < 4 / n


def test_random_orders_follow_the_oracle():
    model, x = frivolous_net(), frivolous_inputs()
    fractions = np.arange(11) / 10
    curves = U.ablation_curves(model, x, fractions, orders=5, seed=2)
    orders = U.random_orders({"hidden1": 10}, 5, 2)
    for _, row in curves[curves.scope == "all"].iterrows():
        ablated = orders[row["order"]]["hidden1"][: round(row["fraction"] * 10)]
        assert row["agreement"] == (1.0 if harmless(ablated) else 0.0)


def test_known_counts_pcs_rule_with_dead_and_duplicate_units():
    model, x = frivolous_net(), frivolous_inputs()
    dead_first = {"hidden1": np.array([7, 8, 9, 4, 0, 1, 2, 3, 5, 6])}
    curves = U.ablation_curves(model, x, np.arange(11) / 10, orders=[dead_first])
    red = U.redundancy_table(U.layer_activations(model, x))
    row = red.iloc[0]
    assert row["units"] == 10 and row["n_pcs"] == 5 and row["dead_units"] == 3
    assert row["compressibility"] == pytest.approx(0.5)  # 2 duplicates + 3 dead of 10
    assert row["mean_abs_corr_count"] == pytest.approx(4 / 10)  # 2 pairs, each sees its twin
    table = U.per_model_table(curves, red, threshold=1.0, rule="pcs")
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
    curves = U.ablation_curves(model, x, np.arange(8) / 7, orders=[singleton_first])
    red = U.redundancy_table(U.layer_activations(model, x))
    assert red.iloc[0]["compressibility"] == pytest.approx(2 / 7)
    table = U.per_model_table(curves, red, threshold=1.0, rule="product").set_index("layer")
    assert table.loc["all", "prunable"] == pytest.approx(0.0)
    assert table.loc["all", "redundant"] == pytest.approx(2.0)
    assert table.loc["all", "non_redundant"] == pytest.approx(5.0)
    assert table.loc["all", "flags"] == ""


def test_per_model_table_network_row_sums_layers():
    model = random_mlp(sizes=(5, 12, 9))
    x = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
    curves = U.ablation_curves(model, x, orders=3, seed=0)
    red = U.redundancy_table(U.layer_activations(model, x))
    table = U.per_model_table(curves, red, columns={"model": "m", "width": 12}).set_index("layer")
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
    value, flag = U.crossing(f, a, 0.8)
    assert flag == "crosses" and value == pytest.approx(2 / 6 + (0.1 / 0.3) / 6)
    # first crossing counts, even if the curve recovers later
    assert U.prunability(f, [1.0, 0.7, 0.9, 0.9, 0.9, 0.9, 0.9]) == pytest.approx((0.2 / 0.3) / 6)
    # agreement exactly at the threshold is not below it
    assert U.prunability(f, [1.0, 0.8, 0.8, 0.4, 0.0, 0.0, 0.0]) == pytest.approx(2 / 6 + 0.0)


def test_crossing_never_crosses_and_starts_below():
    f = np.linspace(0, 1, 7)
    assert U.crossing(f, [1.0, 1, 1, 0.95, 0.9, 0.85, 0.81]) == (1.0, "never_crosses")
    assert U.crossing(f, [0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]) == (0.0, "starts_below")
    assert U.crossing(f[::-1], [0.81, 0.85, 0.9, 0.95, 1, 1, 1.0]) == (1.0, "never_crosses")


def test_prunability_table_flags_and_order_spread():
    rows = []
    for order, drop in enumerate([0.5, 0.7]):
        for f in np.linspace(0, 1, 6):
            rows.append(("all", order, f, 1.0 if f < drop else 0.0, 0, 10))
            rows.append(("t", order, f, 1.0, 0, 10))
    curves = pd.DataFrame(
        rows, columns=["scope", "order", "fraction", "agreement", "n_units_ablated", "units"]
    )
    table = U.prunability_table(curves).set_index("scope")
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
    values = U.pca_spectrum(x @ q)
    np.testing.assert_allclose(values[:2], 10, rtol=0.1)
    assert U.compressibility(values) == pytest.approx(0.8)
    assert U.layer_redundancy(x @ q)["compressibility"] == pytest.approx(0.8)


def test_exact_spectrum_and_energy_boundaries():
    rng = np.random.default_rng(1)
    n, spectrum = 400, np.array([4.0, 3.0, 2.0, 1.0])
    z = rng.normal(size=(n, 4))
    z -= z.mean(0)
    u, _ = np.linalg.qr(z)  # orthonormal, centred columns
    v, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    x = u * np.sqrt(spectrum * (n - 1)) @ v.T
    np.testing.assert_allclose(U.pca_spectrum(x), spectrum, rtol=1e-10)
    assert U.n_components(spectrum, 0.95) == 4
    assert U.n_components(spectrum, 0.90) == 3  # exactly 90 % held by three components
    assert U.n_components(spectrum, 0.40) == 1
    assert U.compressibility(spectrum, 0.90) == pytest.approx(0.25)
    assert U.n_components([0, 0, 0]) == 0 and U.compressibility([0.0, 0.0]) == 1.0


def test_duplicated_units_are_compressible():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(300, 6))
    k = 3
    x = np.concatenate([base, base[:, :k] * 2.0 - 1.0], axis=1)  # affine copies
    info = U.layer_redundancy(x)
    assert info["compressibility"] >= k / x.shape[1] - 1e-12
    assert info["mean_abs_corr_count"] == pytest.approx(2 * k / x.shape[1])


def test_dead_units_in_correlation_counts():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(100, 1))
    x = np.concatenate(
        [a, -a, rng.normal(size=(100, 1)), np.zeros((100, 2)), np.full((100, 1), 3.0)], axis=1
    )
    counts = U.similar_unit_counts(x)
    np.testing.assert_array_equal(counts, [1, 1, 0, 0, 0, 0])
    assert U.dead_units(x).tolist() == [False, False, False, True, True, True]
    assert U.layer_redundancy(np.zeros((10, 4)))["n_pcs"] == 0


def test_conv_positions_are_samples_and_rows_are_subsampled():
    rng = np.random.default_rng(4)
    maps = rng.normal(size=(20, 3, 5, 5))
    maps[:, 2] = maps[:, 0] + maps[:, 1]  # channel 2 is a linear combination
    samples = U.unit_samples(maps)
    assert samples.shape == (500, 3)
    np.testing.assert_array_equal(samples[7], maps[0, :, 1, 2])
    assert U.layer_redundancy(maps)["n_pcs"] == 2
    sub = U.unit_samples(maps, max_rows=123, seed=0)
    assert sub.shape == (123, 3)
    np.testing.assert_array_equal(sub, U.unit_samples(maps, max_rows=123, seed=0))


# --- growth statistic and the grid summary ----------------------------------------------------


def test_growth_statistic_on_known_series():
    w = np.array([8, 16, 32, 64, 128])
    assert U.growth_statistic(w, 3.0 * w) == pytest.approx(2.0)
    assert U.growth_statistic(w, 0.5 * w**2) == pytest.approx(4.0)
    assert U.growth_statistic(w, np.full(5, 7.0)) == pytest.approx(1.0)
    assert U.growth_statistic(w[::-1], (3.0 * w)[::-1]) == pytest.approx(2.0)  # order-free
    assert U.growth_statistic(w, [0, 0, 4, 8, 16]) == pytest.approx(2.0)  # zero doublings skipped
    assert math.isnan(U.growth_statistic(w, np.zeros(5)))
    with pytest.raises(ValueError, match="×2"):
        U.growth_statistic([8, 16, 48], [1, 2, 3])
    with pytest.raises(ValueError, match="two widths"):
        U.growth_statistic([8], [1])


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
            spec = {
                "model": f"m-w{w}-s{seed}",
                "dataset": "digits",
                "arch": "mlp",
                "width": w,
                "depth": 1,
                "bottleneck": None,
                "train_size": None,
                "weight_decay": 0.0,
                "seed": seed,
            }
            for name, value in spec.items():
                table[name] = value
            tables.append(table)
    return tables


def test_summary_and_growth_tables():
    summary = U.summary_table(fake_tables())
    assert set(summary["quantity"]) == set(U.COUNT_QUANTITIES)
    widest = summary[(summary.width == 128) & (summary.quantity != "non_redundant")]
    np.testing.assert_allclose(widest["normalised"], 1.0)
    units = summary[(summary.quantity == "units") & (summary.width == 16)]
    np.testing.assert_allclose(units["normalised"], 16 / 128)
    growth = U.growth_table(summary).set_index("quantity")
    assert growth.loc["units", "g"] == pytest.approx(2.0)
    assert growth.loc["prunable", "g"] == pytest.approx(4.0)
    assert growth.loc["prunable", "g_ci_low"] == pytest.approx(4.0)
    assert growth.loc["non_prunable", "g"] == pytest.approx(1.0)
    assert growth.loc["prunable", "faster_than_width"]
    assert not growth.loc["redundant", "faster_than_width"]
    assert math.isnan(growth.loc["non_redundant", "g"])
    assert growth.loc["units", "n_seeds"] == 3 and growth.loc["units", "widths"] == "16,32,64,128"


def test_growth_table_flags_series_that_are_not_doublings():
    summary = U.summary_table(fake_tables(widths=(16, 48)))
    growth = U.growth_table(summary)
    assert growth["g"].isna().all() and growth["flag"].str.contains("×2").all()


# --- figures from tables ---------------------------------------------------------------------


def test_figures_are_drawn_from_tables(tmp_path):
    from widthlab.plots import save
    from widthlab.plots import units as P

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5)).astype(np.float32)
    curves, tables = [], []
    for depth in (1, 2):
        for wd in (0.0, 5e-4):
            for seed in (0, 1):
                for width in (4, 8, 16):
                    model = random_mlp(sizes=(5, *[width] * depth), classes=3, seed=seed)
                    cols = {
                        "model": f"w{width}-d{depth}-wd{wd}-s{seed}",
                        "dataset": "digits",
                        "arch": "mlp",
                        "width": width,
                        "depth": depth,
                        "bottleneck": None,
                        "train_size": None,
                        "weight_decay": wd,
                        "seed": seed,
                    }
                    c = U.ablation_curves(model, x, orders=2, seed=seed)
                    red = U.redundancy_table(U.layer_activations(model, x))
                    tables.append(U.per_model_table(c, red, columns=cols))
                    curves.append(c.assign(**cols))
    summary = U.summary_table(tables)
    stage = {
        "curves": pd.concat(curves, ignore_index=True),
        "units": pd.concat(tables, ignore_index=True),
        "summary": summary,
        "growth": U.growth_table(summary),
    }
    for name, figure in P.FIGURES.items():
        path = save(figure(stage), str(tmp_path / f"{name}.png"))
        assert (tmp_path / f"{name}.png").stat().st_size > 5000, path
