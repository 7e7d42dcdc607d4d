"""Torch-free helpers ``rules/transfer.smk`` calls while building the DAG."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields

from widthlab.transfer.settings import TransferConfig

#: the analyses.transfer keys a per-model job depends on (not grid, enabled, jobs or atlas)
MODEL_KEYS = tuple(f.name for f in fields(TransferConfig))


def model_settings(section: Mapping) -> dict:
    """The keys of ``analyses.transfer`` a per-model job depends on."""
    return {key: section[key] for key in MODEL_KEYS if key in section}


def atlas_models(models, seeds, stops: Mapping[str, float | None]) -> list[str]:
    """The models that get an atlas: the atlas seeds of the fully trained models (a model taken
    at a declared source accuracy, ``stops[m]`` not None, is for the matched rows only)."""
    from widthlab.grid import parse_model_id

    return [m for m in models if parse_model_id(m).seed in seeds and stops.get(m) is None]


def target_data_of(model: str, section: Mapping) -> str:
    """The data id of ``model``'s target task: its dataset (or ``target_dataset``) restricted to
    the section's ``target_classes``."""
    from widthlab.grid import parse_model_id
    from widthlab.transfer.settings import target_data_id

    data = parse_model_id(model).data
    return target_data_id(data, section["target_classes"], section.get("target_dataset"))
