import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from widthlab import headline, joint
from widthlab.joint import (
    kept_subsets,
    prune_vs_clone_summary,
    prune_vs_clone_table,
    spearman,
    subset_measurements,
)
from widthlab.models import MLP

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
    assert contrast["pc1_share_diff"] == pytest.approx((0.6 + 0.8) / 2 - (0.1 + 0.3) / 2)
    assert contrast["prunability_diff"] == pytest.approx(0.6 - 0.3)
    assert contrast["layers_in_block"] == 2 and contrast["layers_outside"] == 2


def test_models_without_layers_outside_a_block_have_no_contrast():
    table = pd.DataFrame(
        [model_rows("b", 3, in_block=True, pc1_share=0.5, prunability=0.5, compressibility=0.5)]
    )
    assert joint.layer_contrasts(table).empty


@pytest.mark.parametrize(
    ("values", "verdict"),
    [([0.5, 0.6, 0.7], "yes"), ([0.9, -0.5], "partly"), ([-0.2, -0.3], "no"), ([0.4], "n/a")],
)
def test_joint_verdicts_follow_the_t_interval(values, verdict):
    assert headline.verdict(values, 0.0) == verdict
