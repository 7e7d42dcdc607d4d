"""The cost model against hand computations, the study configs' stated GPU-hours, and its
ceilings; the cluster section as resources."""

import math
import re
from pathlib import Path

import pytest
import yaml

from widthlab import cost, cost_stages
from widthlab.cluster import Cluster
from widthlab.config import load_schema
from widthlab.grid import DataSpec, ModelSpec, grids_from_config
from widthlab.sizes import architecture

REPO = Path(__file__).resolve().parents[2]
ROW = cost.Device("test", 1e12, 1e12, 1e11, 1e-3, 30.0, 1000.0, 500.0, 80.0)
GPU = cost.CostSettings(ROW, gpu=True)
TRAIN = {"batch_size": 100, "max_epochs": 10, "checkpoint_every_steps": 0}


def test_a_launch_bound_model_costs_its_layers_per_step():
    # digits: 1437 training and 360 test examples; an MLP of depth 1 has 2 weight layers
    spec = ModelSpec(DataSpec("digits"), "mlp", 16, 1)
    steps, evaluation_batches = math.ceil(1437 / 100), 2 + 1  # eval batches of 1024
    operations = 2 * 2  # two linear layers, each with its ReLU (the head's counted alike)
    epoch = steps * operations * 1e-3 + evaluation_batches * operations * 1e-3 / 3
    checkpoint = 2 * 2 * 4 * (64 * 16 + 16 + 16 * 10 + 10) / cost.WRITE_BYTES_PER_S
    estimate = cost.train_cost([spec], TRAIN, GPU)
    assert estimate.seconds == pytest.approx(30 + 10 * (epoch + checkpoint))


def test_a_compute_bound_model_costs_three_forwards_per_training_example():
    row = cost.Device("test", 1e9, 1e9, 1e9, 0.0, 0.0, 0.0, 0.0, None)
    spec = ModelSpec(DataSpec("cifar10"), "mlp", 1024, 2, train_size=1000)
    macs = architecture(spec).macs
    per_epoch = (3 * macs * 100 * 10 + macs * (1000 + 10000)) / 1e9
    checkpoint = 2 * 2 * 4 * architecture(spec).parameters / cost.WRITE_BYTES_PER_S
    estimate = cost.train_cost([spec], TRAIN, cost.CostSettings(row, gpu=False))
    assert estimate.seconds == pytest.approx(10 * (per_epoch + checkpoint))


def test_a_pack_launches_once_and_adds_its_arithmetic():
    specs = [ModelSpec(DataSpec("digits"), "mlp", 16, 1, seed=s) for s in range(8)]
    one = cost.train_cost(specs[:1], TRAIN, GPU)
    pack = cost.train_cost(specs, TRAIN, GPU)
    assert pack.seconds == pytest.approx(one.seconds, rel=0.05)  # launch-bound: as one model
    assert pack.gpu_mb > one.gpu_mb


def test_gpu_memory_holds_data_weights_and_batch_activations():
    spec = ModelSpec(DataSpec("cifar10"), "resnet", 8, 110)
    arch = architecture(spec)
    estimate = cost.train_cost([spec], {"batch_size": 128}, GPU)
    data = (50000 + 10000) * 3072 * 4 / 1e6
    activations = 128 * arch.activations * 3 * 4 / 1e6
    assert estimate.gpu_mb > 500 + data + 16 * arch.parameters / 1e6 + activations
    assert estimate.host_mb < estimate.gpu_mb  # the activations live on the GPU, not the host


def test_requests_scale_by_safety_and_double_per_retry():
    estimate = cost.Estimate(600.0, 1000.0, 2000.0)
    assert cost.request(estimate, 1, 1.5) == cost.Request(15, 1500, 3000)
    assert cost.request(estimate, 3, 1.5) == cost.Request(60, 6000, 3000)
    assert cost.request(cost.Estimate(1.0, 1.0), 1, 1.0).runtime == 1


def stated_gpu_hours(text: str) -> float | None:
    """The header's training estimate: '≈ N GPU-hours (of training)'."""
    match = re.search(r"≈ ([0-9.]+) GPU-hours?(?: of training)?", text)
    return float(match[1]) if match else None


def config_with_defaults(path: Path) -> dict:
    """The config as the workflow sees it, defaults filled from the schema."""
    from snakemake.utils import validate

    config = yaml.safe_load(path.read_text())
    validate(config, str(REPO / "schemas" / "config.schema.yaml"))
    return config


GPU_CONFIGS = [
    p
    for p in sorted((REPO / "configs").glob("*.yaml"))
    if "device: cuda" in p.read_text() and "bottleneck" not in p.name
]


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=[p.stem for p in GPU_CONFIGS])
def test_training_hours_agree_with_the_configs_stated_gpu_hours(path):
    """The headers scale a measured ResNet-38 epoch by depth and training-set size; the cost
    model adds per-epoch evaluation, checkpoints and start-up, so it may say up to 1.5× more,
    never less than 0.8× (a device row or step count off by 2× fails)."""
    stated = stated_gpu_hours(path.read_text())
    assert stated is not None, f"{path.name} states no GPU-hours"
    config = config_with_defaults(path)
    s = cost.CostSettings.from_config(config)
    hours = 0.0
    for name, grid in grids_from_config(config).items():
        train = {**config["train"], **config["grids"][name].get("train", {})}
        hours += sum(cost.train_cost([spec], train, s).seconds for spec in grid.specs()) / 3600
    assert 0.8 * stated <= hours <= 1.5 * stated, f"{hours:.1f} h vs stated {stated}"


def test_bottleneck_study_hours_agree_with_its_config():
    from widthlab.bottleneck import jobs as bottleneck_jobs

    path = REPO / "configs" / "bottleneck_gpu.yaml"
    stated = float(re.search(r"≈ ([0-9.]+) GPU-hour", path.read_text())[1])
    config = config_with_defaults(path)
    section, s = config["analyses"]["bottleneck"], cost.CostSettings.from_config(config)
    seconds = cost_stages.bottleneck_linear_cost(
        bottleneck_jobs.linear_settings(section), s
    ).seconds
    for regime in section["regimes"]:
        for job in bottleneck_jobs.job_names(section, regime):
            settings = bottleneck_jobs.job_settings(section, regime, job)
            seconds += cost_stages.bottleneck_study_cost(settings, job, s).seconds
    assert 0.5 * stated <= seconds / 3600 <= 2 * stated


def ceilings(mem_gb=256.0, hours=168.0, gpu_gb=80.0):
    return cost.Ceilings(mem_gb, hours, gpu_gb, 1.5)


def test_a_huge_width_is_named_by_its_grid_key():
    axes = {"width": [16, 10**9], "depth": [2]}
    models = [(ModelSpec(DataSpec("cifar10"), "mlp", w, 2), {}) for w in axes["width"]]
    problem = cost.oversized_model("main", axes, models, GPU, ceilings())
    assert problem.startswith("config key grids.main.width: model cifar10-mlp-w1000000000-d2")
    assert "of host memory, above cluster.max_job_mem_gb (256)" in problem


def test_a_huge_depth_is_named_by_its_grid_key():
    axes = {"width": [16], "depth": [2, 10**6]}
    models = [(ModelSpec(DataSpec("digits"), "mlp", 16, d), {}) for d in axes["depth"]]
    cpu = cost.CostSettings(cost.DEVICES["cpu"], gpu=False)
    problem = cost.oversized_model("deep", axes, models, cpu, ceilings())
    assert problem.startswith("config key grids.deep.depth: model digits-mlp-w16-d1000000")
    assert "above cluster.max_job_hours (168)" in problem


def test_models_that_fit_pass_and_each_ceiling_counts():
    spec = ModelSpec(DataSpec("cifar10"), "resnet", 8, 110)
    h100 = cost.CostSettings(cost.DEVICES["h100"], gpu=True)
    assert cost.oversized_model("main", {}, [(spec, {})], h100, ceilings()) is None
    for tight, key in [
        (ceilings(mem_gb=1), "cluster.max_job_mem_gb (1)"),
        (ceilings(hours=1), "cluster.max_job_hours (1)"),
        (ceilings(gpu_gb=8), "cluster.gpu_mem_gb (8)"),
    ]:
        problem = cost.oversized_model("main", {}, [(spec, {})], h100, tight)
        assert problem.startswith("config key grids.main: model") and key in problem


def test_cluster_section_places_gpu_and_cpu_jobs():
    cluster = Cluster.from_config(
        {"partition": "cpu", "gpu_partition": "gpu", "account": "lab", "gpu_model": "h100"}
    )
    estimate = cost.Estimate(3600.0, 2000.0, 10000.0)
    gpu = cluster.resources(estimate, True, "train", signal="USR1")
    assert {k: gpu[k] for k in ("slurm_partition", "slurm_account", "gpu_model", "gpu")} == {
        "slurm_partition": "gpu",
        "slurm_account": "lab",
        "gpu_model": "h100",
        "gpu": 1,
    }
    assert gpu["slurm_extra"](None, 1) == "--signal=USR1@120"
    short = cluster.resources(cost.Estimate(20.0, 100.0), False, "train", signal="USR1")
    assert short["runtime"](None, 1) == 5  # cluster.min_job_minutes
    assert short["slurm_extra"](None, 1) == "--signal=USR1@75"  # a quarter of the limit
    assert (
        Cluster.from_config({"min_job_minutes": 1}).resources(
            cost.Estimate(20.0, 100.0), False, "train", signal="USR1"
        )["slurm_extra"](None, 1)
        == "--signal=USR1@15"
    )
    assert gpu["runtime"](None, 1) == 90 and gpu["runtime"](None, 2) == 180
    assert gpu["mem_mb"](None, 3) == 12000 and gpu["gpu_mem_mb"](None) == 15000
    cpu = cluster.resources(estimate, False, "dataset")
    assert cpu["slurm_partition"] == "cpu" and "gpu" not in cpu and "gpu_model" not in cpu
    assert cluster.job_threads(True) == 4 and cluster.job_threads(False) == 1


def test_cluster_resources_refuse_a_job_above_the_ceiling():
    cluster = Cluster.from_config({"max_job_mem_gb": 10})
    with pytest.raises(ValueError, match="^job activations_3 needs 15 GB of host memory"):
        cluster.resources(cost.Estimate(60.0, 10000.0), True, "activations_3")
    per_job = cluster.resources(lambda w: cost.Estimate(60.0, 10000.0), False, "train")
    with pytest.raises(ValueError, match="cluster.max_job_mem_gb"):
        per_job["mem_mb"](["m1"], 1)


def test_cluster_defaults_are_the_schemas():
    section = load_schema()["properties"]["cluster"]["properties"]
    defaults = {key: spec["default"] for key, spec in section.items()}
    cluster = Cluster.from_config(defaults)
    assert cluster == Cluster()
    assert (
        cost.CostSettings.from_config({"device": "cuda", "cluster": defaults}).device.name
        in (section["throughput"]["enum"])
    )


@pytest.mark.parametrize(
    "estimate",
    [
        lambda s: cost.activations_cost([ModelSpec(DataSpec("cifar10"), "wrn", 2, 16)], s),
        lambda s: cost_stages.similarity_models_cost(
            [ModelSpec(DataSpec("digits"), "mlp", 64, 4)], s
        ),
        lambda s: cost_stages.units_cost([ModelSpec(DataSpec("cifar10"), "resnet", 1, 20)], s),
        lambda s: cost_stages.clones_cost([ModelSpec(DataSpec("cifar10"), "wrn", 1, 10)], s),
        lambda s: cost_stages.transfer_cost([ModelSpec(DataSpec("digits"), "mlp", 32, 2)], s),
        lambda s: cost_stages.atlas_cost([ModelSpec(DataSpec("digits"), "mlp", 32, 2)], s),
        lambda s: cost_stages.joint_cost([ModelSpec(DataSpec("digits"), "mlp", 32, 2)], s),
        lambda s: cost_stages.dataset_cost("cifar100", s),
        lambda s: cost_stages.summary_cost(100, s),
    ],
)
def test_every_job_costs_time_and_memory_that_grow_with_its_models(estimate):
    small = estimate(GPU)
    assert small.seconds > 0 and small.host_mb > 0
    cpu = estimate(cost.CostSettings(cost.DEVICES["cpu"], gpu=False))
    assert cpu.gpu_mb == 0


def test_a_job_over_several_models_adds_time_and_keeps_the_peak_memory():
    small = ModelSpec(DataSpec("cifar10"), "resnet", 1, 20)
    big = ModelSpec(DataSpec("cifar10"), "resnet", 4, 20)
    alone = [cost.activations_cost([m], GPU) for m in (small, big)]
    both = cost.activations_cost([small, big], GPU)
    assert both.seconds == pytest.approx(sum(a.seconds for a in alone) - ROW.startup_s)
    assert both.host_mb == max(a.host_mb for a in alone)


def test_a_cut_test_split_is_what_the_analyses_cost():
    spec = ModelSpec(DataSpec("fashion_mnist"), "mlp", 256, 2)
    whole = cost.CostSettings.from_config({})
    cut = cost.CostSettings.from_config({"data": {"test_size": 2000}})
    assert whole.shape(spec).n_test == 10_000 and cut.shape(spec).n_test == 2000
    assert cut.shape(spec).n_train == 60_000  # the training split is not cut
    # a class subset keeps its share first (5,000 test images), then the cut applies
    assert cut.shape_of(DataSpec("fashion_mnist", (5, 6, 7, 8, 9))).n_test == 2000
    larger = cost.CostSettings.from_config({"data": {"test_size": 20_000}})
    assert larger.shape(spec).n_test == 10_000
    assert (
        cost_stages.units_cost([spec], cut).seconds < cost_stages.units_cost([spec], whole).seconds
    )


def test_clones_and_joint_cost_the_training_examples_a_model_saw():
    """A model trained on 5,000 of Fashion-MNIST's 60,000 images is measured on those 5,000: its
    clones and joint work scale with them (the analyses' per-example work is linear in n)."""
    settings = cost.CostSettings(cost.DEVICES["cpu"], gpu=False)
    whole = ModelSpec(DataSpec("fashion_mnist"), "mlp", 256, 2)
    subset = ModelSpec(DataSpec("fashion_mnist"), "mlp", 256, 2, train_size=5000)
    for stage in (cost_stages.clones_cost, cost_stages.joint_cost):
        startup = stage([], settings).seconds
        seen = stage([subset], settings).seconds - startup
        every = stage([whole], settings).seconds - startup
        # n = 5,000 + 10,000 test images against 60,000 + 10,000
        assert seen < every * 0.5, stage.__name__
