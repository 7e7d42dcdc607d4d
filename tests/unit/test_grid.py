import pytest

from widthlab.grid import DataSpec, Grid, ModelSpec, Paths, format_float, parse_model_id


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (5e-4, "5e-4"), (1e-5, "1e-5"), (2.5e-4, "2.5e-4"), (0.1, "0.1"), (1.0, "1")],
)
def test_format_float_is_short_and_lossless(value, text):
    assert format_float(value) == text
    assert float(text) == value


def test_model_id_reads_as_documented_and_round_trips():
    spec = ModelSpec(DataSpec("digits"), "mlp", 128, 4, None, 5e-4, 0)
    assert spec.id == "digits-mlp-w128-d4-nall-wd5e-4-s0"
    assert parse_model_id(spec.id) == spec


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec(DataSpec("cifar100", (11, 2, 35), 0.25), "bmlp", 512, 3, 200, 0.0, 3, 8),
        ModelSpec(DataSpec("digits", (5, 6, 7, 8, 9)), "resnet", 4, 20, 100, 1e-4, 12),
        ModelSpec(DataSpec("fashion_mnist"), "cnn", 32, 4, None, 0.0, 0),
        ModelSpec(DataSpec("digits"), "mlp", 64, 2, 300, 5e-4, 1, dropout=0.25, init="xavier"),
        ModelSpec(DataSpec("digits", (0, 1)), "mlp", 8, 1, variant="early2"),
    ],
)
def test_every_axis_survives_the_round_trip(spec):
    assert parse_model_id(spec.id) == spec


@pytest.mark.parametrize("bad", ["digits-mlp-w0x-d4-nall-wd0-s0", "mlp-w1-d1", "digits-foo"])
def test_parse_rejects_non_ids(bad):
    with pytest.raises(ValueError, match="not a"):
        parse_model_id(bad)


def test_invalid_specs_name_the_field():
    with pytest.raises(ValueError, match="width"):
        ModelSpec(DataSpec("digits"), "mlp", 0, 2)
    with pytest.raises(ValueError, match="bottleneck"):
        ModelSpec(DataSpec("digits"), "mlp", 8, 2, bottleneck=4)
    with pytest.raises(ValueError, match="dataset"):
        DataSpec("imagenet")


def test_grid_is_the_product_of_its_axes_without_duplicates():
    grid = Grid.from_config(
        "g",
        {
            "dataset": "digits",
            "arch": ["mlp", "bmlp"],
            "width": [16, 32],
            "depth": [2],
            "seed": [0, 1],
            "bottleneck": [4, 8],
            "train_size": ["all", 100],
        },
    )
    specs = grid.specs()
    # mlp ignores the bottleneck axis: 2 widths × 2 seeds × 2 sizes; bmlp uses it: × 2 more
    assert len(specs) == 2 * 2 * 2 + 2 * 2 * 2 * 2
    assert len({s.id for s in specs}) == len(specs)


def test_paths_are_built_under_the_results_root():
    paths = Paths("out")
    mid = "digits-mlp-w16-d2-nall-wd0-s0"
    assert paths.model(mid) == f"out/models/{mid}/model.pt"
    assert paths.layers(mid) == f"out/activations/{mid}/layers.npz"
    assert paths.table("units", mid) == f"out/units/{mid}.parquet"


def test_optional_axes_appear_in_the_id_only_when_set():
    spec = ModelSpec(
        DataSpec("digits"), "mlp", 32, 2, 200, 5e-4, 1, None, 0.5, "orthogonal", "early"
    )
    assert spec.id == "digits-mlp-w32-d2-n200-wd5e-4-do0.5-iorthogonal-s1-vearly"
    assert ModelSpec(DataSpec("digits"), "mlp", 32, 2).id == "digits-mlp-w32-d2-nall-wd0-s0"


def test_bad_optional_axes_name_the_field():
    with pytest.raises(ValueError, match="dropout is only built into"):
        ModelSpec(DataSpec("cifar10"), "resnet", 1, 20, dropout=0.1)
    with pytest.raises(ValueError, match="init"):
        ModelSpec(DataSpec("digits"), "mlp", 8, 2, init="lecun")
    with pytest.raises(ValueError, match="variant"):
        ModelSpec(DataSpec("digits"), "mlp", 8, 2, variant="Early-1")
    with pytest.raises(ValueError, match="grids.g: dropout"):
        Grid.from_config(
            "g",
            {
                "dataset": "cifar10",
                "arch": ["resnet"],
                "width": [1],
                "depth": [20],
                "dropout": [0.2],
            },
        )


def test_a_grid_variant_tags_every_model():
    grid = Grid.from_config(
        "early", {"dataset": "digits", "width": [16, 32], "depth": [2], "variant": "early"}
    )
    assert [s.id for s in grid.specs()] == [
        "digits-mlp-w16-d2-nall-wd0-s0-vearly",
        "digits-mlp-w32-d2-nall-wd0-s0-vearly",
    ]
