import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from widthlab.joint import claims
from widthlab.joint import summary as joint
from widthlab.joint.measure import kept_subsets, prune_vs_clone_table, subset_measurements
from widthlab.joint.summary import prune_vs_clone_summary
from widthlab.models import MLP
from widthlab.stats import rank_correlation as spearman

SIGNALS, COPIES, INPUTS = 3, 4, 6


def clone_network() -> MLP:
    """One hidden layer of COPIES exact copies of SIGNALS ReLU units (unit = copy·SIGNALS + j);
    the head weighs every copy of signal j equally, so any kept set holding the same number of
    copies of every signal only rescales the logits."""
    torch.manual_seed(0)
    net = MLP((1, 1, INPUTS), SIGNALS, [SIGNALS * COPIES])
    layer = net.blocks["h1"][1]
    a = torch.randn(SIGNALS, INPUTS)
    v = torch.tensor([[2.0, -1.0, 0.5], [-1.0, 1.5, 1.0], [0.3, 1.0, -2.0]])
    with torch.no_grad():
        layer.weight.copy_(a.repeat(COPIES, 1))
        layer.bias.zero_()
        net.head.weight.copy_(v.repeat(1, COPIES) / COPIES)
        net.head.bias.zero_()
    return net.eval()


def inputs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 1, 1, INPUTS)).astype(np.float32)


def test_a_balanced_set_of_clones_reconstructs_the_layer_and_keeps_every_prediction():
    net = clone_network()
    balanced = [0, 1, 2]  # one copy of each signal
    two_copies = [0, 4, 8, 3, 7, 11]  # two copies of each signal (units j, j+3·c …)
    one_signal = [0, 3, 6]  # three copies of signal 0 only
    chunks = np.array([balanced, one_signal])
    [(agreement, r2)] = subset_measurements(net, inputs(400, 1), inputs(300, 2), [chunks])
    assert r2[0] == pytest.approx(1.0, abs=1e-6)
    assert agreement[0] == 1.0
    assert r2[1] < 0.9 and agreement[1] < 0.9
    [(agreement, r2)] = subset_measurements(net, inputs(400, 1), inputs(300, 2), [[two_copies]])
    assert r2[0] == pytest.approx(1.0, abs=1e-6) and agreement[0] == 1.0


def test_the_table_has_one_row_per_subset_and_skips_fractions_that_keep_nothing_or_all():
    assert [f for f, _ in kept_subsets(12, [0.01, 0.25, 0.5, 1.0], 5)] == [0.25, 0.5]
    table = prune_vs_clone_table(clone_network(), inputs(200, 3), inputs(150, 4), [0.25, 0.5], 5)
    assert len(table) == 10
    assert set(table["kept_units"]) == {3, 6}
    assert table["agreement"].between(0, 1).all() and (table["r2"] <= 1 + 1e-9).all()


def test_rho_is_taken_within_a_fraction_not_over_the_pooled_subsets():
    table = pd.DataFrame(
        {
            "model": "m",
            "kept_fraction": [0.25] * 3 + [0.5] * 3,
            "agreement": [0.1, 0.2, 0.3, 0.9, 0.8, 0.7],
            "r2": [0.5, 0.6, 0.7, 0.1, 0.2, 0.3],
        }
    )
    summary = prune_vs_clone_summary(table)
    by_fraction = summary.set_index("kept_fraction")["rho"]
    assert by_fraction[0.25] == pytest.approx(1.0) and by_fraction[0.5] == pytest.approx(-1.0)
    assert summary[summary["kept_fraction"].isna()]["rho"].item() == pytest.approx(0.0)
    pooled = stats.spearmanr(table["agreement"], table["r2"]).statistic
    assert pooled != pytest.approx(0.0)  # the pooled ρ would have said something else


def test_spearman_is_undefined_for_constant_or_tiny_samples():
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert np.isnan(spearman([1, 2], [2, 1]))
    assert spearman([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8)


def model_rows(model, depth, **values):
    return {
        "model": model,
        "width": 8,
        "depth": depth,
        "train_size": None,
        "weight_decay": 0.0,
        "seed": 0,
        **values,
    }


def test_layers_in_any_block_are_marked_and_contrasted_with_the_rest():
    blocks = pd.DataFrame(
        [
            {"model": "a", "estimator": "debiased", "start": 1, "end": 2},
            {"model": "a", "estimator": "linear", "start": 0, "end": 3},  # another estimator
        ]
    )
    layers = pd.DataFrame(
        [
            model_rows("a", 4, layer=i, name=f"h{i + 1}", pc1_share=s)
            for i, s in enumerate([0.1, 0.6, 0.8, 0.3])
        ]
    )
    units = pd.DataFrame(
        [
            {
                "model": "a",
                "layer": f"h{i + 1}",
                "scope": "layer",
                "prunability": p,
                "compressibility": 0.5,
            }
            for i, p in enumerate([0.2, 0.5, 0.7, 0.4])
        ]
        + [
            {
                "model": "a",
                "layer": "all",
                "scope": "network",
                "prunability": 0.3,
                "compressibility": 0.5,
            }
        ]
    )
    table = joint.layer_table(blocks, layers, units, "debiased")
    assert table["in_block"].tolist() == [False, True, True, False]
    contrast = joint.layer_contrasts(table).iloc[0]
    # raw means inside and outside; with a single model every layer is its position's mean, so
    # the position-matched contrast is exactly zero
    assert contrast["pc1_share_in"] == pytest.approx((0.6 + 0.8) / 2)
    assert contrast["prunability_out"] == pytest.approx((0.2 + 0.4) / 2)
    assert contrast["pc1_share_diff"] == pytest.approx(0.0)
    assert contrast["layers_in_block"] == 2 and contrast["layers_outside"] == 2


def test_models_without_layers_outside_a_block_have_no_contrast():
    table = pd.DataFrame(
        [
            model_rows(
                "b", 3, layer=0, in_block=True, pc1_share=0.5, prunability=0.5, compressibility=0.5
            )
        ]
    )
    assert joint.layer_contrasts(table).empty


def position_table(bump: float, late: float = 0.3) -> pd.DataFrame:
    """Two depth-4 models: prunability rises with the layer index by ``late`` per layer in both
    (blocks sit late, and late layers are more prunable anyway); model a has a block at layers
    2-3 whose layers are ``bump`` more prunable than b's layers at the same place."""
    rows = []
    for model, block in (("a", {2, 3}), ("b", set())):
        for layer in range(4):
            value = 0.1 + late * layer + (bump if layer in block else 0.0)
            rows.append(
                model_rows(model, 4, layer=layer, in_block=layer in block, prunability=value)
                | {"pc1_share": 0.5, "compressibility": 0.5}
            )
    return pd.DataFrame(rows)


def test_block_layers_are_compared_with_layers_at_the_same_position():
    # no block effect: the raw in − out difference is the position trend (2.5 − 0.5 layers ×
    # 0.3 = 0.6), the position-matched contrast is zero
    contrast = joint.layer_contrasts(position_table(bump=0.0)).iloc[0]
    assert contrast["prunability_in"] - contrast["prunability_out"] == pytest.approx(0.6)
    assert contrast["prunability_diff"] == pytest.approx(0.0, abs=1e-12)
    # a real block effect of 0.1: centred a = (a − b)/2 at each position → 0.05 in, 0 out
    contrast = joint.layer_contrasts(position_table(bump=0.1)).iloc[0]
    assert contrast["prunability_diff"] == pytest.approx(0.05)


def prune_clone_subsets(rho_sign_per_seed: dict[int, list[int]]) -> pd.DataFrame:
    """Kept-subset tables whose within-fraction ρ is exactly ±1 per model."""
    rows = []
    for seed, signs in rho_sign_per_seed.items():
        for m, sign in enumerate(signs):
            for i in range(4):
                rows.append(
                    {
                        "model": f"m{m}-s{seed}",
                        "seed": seed,
                        "kept_fraction": 0.5,
                        "agreement": 0.1 * i,
                        "r2": 0.1 * i * sign,
                    }
                )
    return pd.DataFrame(rows)


def test_the_prune_clone_row_averages_a_seeds_models_and_needs_three_seeds():
    row = claims.prune_clone_row(prune_clone_subsets({0: [1, 1], 1: [1, -1], 2: [1, 1]}))
    # seed means 1, 0, 1: mean 2/3, t-interval with 2 degrees of freedom
    values = np.array([1.0, 0.0, 1.0])
    half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3)
    assert row["n"] == 3 and row["value"] == pytest.approx(2 / 3)
    assert row["ci_low"] == pytest.approx(2 / 3 - half) and row["holds"] == "inconclusive"
    assert claims.prune_clone_row(prune_clone_subsets({0: [1], 1: [1], 2: [1], 3: [1]}))[
        "ci_low"
    ] == pytest.approx(1.0)
    two = claims.prune_clone_row(prune_clone_subsets({0: [1], 1: [1]}))
    assert two["holds"] == "n/a" and "too few seeds" in two["reason"]


def transfer_clone_models(within: float, seeds=range(5)) -> pd.DataFrame:
    """Width raises both accuracy and clones; within a width, accuracy = base + ``within`` ×
    (the seed's clone rank) plus a seed-specific wiggle unrelated to clones when within = 0."""
    rng = np.random.default_rng(3)
    rows = []
    for width in (16, 32, 64, 128):
        clones = rng.permutation(len(seeds))
        noise = rng.permutation(len(seeds))
        for seed, c, e in zip(seeds, clones, noise, strict=True):
            rows.append(
                {
                    "architecture": f"w{width}",
                    "model": f"w{width}-s{seed}",
                    "width": width,
                    "seed": seed,
                    "n_clones": width // 8 + c,
                    "trained_acc": 0.8 + width / 1000 + within * c + (0.0 if within else 1e-3 * e),
                }
            )
    return pd.DataFrame(rows)


def test_transfer_and_clones_are_related_within_an_architecture_not_across_widths():
    unrelated = transfer_clone_models(within=0.0)
    # across widths the two move together (width drives both) …
    assert spearman(unrelated["trained_acc"], unrelated["n_clones"]) > 0.6
    row = claims.transfer_clones_row(unrelated)
    # … but that is not the test: within a width the ranks are unrelated by construction
    assert row["holds"] != "yes" and row["n"] == 5
    assert row["ci_low"] < 0 < row["ci_high"] or row["holds"] == "contradicted"
    # clone rank = accuracy rank inside every width: ρ = 1 in the data and in every resample
    related = claims.transfer_clones_row(transfer_clone_models(within=1e-3))
    assert related["value"] == pytest.approx(1.0) and related["ci_low"] == pytest.approx(1.0)
    assert related["holds"] == "yes"


def test_joint_rows_without_tables_say_why():
    table = claims.headline(None, None, None)
    assert len(table) == 4 and (table["holds"] == "n/a").all()
    assert table["reason"].str.len().gt(0).all() and table["ci_low"].isna().all()
