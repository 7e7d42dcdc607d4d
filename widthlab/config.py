"""Configuration checks that name the offending key, before anything runs.

The schema (``schemas/config.schema.yaml``) is the single source of keys, types and defaults;
Snakemake's ``validate`` fills the defaults. This module turns a schema violation into one line
that names the key, and adds the checks a schema cannot express.
"""

from __future__ import annotations

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


def check_config(config: dict, schema: dict | None = None) -> None:
    """Raise ConfigError naming the key of the first (most specific) violation."""
    schema = schema or load_schema()
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
