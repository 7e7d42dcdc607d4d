"""Model and dataset sizes from a :class:`~widthlab.grid.ModelSpec` alone (no torch import).

The one source of a network's shape for everything that must know it before a model exists:
the pack planner (:mod:`widthlab.training.packs`), the cost model that sizes cluster jobs
(:mod:`widthlab.cost`), the bottleneck stage and the similarity stage's parameter matching.
:func:`layers` walks the architecture of :mod:`widthlab.models` layer by layer, so parameter
counts and multiply–accumulates per example are exact (the unit tests compare them with
``models.count_parameters`` / ``models.forward_macs`` of the built networks for every arch).

Dataset facts (input shape, classes, split sizes) are those
:func:`widthlab.data.splits.build_dataset` produces; ``synthetic`` takes its sizes from the
``data.synthetic`` config section.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from widthlab.grid import DataSpec, ModelSpec

# (channels, height, width), classes, training and test examples of each full dataset.
DATASETS: dict[str, tuple[tuple[int, int, int], int, int, int]] = {
    "digits": ((1, 8, 8), 10, 1437, 360),  # 1797 images, a stratified 80 / 20 split
    "mnist": ((1, 28, 28), 10, 60000, 10000),
    "fashion_mnist": ((1, 28, 28), 10, 60000, 10000),
    "cifar10": ((3, 32, 32), 10, 50000, 10000),
    "cifar100": ((3, 32, 32), 100, 50000, 10000),
    "synthetic": ((32, 1, 1), 10, 2000, 1000),  # data.synthetic defaults (dim, classes, n)
}


@dataclass(frozen=True)
class DataShape:
    """What a dataset variant looks like to a model: input shape, classes and split sizes."""

    in_shape: tuple[int, int, int]
    classes: int
    n_train: int
    n_test: int

    @property
    def input_elements(self) -> int:
        return math.prod(self.in_shape)


def data_shape(data: DataSpec, synthetic: Mapping[str, Any] | None = None) -> DataShape:
    """The shape of ``data``; a class subset keeps its share of each split (classes are
    balanced in every dataset here but digits, where the share is within a few examples)."""
    in_shape, classes, n_train, n_test = DATASETS[data.name]
    if data.name == "synthetic" and synthetic:
        in_shape = (int(synthetic.get("dim", in_shape[0])), 1, 1)
        classes = int(synthetic.get("classes", classes))
        n_train = int(synthetic.get("n_train", n_train))
        n_test = int(synthetic.get("n_test", n_test))
    if data.classes is not None:
        share = len(data.classes) / classes
        classes = len(data.classes)
        n_train, n_test = round(n_train * share), round(n_test * share)
    return DataShape(in_shape, classes, n_train, n_test)


def bottleneck_index(depth: int) -> int:
    """0-based hidden layer that holds the bottleneck (``depth // 2``, as arch ``bmlp``)."""
    return depth // 2


def hidden_widths(width: int, depth: int, k: int | None = None) -> list[int]:
    """``depth`` hidden widths: all ``width`` except layer ``depth // 2`` which has ``k``."""
    widths = [int(width)] * depth
    if k is not None:
        widths[bottleneck_index(depth)] = int(k)
    return widths


@dataclass(frozen=True)
class Layer:
    """One weight layer: a linear map (``kernel`` 1, one position) or a square convolution."""

    n_in: int  # input features or channels
    n_out: int  # output features or channels
    kernel: int = 1
    positions: int = 1  # output positions (height × width) per example
    bias: bool = True

    @property
    def parameters(self) -> int:
        return self.n_in * self.n_out * self.kernel**2 + (self.n_out if self.bias else 0)

    @property
    def macs(self) -> int:
        """Multiply–accumulates per example (as :func:`widthlab.models.forward_macs`)."""
        return self.positions * self.n_out * self.n_in * self.kernel**2

    @property
    def outputs(self) -> int:
        """Output elements per example."""
        return self.n_out * self.positions


@dataclass(frozen=True)
class Tap:
    """A hidden representation the activation stage stores: channels × positions."""

    name: str
    channels: int
    height: int = 1
    width: int = 1

    def stored(self, max_positions: int) -> int:
        """Elements per example once conv maps above ``max_positions`` positions are pooled
        to ``isqrt(max_positions)``² (:func:`widthlab.activations.pool_positions`)."""
        if self.height * self.width <= max_positions:
            return self.channels * self.height * self.width
        return self.channels * max(1, math.isqrt(max_positions)) ** 2


@dataclass(frozen=True)
class Architecture:
    """A network's weight layers, batch-norm channels and taps, in forward order."""

    layers: tuple[Layer, ...]
    norm_channels: tuple[int, ...]  # one entry per BatchNorm2d (weight and bias each)
    taps: tuple[Tap, ...]

    @property
    def parameters(self) -> int:
        return sum(layer.parameters for layer in self.layers) + 2 * sum(self.norm_channels)

    @property
    def hidden_weights(self) -> int:
        """Weights of the hidden layers only (no biases, norms or head): what decides how
        big a model is when models of one family are matched by size."""
        return sum(layer.n_in * layer.n_out * layer.kernel**2 for layer in self.layers[:-1])

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def activations(self) -> int:
        """Output elements of every weight layer per example (what a backward pass keeps,
        before the norms and ReLUs that double or triple it)."""
        return sum(layer.outputs for layer in self.layers)

    @property
    def normalised(self) -> bool:
        return bool(self.norm_channels)


def _conv_out(size: int, stride: int) -> int:
    """Spatial size after a 3×3 convolution with padding 1 (or a 1×1 without) and ``stride``."""
    return (size - 1) // stride + 1


def _mlp(spec: ModelSpec, shape: DataShape) -> Architecture:
    widths = hidden_widths(spec.width, spec.depth, spec.bottleneck)
    sizes = [shape.input_elements, *widths]
    layers = [Layer(a, b) for a, b in zip(sizes, sizes[1:], strict=False)]
    taps = [Tap(f"h{i + 1}", w) for i, w in enumerate(widths)]
    return Architecture((*layers, Layer(widths[-1], shape.classes)), (), tuple(taps))


def _cnn(spec: ModelSpec, shape: DataShape) -> Architecture:
    channels, height, width = shape.in_shape
    size = min(height, width)
    layers, taps = [], []
    for i in range(1, spec.depth + 1):
        layers.append(Layer(channels, spec.width, 3, height * width))
        if i % 2 == 0 and size > 4:
            height, width, size = height // 2, width // 2, size // 2
        taps.append(Tap(f"conv{i}", spec.width, height, width))
        channels = spec.width
    taps.append(Tap("pool", spec.width))
    return Architecture((*layers, Layer(spec.width, shape.classes)), (), tuple(taps))


def blocks_per_stage(arch: str, depth: int) -> int:
    """n of a ResNet (depth = 6n + 2) or WRN (depth = 6n + 4); a clear error otherwise."""
    offset, examples = {"resnet": (2, "8, 14, 20, 32, 38, 56, 110"), "wrn": (4, "10, 16, 28")}[arch]
    n, rest = divmod(depth - offset, 6)
    if n < 1 or rest:
        raise ValueError(
            f"{arch} depth must be 6n+{offset} with n ≥ 1 (e.g. {examples}), got depth {depth}"
        )
    return n


def _residual(spec: ModelSpec, shape: DataShape) -> Architecture:
    """CIFAR ResNet v1 (BN after every conv) or pre-activation WRN (BN before)."""
    resnet = spec.arch == "resnet"
    n = blocks_per_stage(spec.arch, spec.depth)
    in_channels, height, width = shape.in_shape
    channels = 16 * spec.width if resnet else 16
    layers = [Layer(in_channels, channels, 3, height * width, bias=False)]
    norms = [channels] if resnet else []
    taps = [Tap("stem", channels, height, width)]
    for stage in range(3):
        c_out = 16 * spec.width * 2**stage
        for block in range(n):
            stride = 2 if stage > 0 and block == 0 else 1
            height, width = _conv_out(height, stride), _conv_out(width, stride)
            positions = height * width
            layers += [
                Layer(channels, c_out, 3, positions, bias=False),
                Layer(c_out, c_out, 3, positions, bias=False),
            ]
            norms += [c_out, c_out] if resnet else [channels, c_out]
            if stride != 1 or channels != c_out:
                layers.append(Layer(channels, c_out, 1, positions, bias=False))
                norms += [c_out] if resnet else []
            channels = c_out
            taps.append(Tap(f"s{stage + 1}b{block + 1}", channels, height, width))
    norms += [] if resnet else [channels]
    taps.append(Tap("pool", channels))
    layers.append(Layer(channels, shape.classes))
    return Architecture(tuple(layers), tuple(norms), tuple(taps))


def architecture(spec: ModelSpec, shape: DataShape | None = None) -> Architecture:
    """The layers, norms and taps of ``spec``'s network on ``shape`` (default: its dataset's)."""
    shape = shape or data_shape(spec.data)
    if spec.arch in ("mlp", "bmlp"):
        return _mlp(spec, shape)
    if spec.arch == "cnn":
        return _cnn(spec, shape)
    if spec.arch in ("resnet", "wrn"):
        return _residual(spec, shape)
    raise ValueError(f"unknown arch {spec.arch!r}")


def parameters(spec: ModelSpec, shape: DataShape | None = None) -> int:
    """Trainable parameters of ``spec``'s network (weights, biases, batch-norm scales)."""
    return architecture(spec, shape).parameters


def forward_macs(spec: ModelSpec, shape: DataShape | None = None) -> int:
    """Multiply–accumulates of one forward pass of one example (convolutions and linears)."""
    return architecture(spec, shape).macs
