import copy

import pytest
import yaml

from widthlab.config import (
    ConfigError,
    check_config,
    check_duplicate_keys,
    check_semantics,
    check_train_sizes,
)
from widthlab.grid import grids_from_config

BASE = {"grids": {"main": {"dataset": "digits", "width": [16, 32], "depth": [2]}}}


def with_(change):
    config = copy.deepcopy(BASE)
    change(config)
    return config


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda c: c.update(epochs=3), "unknown config key epochs"),
        (lambda c: c.update(train={"lr": "fast"}), "config key train.lr"),
        (lambda c: c["grids"]["main"].update(width=[0, 16]), r"config key grids.main.width\[0\]"),
        (lambda c: c["grids"]["main"].update(width=[]), "config key grids.main.width"),
        (lambda c: c.update(grids={}), "config key grids"),
        (lambda c: c["grids"]["main"].update(widths=[8]), "unknown config key grids.main.widths"),
        (lambda c: c.update(device="tpu"), "config key device"),
    ],
)
def test_schema_violations_name_the_key(change, key):
    with pytest.raises(ConfigError, match=key):
        check_config(with_(change))


def test_the_default_config_is_valid():
    with open("config.yaml") as handle:
        check_config(yaml.safe_load(handle))


def filled(config):
    defaults = {"data_root": None, "analyses": {}, "train": {"lr": 0.1}}
    for grid in config["grids"].values():
        grid.setdefault("arch", ["mlp"])
    return {**defaults, **config}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["grids"]["main"].update(width=[16, 48]), "×2 series"),
        (lambda c: c["grids"]["main"].update(train={"lrr": 1}), "grids.main.train.lrr"),
        (lambda c: c["grids"]["main"].update(arch=["resnet"], depth=[10]), "6n\\+2"),
        (lambda c: c["grids"]["main"].update(dataset="cifar10"), "data_root"),
        (
            lambda c: c.update(data={"probe_size": 500, "test_size": 400}),
            "data.probe_size: 500 is more than data.test_size 400",
        ),
        (lambda c: c.update(analyses={"units": {"grid": "nope"}}), "analyses.units.grid"),
        (
            lambda c: c.update(analyses={"clones": {"grid": ["main", "early"]}}),
            "analyses.clones.grid: no grid named 'early'",
        ),
    ],
)
def test_semantic_checks_name_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        check_semantics(filled(with_(change)), {"lr"})


def test_an_analysis_may_study_a_list_of_grids():
    config = with_(lambda c: c.update(analyses={"units": {"grid": ["main"]}}))
    check_config(config)
    check_semantics(filled(config), {"lr"})


def test_a_disabled_stage_may_name_a_missing_grid():
    config = with_(lambda c: c.update(analyses={"units": {"grid": "nope", "enabled": False}}))
    check_semantics(filled(config), {"lr"})


# ------------------------------------------------------------------- issue 16: bad input stops


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["grids"]["main"].update(train={"lr": "fast"}), "grids.main.train.lr: 'fast'"),
        (
            lambda c: c["grids"]["main"].update(train={"lr": -5}),
            "config key grids.main.train.lr: -5 is less than or equal to the minimum of 0",
        ),
        (
            lambda c: c["grids"]["main"].update(train={"optimizer": "adamw"}),
            "config key grids.main.train.optimizer",
        ),
        (
            lambda c: c["grids"]["main"].update(train={"lrr": 1}),
            "unknown config key grids.main.train.lrr",
        ),
        (
            lambda c: c.update(train={"lr": float("inf")}),
            "config key train.lr: inf is not a finite number",
        ),
        (
            lambda c: c["grids"]["main"].update(weight_decay=[0.0, float("nan")]),
            r"config key grids.main.weight_decay\[1\]: nan is not a finite number",
        ),
    ],
)
def test_grid_train_overrides_and_non_finite_numbers_name_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        check_config(with_(change))


def test_a_grid_may_override_train_settings_without_repeating_the_defaults():
    check_config(with_(lambda c: c["grids"]["main"].update(train={"max_epochs": 1})))


def test_duplicate_yaml_keys_are_named_with_their_lines(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "grids:\n  main:\n    dataset: digits\n    width: [16]\n    depth: [1]\n"
        "    width: [32]\ntrain:\n  lr: 0.1\n"
    )
    with pytest.raises(ConfigError) as error:
        check_duplicate_keys([path])
    assert str(error.value) == (
        f"{path}: config key grids.main.width appears twice (lines 4 and 6); YAML would "
        "silently keep only the last"
    )
    path.write_text("grids:\n  main: {width: [16]}\n  other: {width: [16]}\n")
    check_duplicate_keys([path])  # the same key under two parents is fine


def test_a_train_size_above_the_datasets_training_split_is_named():
    def grids(train_size, dataset="digits"):
        grid = {"dataset": dataset, "arch": ["mlp"], "width": [16], "depth": [1]}
        return grids_from_config({"grids": {"small": {**grid, "train_size": train_size}}})

    check_train_sizes(grids([1437]))  # the whole training split of digits (80 % of 1797)
    with pytest.raises(ConfigError) as error:
        check_train_sizes(grids([100, 5000]))
    assert str(error.value) == (
        "config key grids.small.train_size: 5000 is more than the 1437 training examples of digits"
    )
    with pytest.raises(ConfigError, match="60000 training examples of mnist"):
        check_train_sizes(grids([60001], "mnist"))
    synthetic = {"n_train": 300}
    with pytest.raises(ConfigError, match="300 training examples of synthetic"):
        check_train_sizes(grids([301], "synthetic"), synthetic)
