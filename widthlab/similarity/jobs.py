"""Which models the similarity stage compares, decided from model ids alone (no torch import, so
the workflow can call it while it builds the DAG).

Pair rules (``analyses.similarity.pairs``):

- ``seeds`` — the baseline: every two models that differ only in their seed (all pairs a < b).
- ``wide_vs_deep`` — a deep model against a wide, shallow one of about the same size: models are
  grouped into families that agree on everything but width and depth (dataset, arch, training-set
  size, weight decay, seed, …); within a family every model deeper than the family's shallowest
  depth is paired with the model of that shallowest depth whose parameter count
  (:func:`parameters`) is closest on a log scale **and** that is wider, provided the larger
  count is at most ``max_parameter_ratio`` times the smaller. A deep model without such a partner
  gets no pair.
- ``explicit`` — ``[model_a, model_b]`` lists, kept as given (kind ``explicit``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from widthlab.grid import ModelSpec, parse_model_id
from widthlab.sizes import architecture


@dataclass(frozen=True)
class Pair:
    kind: str  # "seeds", "wide_vs_deep" or "explicit"
    a: str  # model id (for wide_vs_deep: the wide, shallow model)
    b: str  # model id (for wide_vs_deep: the deep, narrow model)


def parameters(spec: ModelSpec) -> int:
    """Weights of the hidden layers (:mod:`widthlab.sizes`; biases, norms and the head are left
    out: they do not change the matching)."""
    return architecture(spec).hidden_weights


def _without(spec: ModelSpec, *axes: str) -> tuple:
    """The model's axes except ``axes`` (and its id): the key of its group."""
    return tuple((k, v) for k, v in spec.columns().items() if k not in ("model", *axes))


def seed_pairs(specs: Sequence[ModelSpec], recipes: Mapping[str, str] | None = None) -> list[Pair]:
    groups: dict[tuple, list[ModelSpec]] = defaultdict(list)
    for spec in specs:
        groups[(_without(spec, "seed"), (recipes or {}).get(spec.id))].append(spec)
    pairs = []
    for members in groups.values():
        members = sorted(members, key=lambda s: s.seed)
        for i, a in enumerate(members):
            pairs += [Pair("seeds", a.id, b.id) for b in members[i + 1 :]]
    return pairs


def wide_vs_deep_pairs(
    specs: Sequence[ModelSpec],
    max_parameter_ratio: float,
    recipes: Mapping[str, str] | None = None,
) -> list[Pair]:
    families: dict[tuple, list[ModelSpec]] = defaultdict(list)
    for spec in specs:
        # a family shares its training recipe too: wide vs deep must not also be SGD vs Adam
        families[(_without(spec, "width", "depth"), (recipes or {}).get(spec.id))].append(spec)
    pairs = []
    for members in families.values():
        shallowest = min(s.depth for s in members)
        shallow = [s for s in members if s.depth == shallowest]
        for deep in sorted(members, key=lambda s: (s.depth, s.width)):
            if deep.depth == shallowest:
                continue
            size = parameters(deep)
            candidates = [s for s in shallow if s.width > deep.width]
            if not candidates:
                continue
            wide = min(candidates, key=lambda s: (abs(math.log(parameters(s) / size)), s.width))
            ratio = max(parameters(wide), size) / min(parameters(wide), size)
            if ratio <= max_parameter_ratio:
                pairs.append(Pair("wide_vs_deep", wide.id, deep.id))
    return pairs


def choose_pairs(
    model_ids: Iterable[str], settings: Mapping, recipes: Mapping[str, str] | None = None
) -> list[Pair]:
    """The configured pairs among ``model_ids`` (``settings`` = ``analyses.similarity.pairs``),
    seed pairs first, then wide-vs-deep, then explicit; no pair twice. With ``recipes`` (model
    id → training recipe, :mod:`widthlab.recipe`) seed and wide-vs-deep pairs stay inside one
    recipe, so a comparison never mixes the named factor with the optimizer."""
    ids = list(dict.fromkeys(model_ids))
    specs = [parse_model_id(mid) for mid in ids]
    pairs: list[Pair] = []
    if settings.get("seeds", True):
        pairs += seed_pairs(specs, recipes)
    if settings.get("wide_vs_deep", True):
        ratio = float(settings.get("max_parameter_ratio", 2.0))
        pairs += wide_vs_deep_pairs(specs, ratio, recipes)
    for entry in settings.get("explicit", []):
        if len(entry) != 2:
            raise ValueError(
                f"analyses.similarity.pairs.explicit: {entry!r} is not a pair of model ids"
            )
        a, b = (str(x) for x in entry)
        for mid in (a, b):
            try:
                parse_model_id(mid)
            except ValueError as error:
                raise ValueError(f"analyses.similarity.pairs.explicit: {error}") from None
            if mid not in ids:
                raise ValueError(
                    f"analyses.similarity.pairs.explicit: {mid} is not a model of the grids "
                    "this stage studies"
                )
        pairs.append(Pair("explicit", a, b))
    return list(dict.fromkeys(pairs))
