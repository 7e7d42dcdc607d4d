import numpy as np
import pytest
import torch

from widthlab.activations import extract, pool_positions
from widthlab.grid import DataSpec, ModelSpec
from widthlab.models import build_model


@pytest.fixture
def cnn():
    torch.manual_seed(0)
    return build_model(ModelSpec(DataSpec("digits"), "cnn", 4, 2), (1, 8, 8), 10).eval()


def test_every_tap_and_the_logits_match_one_forward_pass(cnn, tmp_path):
    x = np.random.default_rng(0).normal(size=(37, 1, 8, 8)).astype(np.float32)
    taps, logits = extract(cnn, x, batch_size=8, max_conv_positions=64)
    with torch.no_grad():
        expected_logits, expected = cnn(torch.from_numpy(x), return_taps=True)
    assert list(taps) == cnn.tap_names
    np.testing.assert_allclose(logits, expected_logits.numpy(), rtol=1e-5, atol=1e-6)
    for name, tap in taps.items():
        np.testing.assert_allclose(tap, expected[name].numpy(), rtol=1e-5, atol=1e-6)
    streamed, _ = extract(cnn, x, batch_size=8, max_conv_positions=64, workdir=str(tmp_path))
    assert isinstance(streamed["conv1"], np.memmap)  # large probe sets stream through disk
    for name in taps:
        np.testing.assert_array_equal(streamed[name], taps[name])


def test_large_conv_maps_are_average_pooled_to_the_position_budget(cnn):
    x = np.random.default_rng(1).normal(size=(5, 1, 8, 8)).astype(np.float32)
    taps, _ = extract(cnn, x, max_conv_positions=16, dtype="float16")
    assert taps["conv1"].shape == (5, 4, 4, 4) and taps["conv1"].dtype == np.float16
    maps = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    pooled = pool_positions(maps, 16)  # 8×8 → 4×4: each output is the mean of a 2×2 patch
    assert pooled[0, 0, 0, 0] == maps[0, 0, :2, :2].mean()
    assert pool_positions(maps, 64) is maps
