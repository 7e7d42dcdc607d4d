"""The training recipe of a model: every training setting that could change what it learns.

Two models may be contrasted in a claim ("wider", "deeper", "less data") only if they share a
recipe, so that the named factor is the only difference (:func:`widthlab.stats.confounder`).
The recipe key is readable text, ``optimizer=sgd;lr=0.05;…`` with sorted keys, so a refusal can
name the settings that differ. Settings that only change how fast a run goes, not what it
computes (device, checkpoint interval, evaluation batch, compilation), are left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

# how a run is executed, not what it learns
EXECUTION_ONLY = ("device", "checkpoint_every_steps", "eval_batch_size", "compile", "bf16")


def recipe_key(settings: Mapping[str, Any]) -> str:
    """``key=value;…`` over the recipe's settings in sorted key order (values as JSON)."""
    kept = {k: v for k, v in settings.items() if k not in EXECUTION_ONLY}
    return ";".join(
        f"{key}={json.dumps(kept[key], sort_keys=True, separators=(',', ':'))}"
        for key in sorted(kept)
    )


def parse_recipe(key: str) -> dict[str, Any]:
    """The settings of a :func:`recipe_key` (inverse up to the execution-only settings)."""
    if not key:
        return {}
    settings = {}
    for part in key.split(";"):
        name, _, value = part.partition("=")
        settings[name] = json.loads(value)
    return settings


def recipe_differences(keys: Iterable[str]) -> list[str]:
    """The settings that take more than one value across the recipes ``keys``, sorted."""
    parsed = [parse_recipe(k) for k in dict.fromkeys(keys)]
    names = sorted({name for settings in parsed for name in settings})
    return [
        name for name in names if len({json.dumps(s.get(name), sort_keys=True) for s in parsed}) > 1
    ]
