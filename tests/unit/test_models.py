"""Models: shapes and taps of every architecture, masks, counting, save / load."""

import re

import pytest
import torch
from torch import nn

from widthlab.grid import DataSpec, ModelSpec
from widthlab.io import ArtifactError
from widthlab.model_files import load_model, save_model
from widthlab.models import (
    NTKLinear,
    TappedModel,
    build_model,
    count_parameters,
    forward_flops,
    forward_macs,
)

DIGITS = DataSpec("digits")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spec(arch="mlp", width=8, depth=2, **kwargs) -> ModelSpec:
    return ModelSpec(DIGITS, arch, width, depth, **kwargs)


def run(model: TappedModel, in_shape, batch=3):
    torch.manual_seed(1)
    x = torch.randn(batch, *in_shape)
    model.eval()
    with torch.no_grad():
        logits, taps = model(x, return_taps=True)
    return x, logits, taps


CASES = [
    # (spec, in_shape, {tap: shape without batch})
    (
        spec("mlp", 16, 3),
        (1, 8, 8),
        {"h1": (16,), "h2": (16,), "h3": (16,)},
    ),
    (
        spec("bmlp", 16, 3, bottleneck=4),
        (1, 8, 8),
        {"h1": (16,), "h2": (4,), "h3": (16,)},
    ),
    (spec("bmlp", 16, 2, bottleneck=4), (1, 8, 8), {"h1": (16,), "h2": (4,)}),
    (spec("bmlp", 16, 1, bottleneck=4), (1, 8, 8), {"h1": (4,)}),
    (
        spec("cnn", 4, 3),
        (1, 8, 8),
        {"conv1": (4, 8, 8), "conv2": (4, 4, 4), "conv3": (4, 4, 4), "pool": (4,)},
    ),
    (
        spec("cnn", 4, 6),
        (1, 28, 28),
        {
            "conv1": (4, 28, 28),
            "conv2": (4, 14, 14),
            "conv3": (4, 14, 14),
            "conv4": (4, 7, 7),
            "conv5": (4, 7, 7),
            "conv6": (4, 3, 3),
            "pool": (4,),
        },
    ),
    (
        spec("resnet", 1, 8),
        (3, 8, 8),
        {
            "stem": (16, 8, 8),
            "s1b1": (16, 8, 8),
            "s2b1": (32, 4, 4),
            "s3b1": (64, 2, 2),
            "pool": (64,),
        },
    ),
    (
        spec("wrn", 1, 10),
        (3, 8, 8),
        {
            "stem": (16, 8, 8),
            "s1b1": (16, 8, 8),
            "s2b1": (32, 4, 4),
            "s3b1": (64, 2, 2),
            "pool": (64,),
        },
    ),
]


@pytest.mark.parametrize(
    ("model_spec", "in_shape", "expected"),
    CASES,
    ids=[f"{s.arch}-w{s.width}-d{s.depth}-{shape[1]}px" for s, shape, _ in CASES],
)
def test_taps_and_shapes(model_spec, in_shape, expected):
    model = build_model(model_spec, in_shape, num_classes=10)
    assert isinstance(model, TappedModel)
    assert model.tap_names == list(expected)
    x, logits, taps = run(model, in_shape)
    assert logits.shape == (3, 10)
    assert list(taps) == model.tap_names
    assert {name: tuple(t.shape[1:]) for name, t in taps.items()} == expected
    # the last tap is the input of the head
    assert isinstance(model.head, nn.Linear)
    assert torch.equal(model.head(taps[model.tap_names[-1]]), logits)
    with torch.no_grad():
        assert torch.equal(model(x), logits)


def test_resnet20_and_wrn16_stages():
    resnet = build_model(spec("resnet", 1, 20), (3, 8, 8), 10)
    blocks = [f"s{s}b{b}" for s in (1, 2, 3) for b in (1, 2, 3)]
    assert resnet.tap_names == ["stem", *blocks, "pool"]
    # 1×1 projection shortcuts exactly where the shape changes
    projections = [n for n in blocks if not isinstance(resnet.blocks[n].shortcut, nn.Identity)]
    assert projections == ["s2b1", "s3b1"]
    _, logits, taps = run(resnet, (3, 8, 8), batch=2)
    assert taps["s3b3"].shape == (2, 64, 2, 2)

    wrn = build_model(spec("wrn", 2, 16), (3, 8, 8), 5)
    assert wrn.tap_names == ["stem", *[f"s{s}b{b}" for s in (1, 2, 3) for b in (1, 2)], "pool"]
    _, logits, taps = run(wrn, (3, 8, 8), batch=2)
    assert logits.shape == (2, 5)
    assert taps["stem"].shape[1] == 16  # the WRN stem is not widened
    assert [taps[n].shape[1] for n in ("s1b1", "s2b2", "s3b2", "pool")] == [32, 64, 128, 128]
    assert torch.equal(wrn.head(taps["pool"]), logits)


@pytest.mark.parametrize(
    ("arch", "depth", "message"),
    [("resnet", 9, "6n+2"), ("resnet", 2, "6n+2"), ("wrn", 12, "6n+4"), ("wrn", 4, "6n+4")],
)
def test_resnet_depth_validated(arch, depth, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        build_model(spec(arch, 1, depth), (3, 8, 8), 10)
    assert f"got depth {depth}" in str(error.value)


def test_wrn28_has_four_blocks_per_stage():
    model = build_model(spec("wrn", 1, 28), (3, 8, 8), 10)
    assert len(model.tap_names) == 1 + 12 + 1


def test_zero_mask_makes_mlp_output_independent_of_input():
    model = build_model(spec("mlp", 8, 3), (1, 8, 8), 10).eval()
    x1, x2 = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    masks = {"h2": torch.zeros(8)}
    with torch.no_grad():
        out1, taps = model(x1, return_taps=True, masks=masks)
        out2 = model(x2, masks=masks)
        assert not torch.equal(model(x1), model(x2))
    assert torch.equal(out1, out2)
    assert torch.count_nonzero(taps["h2"]) == 0


def test_masks_zero_single_units_and_channels():
    model = build_model(spec("mlp", 8, 2), (1, 8, 8), 10).eval()
    x = torch.randn(5, 1, 8, 8)
    mask = torch.ones(8)
    mask[3] = 0
    per_example = torch.ones(5, 8)
    per_example[0, 1] = 0
    with torch.no_grad():
        _, plain = model(x, return_taps=True)
        _, masked = model(x, return_taps=True, masks={"h1": mask})
        _, rowwise = model(x, return_taps=True, masks={"h1": per_example})
    assert torch.count_nonzero(masked["h1"][:, 3]) == 0
    keep = [i for i in range(8) if i != 3]
    assert torch.equal(masked["h1"][:, keep], plain["h1"][:, keep])
    assert rowwise["h1"][0, 1] == 0 and torch.equal(rowwise["h1"][1:], plain["h1"][1:])

    cnn = build_model(spec("cnn", 4, 2), (1, 8, 8), 10).eval()
    channel = torch.tensor([1.0, 1.0, 0.0, 1.0])
    with torch.no_grad():
        _, taps = cnn(x, return_taps=True, masks={"conv1": channel, "pool": torch.ones(5, 4)})
    assert torch.count_nonzero(taps["conv1"][:, 2]) == 0
    assert torch.count_nonzero(taps["conv1"][:, 0]) > 0


def test_bad_masks_are_named():
    model = build_model(spec("mlp", 8, 2), (1, 8, 8), 10)
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(KeyError, match="h7"):
        model(x, masks={"h7": torch.ones(8)})
    with pytest.raises(ValueError, match="'h1'"):
        model(x, masks={"h1": torch.ones(9)})


def test_ntk_parameterisation():
    model_spec = spec("bmlp", 512, 3, bottleneck=4)
    model = build_model(model_spec, (1, 8, 8), 10, parameterization="ntk")
    assert all(isinstance(m, NTKLinear) for m in model.modules() if isinstance(m, nn.Linear))
    assert isinstance(model.head, nn.Linear)
    # N(0, 1) weights; the 1/√fan_in lives in the forward pass, so outputs stay O(1)
    assert abs(model.blocks["h1"][1].weight.std().item() - 1) < 0.05
    _, logits, taps = run(model, (1, 8, 8), batch=64)
    assert 0.1 < logits.std().item() < 10
    assert taps["h2"].shape == (64, 4)
    assert torch.allclose(model.head(taps["h3"]), logits)
    with pytest.raises(ValueError, match="parameterization"):
        build_model(model_spec, (1, 8, 8), 10, parameterization="mup")
    with pytest.raises(TypeError, match="parameterization"):
        build_model(spec("cnn", 4, 2), (1, 8, 8), 10, parameterization="ntk")


def test_same_seed_same_weights():
    def weights(seed):
        torch.manual_seed(seed)
        return build_model(spec("resnet", 1, 8), (3, 8, 8), 10).state_dict()

    a, b, c = weights(0), weights(0), weights(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_parameter_and_flop_counts():
    model = build_model(spec("mlp", 32, 2), (1, 8, 8), 10)
    macs = 64 * 32 + 32 * 32 + 32 * 10
    assert count_parameters(model) == macs + 32 + 32 + 10
    assert forward_macs(model, (1, 8, 8)) == macs
    assert forward_flops(model, (1, 8, 8)) == 2 * macs

    cnn = build_model(spec("cnn", 4, 2), (1, 8, 8), 10)
    cnn.train()
    assert forward_macs(cnn, (1, 8, 8)) == 8 * 8 * 4 * 9 + 8 * 8 * 4 * 4 * 9 + 4 * 10
    assert cnn.training  # counting leaves the mode alone

    small = forward_flops(build_model(spec("resnet", 1, 8), (3, 32, 32), 10), (3, 32, 32))
    wide = forward_flops(build_model(spec("resnet", 2, 8), (3, 32, 32), 10), (3, 32, 32))
    assert 3.5 < wide / small < 4.1  # conv cost grows with width²


@pytest.mark.parametrize(
    ("model_spec", "kwargs"),
    [
        (spec("mlp", 8, 2, weight_decay=5e-4, seed=3), {}),
        (spec("bmlp", 16, 3, bottleneck=2), {"parameterization": "ntk", "sigma_b2": 0.1}),
        (spec("resnet", 1, 8), {}),
    ],
)
def test_save_load_round_trip(tmp_path, model_spec, kwargs):
    in_shape = (3, 8, 8) if model_spec.arch == "resnet" else (1, 8, 8)
    model = build_model(model_spec, in_shape, 7, **kwargs)
    # non-trivial BN running statistics
    model.train()
    model(torch.randn(8, *in_shape))
    path = tmp_path / "m" / "model.pt"
    save_model(model, model_spec, path, extra={"note": "x"})
    loaded, loaded_spec = load_model(path)
    assert loaded_spec == model_spec
    assert not loaded.training
    assert loaded.tap_names == model.tap_names
    assert loaded.arch_kwargs == model.arch_kwargs
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[k], loaded_state[k]) for k in state)
    x = torch.randn(4, *in_shape)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
    assert torch.load(path, weights_only=True)["extra"] == {"note": "x"}


def test_load_missing_or_corrupt_names_the_file(tmp_path):
    missing = tmp_path / "nothing" / "model.pt"
    with pytest.raises(ArtifactError, match=str(missing)):
        load_model(missing)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ArtifactError, match=str(garbage)):
        load_model(garbage)

    model_spec = spec("mlp", 8, 2)
    good = tmp_path / "good.pt"
    save_model(build_model(model_spec, (1, 8, 8), 10), model_spec, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ArtifactError, match=str(truncated)):
        load_model(truncated)

    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ArtifactError, match=f"{foreign}.*lacks"):
        load_model(foreign)


def test_dropout_acts_in_training_only_and_drops_whole_channels():
    torch.manual_seed(0)
    mlp = build_model(ModelSpec(DataSpec("digits"), "mlp", 64, 2, dropout=0.5), (1, 8, 8), 10)
    x = torch.randn(32, 1, 8, 8)
    mlp.eval()
    assert torch.equal(mlp(x), mlp(x))
    mlp.train()
    _, taps = mlp(x, return_taps=True)
    assert 0.3 < (taps["h1"] == 0).float().mean() < 0.8  # ReLU zeros plus dropped units
    cnn = build_model(ModelSpec(DataSpec("digits"), "cnn", 16, 2, dropout=0.5), (1, 8, 8), 10)
    cnn.train()
    _, taps = cnn(x, return_taps=True)
    per_channel = taps["conv1"].flatten(2).abs().amax(dim=2)  # (batch, channels)
    assert (per_channel == 0).any()  # whole channels are zero, not scattered positions


@pytest.mark.parametrize("scheme", ["xavier", "orthogonal"])
def test_init_schemes_draw_the_documented_weights(scheme):
    torch.manual_seed(0)
    spec = ModelSpec(DataSpec("digits"), "mlp", 256, 2, init=scheme)
    w = build_model(spec, (1, 8, 8), 10).blocks["h2"][0].weight.detach().double()
    if scheme == "xavier":  # Glorot normal: variance 2 / (fan_in + fan_out)
        assert w.var().item() == pytest.approx(2 / 512, rel=0.05)
    else:  # orthogonal rows scaled by the ReLU gain √2
        assert torch.allclose(w @ w.T, 2 * torch.eye(256, dtype=w.dtype), atol=1e-5)
