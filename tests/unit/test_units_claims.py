"""The units stage's headline rows on hand-made tables whose answer is known, and its settings
against the schema. Each table is built from closed forms: a model of width W has one hidden
layer whose prunability p and compressibility c are set, and an all-layer ablation curve that
is linear in the fraction, so its crossing of any threshold is known exactly."""

import numpy as np
import pandas as pd
import pytest

from widthlab.config import load_schema
from widthlab.grid import DataSpec, ModelSpec
from widthlab.headline import HEADLINE_COLUMNS
from widthlab.stats import verdict_of_row
from widthlab.units import claims, jobs
from widthlab.units.settings import MEASURE_KEYS, UnitsSettings

FRACTIONS = np.linspace(0.0, 1.0, 7)
SGD = 'lr=0.05;optimizer="sgd"'
ADAM = 'lr=0.001;optimizer="adam"'


def model(width, p, c, seed, weight_decay=0.0):
    """(layer rows, curve rows) of one model: agreement = 1 − 0.2·f/p crosses 0.8 at f = p,
    0.7 at 1.5·p and 0.9 at 0.5·p (exact under linear interpolation)."""
    spec = ModelSpec(DataSpec("digits"), "mlp", width, 1, weight_decay=weight_decay, seed=seed)
    cols = spec.columns()
    tap = {"layer": "h1", "units": width, "compressibility": c, "n_pcs": 1, "prunability": p}
    prunable = p * width
    redundant = c * (width - prunable)
    counts = {
        "prunable": prunable,
        "non_prunable": width - prunable,
        "redundant": redundant,
        "non_redundant": width - prunable - redundant,
    }
    rows = [
        {**cols, **tap, **counts},
        {**cols, **tap, **counts, "layer": "all"},
    ]
    curve = [
        {
            **cols,
            "scope": "all",
            "order": o,
            "fraction": f,
            "agreement": 1 - 0.2 * f / p,
            "units": width,
        }  # fmt: skip
        for o in range(3)
        for f in FRACTIONS
    ]
    return rows, curve


def tables(prunability, compressibility=lambda w, s: 0.3, seeds=(0, 1, 2), wds=(0.0, 5e-4),
           widths=(16, 32, 64, 128)):  # fmt: skip
    layers, curves = [], []
    for seed in seeds:
        for wd in wds:
            for w in widths:
                rows, curve = model(w, prunability(w, seed, wd), compressibility(w, seed), seed, wd)
                layers += rows
                curves += curve
    layers = pd.DataFrame(layers).assign(threshold=0.8, redundancy_rule="product")
    return {"layers": layers, "curves": pd.DataFrame(curves)}


def rising(w, seed, wd):
    """+0.05 per doubling from 0.2, a small per-seed offset; weight decay adds 0.05."""
    return 0.2 + 0.05 * np.log2(w / 16) + 0.01 * seed + (0.05 if wd else 0.0)


def row(table, text):
    matches = table[table["claim"].str.contains(text, regex=False)]
    assert len(matches) == 1, (text, table["claim"].tolist())
    return matches.iloc[0]


def test_rows_follow_the_one_rule_from_their_own_numbers():
    table = claims.headline(tables(rising))
    assert list(table.columns) == HEADLINE_COLUMNS
    for _, r in table.iterrows():
        assert r["holds"] == verdict_of_row(r)
        assert r["holds"] == "n/a" or (r["n"] >= 3 and np.isfinite(r["ci_low"]))


def test_a_rising_prunable_fraction_is_yes_with_one_value_per_seed():
    r = row(claims.headline(tables(rising)), "rises with width")
    # the slope per doubling is 0.05 in every series of every seed: the mean is exact
    assert r["value"] == pytest.approx(0.05) and r["n"] == 3 and r["unit"] == "seeds"
    assert r["holds"] == "yes" and r["robust"] == "yes"


def test_growth_of_counts_against_g_equal_2():
    table = claims.headline(tables(rising))
    prunable = row(table, "Prunable units proliferate")
    # p·W with p rising: faster than the width
    assert prunable["value"] > 2 and prunable["holds"] == "yes" and prunable["null"] == 2
    redundant = row(table, "Redundant units proliferate")
    # c·(1 − p)·W with c fixed and p rising: slower than W, the claim (g > 2) is contradicted
    assert redundant["value"] < 2 and redundant["holds"] == "contradicted"
    non_redundant = row(table, "not really that wide")
    assert non_redundant["direction"] == -1 and non_redundant["holds"] == "yes"


def test_a_count_exactly_proportional_to_width_gives_g_2_and_is_never_faster_than_width():
    constant = tables(lambda w, seed, wd: 0.3)
    r = row(claims.headline(constant), "Prunable units proliferate")
    assert r["value"] == pytest.approx(2.0)
    assert r["holds"] == "inconclusive"


def test_noise_around_proportional_growth_is_inconclusive_not_yes():
    # per seed the prunable count bends up or down by the same amount: slopes 1 − δ, 1, 1 + δ
    bend = {0: -0.02, 1: 0.0, 2: 0.02}
    noisy = tables(lambda w, seed, wd: 0.3 + bend[seed] * np.log2(w / 16))
    r = row(claims.headline(noisy), "Prunable units proliferate")
    assert r["ci_low"] < 2 < r["ci_high"] and r["holds"] == "inconclusive"


def test_two_seeds_are_not_enough_for_any_verdict():
    table = claims.headline(tables(rising, seeds=(0, 1)))
    assert (table["holds"] == "n/a").all()
    assert table["reason"].str.startswith("too few seeds").all()


def test_weight_decay_row_contrasts_matched_pairs_per_seed():
    table = claims.headline(tables(rising))
    r = row(table, "(weight decay)")
    # 4 widths × 3 seeds = 12 pairs, averaged to 3 seed values
    assert r["n"] == 3 and "12 pairs" in r["detail"] and r["direction"] == 0
    # share p / (p + c(1 − p)) rises with p: weight decay (p + 0.05) raises it
    assert r["value"] > 0 and r["holds"] == "yes"


def test_weight_decay_row_refuses_models_trained_with_different_recipes():
    made = tables(rising)
    layers = made["layers"]
    recipes = {
        m: (ADAM if wd else SGD)
        for m, wd in zip(layers["model"], layers["weight_decay"], strict=True)
    }
    r = row(claims.headline(made, recipes=recipes), "(weight decay)")
    assert r["holds"] == "n/a" and r["reason"] == (
        "confounded: lr, optimizer differs between the compared models"
    )


def test_a_single_weight_decay_level_is_not_measured():
    r = row(claims.headline(tables(rising, wds=(0.0,))), "(weight decay)")
    assert r["holds"] == "n/a" and "single weight_decay level" in r["reason"]


def test_a_verdict_that_flips_at_a_declared_threshold_is_not_robust():
    # prunability just above 0.5 at the wide end: at threshold 0.7 (crossing 1.5·p) the widest
    # models never cross and sit at 1.0 — the slope changes but stays positive; at 0.9 the
    # crossing 0.5·p halves it. Make the rise vanish at 0.7 by clipping every model at 1.0.
    flat_at_07 = tables(lambda w, seed, wd: 0.7 + 0.05 * np.log2(w / 16) + 0.01 * seed)
    r = row(claims.headline(flat_at_07), "rises with width")
    assert r["holds"] == "yes" and r["robust"] == "no" and "alternative" in r["detail"]


def test_network_counts_at_the_primary_threshold_equal_the_stored_ones():
    made = tables(rising)
    net = claims.network_at(made["layers"], made["curves"], 0.8, "product")
    stored = made["layers"][made["layers"]["layer"] == "all"].set_index("model")
    for q in ("prunable", "redundant", "non_redundant"):
        np.testing.assert_allclose(net.set_index("model")[q], stored.loc[net["model"], q])


# --- settings against the schema ---------------------------------------------------------------

SECTION = load_schema()["properties"]["analyses"]["properties"]["units"]["properties"]


def test_every_schema_key_is_a_setting_with_the_schema_default():
    settings = UnitsSettings()
    for key, spec in SECTION.items():
        default = spec["default"]
        if key in MEASURE_KEYS:
            value = getattr(settings.measure, key)
        elif key == "grid":
            value, default = settings.grids, (default,)
        else:
            value = getattr(settings, key)
        if isinstance(value, tuple) and isinstance(default, list):
            default = tuple(default)
        assert value == default, key


def test_from_config_splits_per_model_keys_from_summary_keys():
    section = {key: spec["default"] for key, spec in SECTION.items()}
    settings = UnitsSettings.from_config({**section, "threshold": 0.9, "grid": ["a", "b"]})
    assert settings.measure.threshold == 0.9 and settings.grids == ("a", "b")
    per_model = jobs.model_settings({**section, "level": 0.9})
    assert set(per_model) == set(MEASURE_KEYS) and "threshold_alternatives" not in per_model
