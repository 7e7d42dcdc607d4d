"""Torch-free helpers ``rules/units.smk`` calls while building the DAG."""

from __future__ import annotations

from collections.abc import Mapping

from widthlab.units.settings import MEASURE_KEYS

#: the summary rule's figures: name → the report's subcategory
FIGURES = {
    "ablation_curves": "ablation",
    "unit_counts": "unit counts",
    "fractions": "unit counts",
    "split": "unit counts",
    "per_layer": "per layer",
}


def model_settings(section: Mapping) -> dict:
    """The keys of ``analyses.units`` a per-model job depends on (a summary setting such as the
    threshold alternatives or the interval level must not rerun every model)."""
    return {key: section[key] for key in MEASURE_KEYS if key in section}


def summary_settings(section: Mapping) -> dict:
    """The keys the summary depends on (how work is spread over jobs, and whether the stage
    runs, do not change what it computes)."""
    return {key: value for key, value in section.items() if key not in ("jobs", "enabled")}
