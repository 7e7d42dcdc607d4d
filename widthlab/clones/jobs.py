"""Torch-free helpers ``rules/clones.smk`` calls while building the DAG."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from widthlab.clones.settings import MEASURE_KEYS

#: the summary rule's figures: name → the report's subcategory
FIGURES = {
    "chunk_accuracy": "chunks",
    "chunk_similarity": "chunks",
    "clone_growth": "clone counts",
    "conditions": "clone counts",
    "ensembles": "ensembles",
    "ensemble_gap": "ensembles",
}


def model_settings(section: Mapping) -> dict:
    """The keys of ``analyses.clones`` a per-model job depends on (a threshold or a summary
    setting must not rerun every model)."""
    return {key: section[key] for key in MEASURE_KEYS if key in section}


def first_grid_of(grid_models: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """model id → the first grid (in the given order) that holds it: the first of the stage's
    grids is the primary one, so a model shared with it counts as primary."""
    first: dict[str, str] = {}
    for name, models in grid_models.items():
        for model in models:
            first.setdefault(model, name)
    return first


def summary_settings(section: Mapping) -> dict:
    """The keys of ``analyses.clones`` the summary depends on (how the work is spread over
    jobs, and whether the stage runs, do not change what it computes)."""
    return {key: value for key, value in section.items() if key not in ("jobs", "enabled")}
