"""The clones stage's settings object against the config schema: the same keys, the same
defaults, and the per-model keys split from the summary's."""

import dataclasses

import pytest

from widthlab.clones import jobs
from widthlab.clones.settings import (
    MEASURE_KEYS,
    CloneSettings,
    CloneThresholds,
    MeasureSettings,
)
from widthlab.config import load_schema

SECTION = load_schema()["properties"]["analyses"]["properties"]["clones"]["properties"]
# config key → where CloneSettings keeps it
FIELD_OF = {"grid": "grids"}


def schema_defaults(properties: dict) -> dict:
    return {key: spec["default"] for key, spec in properties.items()}


def test_every_schema_key_is_a_setting_with_the_schema_default():
    defaults = schema_defaults(SECTION)
    settings = CloneSettings()
    nested = {"thresholds": settings.thresholds}
    for key, default in defaults.items():
        if key in MEASURE_KEYS:
            value = getattr(settings.measure, key)
        elif key in nested:
            value = dataclasses.asdict(nested[key])
            default = schema_defaults(SECTION[key]["properties"])
        else:
            value = getattr(settings, FIELD_OF.get(key, key))
        if key == "grid":
            default = (default,)
        if key == "threshold_alternatives":
            default = tuple(default)
        assert value == default, key
    threshold_keys = set(SECTION["thresholds"]["properties"])
    assert threshold_keys == {f.name for f in dataclasses.fields(CloneThresholds)}


def test_no_setting_lacks_a_schema_key():
    keys = set(SECTION)
    measure = {f.name for f in dataclasses.fields(MeasureSettings)} - {"device"}
    assert measure <= keys
    top = {f.name for f in dataclasses.fields(CloneSettings)} - {"measure"}
    assert {FIELD_OF.get(k, k) for k in keys} - set(MEASURE_KEYS) == top


def test_from_config_splits_the_section_and_validates():
    section = schema_defaults(SECTION) | {"grid": ["main", "early"], "n_ii_chunks": 3}
    section["thresholds"] = {"r2_min": 0.8}
    settings = CloneSettings.from_config(section, device="cuda")
    assert settings.grids == ("main", "early") and settings.primary == "main"
    assert settings.measure.n_ii_chunks == 3 and settings.measure.device == "cuda"
    assert settings.thresholds == CloneThresholds(r2_min=0.8)
    assert jobs.model_settings(section) == {k: section[k] for k in MEASURE_KEYS}
    assert "thresholds" not in jobs.model_settings(section)
    assert "jobs" not in jobs.summary_settings(section)
    with pytest.raises(ValueError, match="gap_method"):
        CloneSettings(gap_method="knn")
    with pytest.raises(TypeError):
        CloneSettings.from_config({"unknown": 1})
    with pytest.raises(TypeError):
        CloneSettings(threshold_alternatives=({"r2": 0.8},))
    alternatives = CloneSettings(thresholds=CloneThresholds(train_error_max=0.1))
    first = alternatives.alternative_thresholds()[0]
    assert first == CloneThresholds(ii_max=0.1, r2_min=0.8, train_error_max=0.1)


def test_first_grid_of_prefers_the_earlier_grid():
    grids = {"main": ["a", "b"], "seeds": ["b", "c"]}
    assert jobs.first_grid_of(grids) == {"a": "main", "b": "main", "c": "seeds"}
