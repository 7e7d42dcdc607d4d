"""Configuration checks that name the offending key, before anything runs.

The schema (``schemas/config.schema.yaml``) is the single source of keys, types and defaults;
Snakemake's ``validate`` fills the defaults. This module turns a schema violation into one line
that names the key, and adds the checks a schema cannot express.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import jsonschema
import yaml

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """An invalid configuration; the message names the key."""


def key_path(parts) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<config>"


def load_schema(path: str | Path = SCHEMA) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


def grid_train_schema(schema: dict) -> dict:
    """``schema`` with each grid's ``train:`` overrides checked against the keys and types of the
    top-level ``train:`` (without its defaults: an override names only what it changes)."""
    schema = copy.deepcopy(schema)
    train = schema["properties"]["train"]
    grid = schema.get("definitions", {}).get("grid", {}).get("properties", {})
    if "train" in grid:
        properties = {
            key: {k: v for k, v in rule.items() if k != "default"}
            for key, rule in train["properties"].items()
        }
        grid["train"] = {
            **grid["train"],
            "type": "object",
            "additionalProperties": False,
            "properties": properties,
        }
    return schema


def _numbers(value, where: list) -> Iterator[tuple[list, float]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _numbers(item, [*where, key])
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _numbers(item, [*where, index])
    elif isinstance(value, float):
        yield where, value


def check_finite(config: Mapping) -> None:
    """Raise ConfigError naming the first key whose value is .inf or .nan."""
    for where, value in _numbers(config, []):
        if not math.isfinite(value):
            raise ConfigError(f"config key {key_path(where)}: {value} is not a finite number")


class _Keys(yaml.SafeLoader):
    """A YAML loader that keeps the nodes (for their keys and line numbers)."""


def _duplicates(node, where: list) -> Iterator[str]:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
            line = key.start_mark.line + 1
            if name in seen:
                yield (
                    f"config key {key_path([*where, name])} appears twice (lines {seen[name]} "
                    f"and {line}); YAML would silently keep only the last"
                )
            seen.setdefault(name, line)
            yield from _duplicates(value, [*where, name])
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicates(item, [*where, index])


def check_duplicate_keys(paths: Iterable[str | Path]) -> None:
    """Raise ConfigError naming the first key that a config file sets twice."""
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            root = yaml.compose(handle, Loader=_Keys)
        for problem in _duplicates(root, []):
            raise ConfigError(f"{path}: {problem}")


def check_train_sizes(grids: Mapping, synthetic: Mapping | None = None) -> None:
    """Raise ConfigError when a grid's train_size exceeds the training examples of its dataset,
    where that number is known from the dataset's spec (not for a class subset of digits,
    whose classes are not exactly balanced)."""
    from widthlab.sizes import data_shape

    for name, grid in grids.items():
        for spec in grid.specs():
            data = spec.data
            if spec.train_size is None or (data.name == "digits" and data.classes is not None):
                continue
            available = data_shape(data, synthetic).n_train
            if spec.train_size > available:
                raise ConfigError(
                    f"config key grids.{name}.train_size: {spec.train_size} is more than the "
                    f"{available} training examples of {data.id}"
                )


def check_config(config: dict, schema: dict | None = None) -> None:
    """Raise ConfigError naming the key of the first (most specific) violation."""
    check_finite(config)
    schema = grid_train_schema(schema or load_schema())
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        where = list(error.absolute_path)
        if error.validator == "additionalProperties":
            unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            names = ", ".join(key_path([*where, key]) for key in unknown)
            raise ConfigError(f"unknown config key {names}")
        raise ConfigError(f"config key {key_path(where)}: {error.message}")


def check_semantics(config: dict, train_keys: set[str]) -> None:
    """Checks beyond the schema; run after defaults are filled."""
    data = config.get("data", {})
    if data.get("test_size") and data.get("probe_size", 0) > data["test_size"]:
        raise ConfigError(
            f"config key data.probe_size: {data['probe_size']} is more than data.test_size "
            f"{data['test_size']} (the probe set is taken from the kept test examples)"
        )
    for name, grid in config["grids"].items():
        for key in grid.get("train", {}):
            if key not in train_keys:
                raise ConfigError(f"unknown config key grids.{name}.train.{key}")
        widths = sorted(grid["width"])
        ratios = {b / a for a, b in zip(widths, widths[1:], strict=False)}
        if len(widths) > 1 and ratios != {2}:
            raise ConfigError(
                f"config key grids.{name}.width: widths must form a ×2 series "
                f"(the growth statistic and clone chunks need it), got {widths}"
            )
        if "resnet" in grid["arch"]:
            for depth in grid["depth"]:
                if (depth - 2) % 6:
                    raise ConfigError(f"config key grids.{name}.depth: resnet depth {depth} ≠ 6n+2")
        if "wrn" in grid["arch"]:
            for depth in grid["depth"]:
                if (depth - 4) % 6:
                    raise ConfigError(f"config key grids.{name}.depth: wrn depth {depth} ≠ 6n+4")
        if (
            grid["dataset"] != "digits"
            and grid["dataset"] != "synthetic"
            and not config["data_root"]
        ):
            raise ConfigError(
                f"config key data_root: grid {name!r} uses {grid['dataset']}, which is read from "
                "data_root (never downloaded); set data_root to the folder holding it"
            )
    for section, settings in config["analyses"].items():
        if not isinstance(settings, dict) or not settings.get("enabled", True):
            continue  # a disabled stage may keep the default grid name of a grid not defined here
        grids = settings.get("grid")
        for grid in [grids] if isinstance(grids, str) else grids or []:
            if grid not in config["grids"]:
                raise ConfigError(f"config key analyses.{section}.grid: no grid named {grid!r}")
