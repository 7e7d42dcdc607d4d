"""The networks of the grid, each exposing its hidden layers ("taps") in forward order.

Every model is a :class:`TappedModel`: an ordered ``blocks`` dict (one block per tap) followed
by ``head``, an :class:`torch.nn.Linear` whose input is the last tap. So any analysis can read
every hidden representation with ``model(x, return_taps=True)``, zero units with ``masks=``, and
use ``model.head`` on the last tap (Doimo's chunks, Gilboa's last-layer transfer).

Architectures (``ModelSpec.arch``; ``width`` and ``depth`` mean):

``mlp``
    flatten, then ``depth`` hidden ``Linear + ReLU`` layers of ``width`` units; taps ``h1`` …
    ``h{depth}`` (post-ReLU).
``bmlp``
    the same, except hidden layer ``depth // 2`` (0-based, i.e. the middle one for odd depths,
    the only one for depth 1; as :func:`widthlab.sizes.bottleneck_index`) has
    ``spec.bottleneck`` units. ``parameterization="ntk"`` (a keyword of :func:`build_model`,
    also accepted by ``mlp``) uses ``h = σ_w W a / √fan_in + σ_b b`` with N(0, 1) weights
    (σ_w² = 2, σ_b² = 0 by default); :func:`ntk_mlp` builds one from a seeded generator (the
    bottleneck stage's networks).
``cnn``
    ``depth`` layers ``Conv3×3 + ReLU`` with ``width`` channels, a 2×2 max-pool after every
    second layer while the map is larger than 4×4, global average pooling; taps ``conv1`` …
    ``conv{depth}`` (after the pool where there is one) and ``pool`` (the pooled vector).
``resnet``
    CIFAR ResNet v1 (He et al. 2016, as in Nguyen et al. 2021): depth = 6n + 2; a 3×3 stem with
    16k channels + BN + ReLU, three stages of n basic blocks with 16k / 32k / 64k channels
    (stride 2 at the start of stages 2 and 3), 1×1 conv + BN projection shortcuts where the
    shape changes, global average pooling; k = width. Taps ``stem``, ``s{stage}b{block}``
    (every block output, after its ReLU) and ``pool``.
``wrn``
    pre-activation Wide ResNet (Zagoruyko & Komodakis 2016, as in Doimo et al. 2022):
    depth = 6n + 4 (WRN-28-k: n = 4); a 3×3 stem with 16 channels, three stages of n
    pre-activation blocks with 16k / 32k / 64k channels, 1×1 projection shortcuts on the
    pre-activated input, a final BN + ReLU and global average pooling; no dropout. Taps
    ``stem``, ``s{stage}b{block}`` and ``pool`` (64k units: Doimo's last hidden layer).

Initialisation: He-normal for hidden linear and conv layers (fan-out for the ResNets, as
torchvision), zero biases, BN weight 1 / bias 0, PyTorch's default for ``head``. Seed with
``torch.manual_seed`` before :func:`build_model` (files: :mod:`widthlab.model_files`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from widthlab.grid import ModelSpec
from widthlab.sizes import blocks_per_stage, hidden_widths

# --------------------------------------------------------------------------------------------
# The common interface
# --------------------------------------------------------------------------------------------


def apply_mask(h: torch.Tensor, mask: torch.Tensor, name: str = "tap") -> torch.Tensor:
    """``h`` (B × units, or B × C × H × W) times ``mask`` over units / channels.

    ``mask`` has shape ``(units,)`` (the same for every example) or ``(batch, units)``.
    """
    mask = torch.as_tensor(mask, device=h.device, dtype=h.dtype)
    units = h.shape[1]
    if mask.dim() == 1 and mask.shape[0] == units:
        shape = (1, units)
    elif mask.dim() == 2 and tuple(mask.shape) == (h.shape[0], units):
        shape = (h.shape[0], units)
    else:
        raise ValueError(
            f"mask for tap {name!r} has shape {tuple(mask.shape)}; expected ({units},) or "
            f"({h.shape[0]}, {units}) for an output of shape {tuple(h.shape)}"
        )
    return h * mask.reshape(shape + (1,) * (h.dim() - 2))


class TappedModel(nn.Module):
    """A network as an ordered dict of blocks, one per tap, and a linear ``head``.

    Subclasses fill ``self.blocks`` (an :class:`~torch.nn.ModuleDict`, tap name → module) and
    ``self.head``; the forward pass is shared.
    """

    arch = "?"

    def __init__(self, in_shape, num_classes: int, arch_kwargs: Mapping[str, Any] | None = None):
        super().__init__()
        self.in_shape = tuple(int(n) for n in in_shape)
        if len(self.in_shape) != 3:
            raise ValueError(f"in_shape must be (C, H, W), got {in_shape}")
        self.num_classes = int(num_classes)
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.arch_kwargs = dict(arch_kwargs or {})
        self.blocks = nn.ModuleDict()
        self.head: nn.Linear

    @property
    def tap_names(self) -> list[str]:
        """Hidden representations in forward order; the last one is the input of ``head``."""
        return list(self.blocks)

    @property
    def is_convolutional(self) -> bool:
        return any(isinstance(m, nn.Conv2d) for m in self.modules())

    def forward(
        self,
        x: torch.Tensor,
        return_taps: bool = False,
        masks: Mapping[str, torch.Tensor] | None = None,
    ):
        """Logits, or ``(logits, {tap: tensor})``; ``masks`` multiply tap outputs (units/channels).

        Returned taps are the (masked) values that flow on to the next block.
        """
        if masks:
            unknown = sorted(set(masks) - set(self.blocks))
            if unknown:
                raise KeyError(f"masks name unknown taps {unknown}; taps are {self.tap_names}")
        taps = {} if return_taps else None
        h = x
        for name, block in self.blocks.items():
            h = block(h)
            if masks and name in masks:
                h = apply_mask(h, masks[name], name)
            if taps is not None:
                taps[name] = h
        logits = self.head(h)
        return (logits, taps) if return_taps else logits

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, num_classes={self.num_classes}"


def _dropout(p: float, channels: bool = False) -> list[nn.Module]:
    """Dropout after a ReLU (whole channels in conv layers), or nothing when ``p`` is 0."""
    if not p:
        return []
    return [nn.Dropout2d(p) if channels else nn.Dropout(p)]


def reinitialise(module: nn.Module, scheme: str) -> None:
    """Redraw every conv / linear weight (biases zero) by ``scheme``: the init axis of the grid.

    ``he`` is what the constructors already drew; ``xavier`` is Glorot-normal (gain 1);
    ``orthogonal`` uses the ReLU gain √2. NTK-parameterised layers keep their N(0, 1) draws.
    """
    if scheme == "he":
        return
    draw = {
        "xavier": nn.init.xavier_normal_,
        "orthogonal": lambda w: nn.init.orthogonal_(w, gain=math.sqrt(2.0)),
    }.get(scheme)
    if draw is None:
        raise ValueError(f"unknown init scheme {scheme!r}")
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear) and not isinstance(m, NTKLinear):
            draw(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _he_init(module: nn.Module, mode: str = "fan_in") -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear) and not isinstance(m, NTKLinear):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# MLPs (with optional bottleneck and NTK parameterisation)
# --------------------------------------------------------------------------------------------


class NTKLinear(nn.Linear):
    """Linear layer in NTK parameterisation: ``σ_w W x / √fan_in + σ_b b`` with N(0, 1) params.

    A subclass of :class:`~torch.nn.Linear`, so ``head`` stays an ``nn.Linear``; the weight that
    actually multiplies the input is :attr:`effective_weight`.
    """

    def __init__(self, n_in: int, n_out: int, sigma_w2: float = 2.0, sigma_b2: float = 0.0):
        self.sigma_w = math.sqrt(sigma_w2)
        self.sigma_b = math.sqrt(sigma_b2)
        super().__init__(n_in, n_out, bias=True)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight)
        nn.init.normal_(self.bias)

    @property
    def effective_weight(self) -> torch.Tensor:
        return self.weight * (self.sigma_w / math.sqrt(self.in_features))

    @property
    def effective_bias(self) -> torch.Tensor:
        return self.bias * self.sigma_b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight, self.effective_bias)


class MLP(TappedModel):
    """ReLU MLP with the given hidden widths; taps ``h1`` … ``h{len(widths)}``."""

    arch = "mlp"

    def __init__(
        self,
        in_shape,
        num_classes: int,
        widths: list[int],
        parameterization: str = "standard",
        sigma_w2: float = 2.0,
        sigma_b2: float = 0.0,
        dropout: float = 0.0,
        linear_layers: Sequence[int] = (),
    ):
        if parameterization not in ("standard", "ntk"):
            raise ValueError(
                f"parameterization must be 'standard' or 'ntk', got {parameterization!r}"
            )
        kwargs = {"parameterization": parameterization}
        if parameterization == "ntk":
            kwargs.update(sigma_w2=float(sigma_w2), sigma_b2=float(sigma_b2))
        self.linear_layers = tuple(sorted(int(i) for i in linear_layers))
        if self.linear_layers:  # only then: saved models without the key stay readable
            kwargs["linear_layers"] = list(self.linear_layers)
        super().__init__(in_shape, num_classes, kwargs)
        self.widths = [int(w) for w in widths]

        def linear(n_in: int, n_out: int) -> nn.Linear:
            if parameterization == "ntk":
                return NTKLinear(n_in, n_out, sigma_w2, sigma_b2)
            return nn.Linear(n_in, n_out)

        n_in = math.prod(self.in_shape)
        for i, width in enumerate(self.widths):
            layers = [nn.Flatten()] if i == 0 else []
            relu = [] if i in self.linear_layers else [nn.ReLU()]
            layers += [linear(n_in, width), *relu, *_dropout(dropout)]
            self.blocks[f"h{i + 1}"] = nn.Sequential(*layers)
            n_in = width
        _he_init(self.blocks)
        self.head = linear(n_in, self.num_classes)

    def linear_io(self, x: torch.Tensor):
        """``(logits, inputs, pre)``: the input of every linear layer (the hidden ones, then
        ``head``) and the output of every hidden one (its pre-activation), in forward order —
        what a layer-wise NTK needs (:func:`widthlab.bottleneck.networks.mlp_empirical_ntk`)."""
        inputs, pre, a = [], [], x
        for block in self.blocks.values():
            for module in block:
                if isinstance(module, nn.Linear):
                    inputs.append(a)
                    a = module(a)
                    pre.append(a)
                else:
                    a = module(a)
        inputs.append(a)
        return self.head(a), inputs, pre

    @property
    def linears(self) -> list[nn.Linear]:
        """The linear layers in forward order (hidden ones, then ``head``)."""
        hidden = [m for b in self.blocks.values() for m in b if isinstance(m, nn.Linear)]
        return [*hidden, self.head]


def ntk_mlp(
    d_in: int,
    widths: Sequence[int],
    d_out: int,
    sigma_w2: float = 2.0,
    sigma_b2: float = 0.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    linear_layers: Sequence[int] = (),
) -> MLP:
    """An :class:`MLP` in NTK parameterisation on flat ``d_in``-dim inputs, its N(0, 1) entries
    drawn from a generator seeded with ``seed`` (every weight in forward order, then every bias
    when ``sigma_b2`` > 0; biases are zero otherwise), so the draw does not depend on, nor
    touch, the global random state. Hidden layers in ``linear_layers`` have no ReLU (all of them:
    a deep linear net)."""
    model = MLP((1, 1, int(d_in)), d_out, widths, "ntk", sigma_w2, sigma_b2, 0.0, linear_layers)
    model = model.to(dtype)
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for layer in model.linears:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen, dtype=dtype))
        for layer in model.linears:
            if sigma_b2 > 0:
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen, dtype=dtype))
            else:
                layer.bias.zero_()
    return model


# --------------------------------------------------------------------------------------------
# Small CNN
# --------------------------------------------------------------------------------------------


class CNN(TappedModel):
    """``depth`` × (Conv3×3 + ReLU) with ``width`` channels, pooling every 2nd layer, GAP."""

    arch = "cnn"

    def __init__(self, in_shape, num_classes: int, width: int, depth: int, dropout: float = 0.0):
        super().__init__(in_shape, num_classes)
        channels, size = self.in_shape[0], min(self.in_shape[1:])
        for i in range(1, depth + 1):
            layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            layers += _dropout(dropout, channels=True)
            if i % 2 == 0 and size > 4:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            self.blocks[f"conv{i}"] = nn.Sequential(*layers)
            channels = width
        self.blocks["pool"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        _he_init(self.blocks)
        self.head = nn.Linear(width, self.num_classes)


# --------------------------------------------------------------------------------------------
# CIFAR ResNet v1 and pre-activation Wide ResNet
# --------------------------------------------------------------------------------------------


def _conv3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """ResNet v1 block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = _conv3(c_in, c_out, stride), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = _conv3(c_out, c_out), nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation WRN block: conv(relu(bn(conv(relu(bn(x)))))) + shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), _conv3(c_in, c_out, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), _conv3(c_out, c_out)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class ResNet(TappedModel):
    """CIFAR ResNet v1 of depth 6n+2 and width multiplier k (stages 16k, 32k, 64k)."""

    arch = "resnet"

    def __init__(self, in_shape, num_classes: int, width: int, depth: int):
        super().__init__(in_shape, num_classes)
        n = blocks_per_stage("resnet", depth)
        channels = 16 * width
        self.blocks["stem"] = nn.Sequential(
            _conv3(self.in_shape[0], channels), nn.BatchNorm2d(channels), nn.ReLU()
        )
        for stage in range(3):
            c_out = 16 * width * 2**stage
            for block in range(n):
                stride = 2 if stage > 0 and block == 0 else 1
                self.blocks[f"s{stage + 1}b{block + 1}"] = BasicBlock(channels, c_out, stride)
                channels = c_out
        self.blocks["pool"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        _he_init(self.blocks, mode="fan_out")
        self.head = nn.Linear(channels, self.num_classes)


class WideResNet(TappedModel):
    """Pre-activation WRN-(6n+4)-k: stem of 16 channels, stages 16k, 32k, 64k, final BN-ReLU."""

    arch = "wrn"

    def __init__(self, in_shape, num_classes: int, width: int, depth: int):
        super().__init__(in_shape, num_classes)
        n = blocks_per_stage("wrn", depth)
        channels = 16
        self.blocks["stem"] = _conv3(self.in_shape[0], channels)
        for stage in range(3):
            c_out = 16 * width * 2**stage
            for block in range(n):
                stride = 2 if stage > 0 and block == 0 else 1
                self.blocks[f"s{stage + 1}b{block + 1}"] = PreActBlock(channels, c_out, stride)
                channels = c_out
        self.blocks["pool"] = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        _he_init(self.blocks, mode="fan_out")
        self.head = nn.Linear(channels, self.num_classes)


# --------------------------------------------------------------------------------------------
# Building, counting, saving
# --------------------------------------------------------------------------------------------


def build_model(spec: ModelSpec, in_shape, num_classes: int, **arch_kwargs) -> TappedModel:
    """The untrained network of ``spec`` for inputs ``in_shape`` = (C, H, W).

    ``arch_kwargs`` go to the architecture's class (only ``mlp`` / ``bmlp`` take any:
    ``parameterization``, ``sigma_w2``, ``sigma_b2``). Seed torch before calling.
    """
    model = _build(spec, in_shape, num_classes, arch_kwargs)
    reinitialise(model, spec.init)
    return model


def seeded_model(spec: ModelSpec, in_shape, num_classes: int, **arch_kwargs) -> TappedModel:
    """The network training of ``spec`` starts from: torch's global generator seeded with
    ``spec.seed``, then :func:`build_model`. The generator is left in that state, which training
    goes on drawing from (dropout); wrap the call in ``torch.random.fork_rng`` to keep yours."""
    torch.manual_seed(spec.seed)
    return build_model(spec, in_shape, num_classes, **arch_kwargs)


def _build(spec: ModelSpec, in_shape, num_classes: int, arch_kwargs) -> TappedModel:
    if spec.arch in ("mlp", "bmlp"):
        widths = hidden_widths(spec.width, spec.depth, spec.bottleneck)
        return MLP(in_shape, num_classes, widths, dropout=spec.dropout, **arch_kwargs)
    if arch_kwargs:
        raise TypeError(f"arch {spec.arch!r} takes no extra arguments, got {sorted(arch_kwargs)}")
    if spec.arch == "cnn":
        return CNN(in_shape, num_classes, spec.width, spec.depth, dropout=spec.dropout)
    if spec.arch == "resnet":
        return ResNet(in_shape, num_classes, spec.width, spec.depth)
    if spec.arch == "wrn":
        return WideResNet(in_shape, num_classes, spec.width, spec.depth)
    raise ValueError(f"unknown arch {spec.arch!r}")


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def forward_macs(model: nn.Module, in_shape) -> int:
    """Multiply–accumulates of one forward pass of one example (convs and linears only)."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            total += output.numel() * per_output
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    hooks = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    was_training = model.training
    try:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *in_shape, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return int(total)


def forward_flops(model: nn.Module, in_shape) -> int:
    """Rough forward FLOPs per example: 2 × :func:`forward_macs` (for resource sizing, MFU)."""
    return 2 * forward_macs(model, in_shape)
