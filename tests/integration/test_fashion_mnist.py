"""A slice of the medium Fashion-MNIST study on the real IDX files (Debian's
dataset-fashion-mnist): a few models, two epochs, every analysis stage but Littwin's (its own
nets, covered on digits), through the Snakemake CLI, on a balanced 1,000-image prefix of the test
split as the medium study cuts it to 2,000; about a minute on 2 quiet cores."""

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, copy_workflow, snakemake

pytestmark = pytest.mark.integration

MEDIUM = yaml.safe_load((REPO / "configs" / "fashion_mnist_medium.yaml").read_text())
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
MISSING = [f for f in FILES if not (Path(MEDIUM["data_root"]) / f).is_file()]


def sliced() -> dict:
    """The medium config with each grid cut to a few models and two epochs."""
    config = yaml.safe_load(yaml.safe_dump(MEDIUM))
    config.update(results="results", device="cpu")
    config["data"].update(probe_size=300, test_size=1000)  # units and clones scale with it
    config["train"].update(max_epochs=2, until_zero_train_error=False)
    grids = config["grids"]
    for name in ("main", "cnn", "transfer"):
        grids[name].update(train_size=[1000], seed=[0])
    grids["main"]["width"] = [16, 32]
    grids["cnn"]["width"] = [8]
    grids["transfer"]["width"] = [16]
    config["grids"] = {name: grids[name] for name in ("main", "cnn", "transfer")}
    config["analyses"].update(
        similarity={"grid": ["main", "cnn"]},
        # the ablation: one order, three fractions, MLPs only
        units={"grid": "main", "orders": 1, "fractions": 3},
        transfer={
            "grid": "transfer",
            "target_classes": [5, 6, 7, 8, 9],
            "shots": [10, "all"],
            "atlas": {"images": "source"},  # the 300 probe images, not t-SNE of 5,000
        },
        bottleneck={"enabled": False},
    )
    config["analyses"]["transfer"]["max_examples"] = 1000
    return config


@pytest.mark.skipif(
    bool(MISSING),
    reason=f"Fashion-MNIST not installed under {MEDIUM['data_root']} "
    "(apt-get install dataset-fashion-mnist)",
)
def test_a_slice_of_the_medium_study_runs_on_the_real_files(tmp_path):
    workdir = copy_workflow(tmp_path, sliced())
    snakemake(workdir)
    results = workdir / "results"
    with np.load(results / "data" / "fashion_mnist.npz") as data:
        assert data["x_train"].shape[1:] == (1, 28, 28)
        # the test split's prefix is balanced: 100 images of each of the ten classes
        assert sorted(Counter(data["y_test"].tolist()).items()) == [
            (label, 100) for label in range(10)
        ]
    metrics = pd.read_parquet(results / "summary" / "training.parquet")
    # two epochs on 1,000 images: well above chance (0.1 for ten classes, 0.2 for five)
    assert len(metrics) == 4 and (metrics["test_acc"] > 0.25).all()
    # the clones stage measures training error on the 1,000 images each model saw, not on the
    # split's unseen rest: the full layer's trained head scores the training stage's accuracy
    clones = metrics[
        metrics["model"].isin([p.stem for p in (results / "clones").glob("*.parquet")])
    ]
    assert len(clones) >= 2  # the main grid's two widths at least
    for model, train_acc in zip(clones["model"], clones["train_acc"], strict=True):
        table = pd.read_parquet(results / "clones" / f"{model}.parquet")
        full = table.query(
            "chunk_size == layer_width and metric == 'accuracy' and method == 'head' "
            "and split == 'train'"
        )
        assert full["mean"].item() == pytest.approx(train_acc, abs=0.002), model
    headline = pd.read_parquet(results / "summary" / "headline.parquet")
    stages = set(headline["stage"])
    assert {"similarity", "transfer", "units", "clones", "joint"} <= stages
    assert (headline.loc[headline["n"] < 3, "holds"] == "n/a").all()  # one seed decides nothing
