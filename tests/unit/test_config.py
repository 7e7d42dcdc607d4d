import copy

import pytest
import yaml

from widthlab.config import ConfigError, check_config, check_semantics

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
