"""widthlab.sizes against the built torch networks (the independent oracle) for every arch."""

import math

import pytest
import torch
from torch import nn

from widthlab import models, sizes
from widthlab.grid import DataSpec, ModelSpec

SHAPES = {
    "digits": (1, 8, 8),
    "fashion_mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "synthetic": (32, 1, 1),
}
CASES = [
    ("mlp", 16, 1, None, ("digits", "cifar10", "synthetic")),
    ("mlp", 64, 4, None, ("fashion_mnist", "cifar100")),
    ("bmlp", 128, 3, 8, ("digits", "cifar10")),
    ("bmlp", 32, 1, 2, ("fashion_mnist",)),
    ("cnn", 8, 4, None, ("digits", "fashion_mnist", "cifar10", "synthetic")),
    ("cnn", 4, 5, None, ("cifar100",)),
    ("resnet", 1, 8, None, ("cifar10", "cifar100", "fashion_mnist")),
    ("resnet", 2, 14, None, ("cifar10", "digits")),
    ("wrn", 1, 10, None, ("cifar10", "fashion_mnist")),
    ("wrn", 2, 16, None, ("cifar100",)),
]


def built(spec: ModelSpec) -> models.TappedModel:
    shape = sizes.data_shape(spec.data)
    torch.manual_seed(0)
    return models.build_model(spec, shape.in_shape, shape.classes)


def conv_linear_outputs(model: nn.Module, in_shape) -> int:
    """Output elements of every conv / linear layer for one example, by forward hooks."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        total += output.numel()

    hooks = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *in_shape))
    for hook in hooks:
        hook.remove()
    return total


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec(DataSpec(data), arch, width, depth, bottleneck=k)
        for arch, width, depth, k, datasets in CASES
        for data in datasets
    ],
    ids=lambda spec: spec.id,
)
def test_sizes_equal_the_built_network(spec):
    model = built(spec)
    shape = sizes.data_shape(spec.data)
    arch = sizes.architecture(spec)
    assert shape.in_shape == SHAPES[spec.data.name]
    assert arch.parameters == models.count_parameters(model)
    assert arch.macs == models.forward_macs(model, shape.in_shape)
    assert sizes.parameters(spec) == arch.parameters
    assert sizes.forward_macs(spec) == arch.macs
    assert arch.activations == conv_linear_outputs(model, shape.in_shape)
    assert len(arch.layers) == sum(isinstance(m, nn.Conv2d | nn.Linear) for m in model.modules())
    assert len(arch.norm_channels) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        _, taps = model.eval()(torch.zeros(2, *shape.in_shape), return_taps=True)
    assert [t.name for t in arch.taps] == list(taps)
    for tap in arch.taps:
        assert (tap.channels, tap.height, tap.width) == tuple(taps[tap.name].shape[1:]) + (1,) * (
            4 - taps[tap.name].dim()
        ), tap.name


def test_stored_taps_match_the_activation_stages_pooling():
    from widthlab.activations import pool_positions

    spec = ModelSpec(DataSpec("cifar10"), "resnet", 1, 8)
    model = built(spec)
    with torch.no_grad():
        _, taps = model.eval()(torch.zeros(1, 3, 32, 32), return_taps=True)
    for tap in sizes.architecture(spec).taps:
        for limit in (1, 16, 64, 1024):
            assert tap.stored(limit) == math.prod(pool_positions(taps[tap.name], limit).shape[1:])


def test_hidden_widths_put_the_bottleneck_in_the_middle_layer():
    assert sizes.hidden_widths(64, 3, 2) == [64, 2, 64]
    assert sizes.hidden_widths(64, 1, 2) == [2]
    assert sizes.hidden_widths(64, 4) == [64] * 4
    assert sizes.bottleneck_index(4) == 2


def test_class_subsets_and_synthetic_settings_change_the_shape():
    subset = sizes.data_shape(DataSpec("cifar100", classes=tuple(range(10))))
    assert (subset.classes, subset.n_train, subset.n_test) == (10, 5000, 1000)
    synthetic = sizes.data_shape(DataSpec("synthetic"), {"dim": 8, "classes": 3, "n_train": 50})
    assert (synthetic.in_shape, synthetic.classes, synthetic.n_train) == ((8, 1, 1), 3, 50)


def test_hand_counted_mlp():
    # 64 inputs → 16 → 10: (64·16 + 16) + (16·10 + 10) parameters, 64·16 + 16·10 MACs
    spec = ModelSpec(DataSpec("digits"), "mlp", 16, 1)
    assert sizes.parameters(spec) == 64 * 16 + 16 + 16 * 10 + 10
    assert sizes.forward_macs(spec) == 64 * 16 + 16 * 10
    assert sizes.architecture(spec).hidden_weights == 64 * 16


def test_bad_residual_depth_is_named():
    with pytest.raises(ValueError, match="resnet depth must be 6n\\+2"):
        sizes.parameters(ModelSpec(DataSpec("cifar10"), "resnet", 1, 21))
