"""Which models train together in one process: the plan of training packs (no torch import).

Small MLPs leave a GPU waiting on kernel launches and a CPU job waiting on interpreter
start-up, so models that train the same way are stacked into one *pack* and stepped together
(:func:`widthlab.training.train.train_pack`: one batched matmul per layer for all of them). A
model may join a pack when :func:`packable` says so; models share a pack when they have the same
:func:`pack_key` (dataset, training subset, architecture, depth, weight decay and training
settings: everything but width, seed, init and variant) and the same layer widths, at most
``max_models`` per pack, in seed order. So adding a width to a grid adds packs and leaves the
others alone; adding a seed re-forms the pack of its width (whose models then retrain).

``mix_widths`` also stacks models of different widths, each layer zero-padded to the pack's
widest model, grouped by cost band instead of width: a model's cost is its
multiply–accumulates per example (:func:`step_macs`), but at least ``launch_bound_macs``
(below that a step costs its kernel launches, whatever the width), and models share a band
when their costs lie in the same ``[max_padding^k, max_padding^(k+1))``. A pack then computes at
most ``max_padding`` times what its models would alone, and all launch-bound models of a
recipe fill one pack, at the price of coupling widths: adding a width re-forms its band's pack.

The plan depends on the config alone, so dry runs and SLURM submissions are reproducible.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from widthlab.grid import ModelSpec
from widthlab.sizes import forward_macs, hidden_widths

PACK_ARCHS = ("mlp", "bmlp")


def packable(spec: ModelSpec, settings: Mapping[str, Any]) -> bool:
    """Whether ``spec`` can be stacked with others: an MLP in standard parameterisation
    (its initial scale is its own width's, whatever the pack pads it to) without dropout (whose
    masks draw from the one global generator each model would otherwise own)."""
    arch_kwargs = dict(settings.get("arch_kwargs") or {})
    standard = arch_kwargs.pop("parameterization", "standard") == "standard" and not arch_kwargs
    return spec.arch in PACK_ARCHS and not spec.dropout and standard


def pack_key(spec: ModelSpec, settings: Mapping[str, Any]) -> str:
    """What models of one pack share, as text (settings with sorted keys)."""
    shared = {
        "data": spec.data.id,
        "train_size": spec.train_size,
        "arch": spec.arch,
        "depth": spec.depth,
        "weight_decay": spec.weight_decay,
        "settings": {k: v for k, v in settings.items() if k != "device"},
    }
    return json.dumps(shared, sort_keys=True, default=str)


def step_macs(spec: ModelSpec) -> int:
    """Multiply–accumulates per example of the model's forward pass (:mod:`widthlab.sizes`)."""
    return forward_macs(spec)


def cost_band(spec: ModelSpec, max_padding: float, launch_bound_macs: int) -> int:
    cost = max(step_macs(spec), launch_bound_macs, 1)
    return int(math.floor(math.log(cost, max_padding) + 1e-9))


@dataclass(frozen=True)
class Pack:
    """Models trained together; ``name`` is stable for the same members."""

    ids: tuple[str, ...]

    @property
    def name(self) -> str:
        digest = hashlib.sha1("\n".join(self.ids).encode()).hexdigest()[:8]
        return f"pack{len(self.ids)}-{digest}"


def plan_packs(
    models: Iterable[tuple[ModelSpec, Mapping[str, Any]]],
    max_models: int = 16,
    max_padding: float = 2.0,
    launch_bound_macs: int = 65536,
    max_macs: int | None = None,
    mix_widths: bool = False,
) -> list[Pack]:
    """Packs of ≥ 2 models from ``(spec, train settings)`` pairs; models left out of every pack
    train alone. ``max_models`` 1 plans no packs. Models costing more than ``max_macs`` per
    example train alone (on CPUs, where a batched matmul is slower than separate ones and a
    pack saves only start-up)."""
    if max_models < 1 or isinstance(max_models, bool):
        raise ValueError(f"train_packs.max_models must be a positive integer, got {max_models}")
    if not max_padding > 1:
        raise ValueError(f"train_packs.max_padding must be > 1, got {max_padding}")
    groups: dict[tuple, list[ModelSpec]] = {}
    for spec, settings in models:
        if packable(spec, settings) and (max_macs is None or step_macs(spec) <= max_macs):
            if mix_widths:
                shape = cost_band(spec, max_padding, launch_bound_macs)
            else:
                shape = tuple(hidden_widths(spec.width, spec.depth, spec.bottleneck))
            groups.setdefault((pack_key(spec, settings), shape), []).append(spec)
    packs = []
    for specs in groups.values():
        specs = sorted(dict.fromkeys(specs), key=lambda s: (s.width, s.seed, s.id))
        for start in range(0, len(specs), max_models):
            chunk = specs[start : start + max_models]
            if len(chunk) > 1:
                packs.append(Pack(tuple(s.id for s in chunk)))
    return packs
