# The one place where the config becomes model ids and every path of the workflow.
import json
import re

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from widthlab import cost, cost_stages
from widthlab.cluster import Cluster
from widthlab.config import (
    ConfigError,
    check_config,
    check_duplicate_keys,
    check_semantics,
    check_train_sizes,
)
from widthlab.data.sources import expected_raw_files, missing_raw_files
from widthlab.grid import (
    DATA_ID_PATTERN,
    MODEL_ID_PATTERN,
    Paths,
    grids_from_config,
    parse_data_id,
    parse_model_id,
    unnamed,
)
from widthlab.model_jobs import split_into_jobs
from widthlab.recipe import recipe_key
from widthlab.training.packs import plan_packs

try:
    check_duplicate_keys(workflow.configfiles)
    check_config(config)
    validate(config, "../schemas/config.schema.yaml")
    check_semantics(config, set(config["train"]))
    GRIDS = grids_from_config(config)
    check_train_sizes(GRIDS, config["data"].get("synthetic"))
except (ConfigError, ValueError) as error:
    raise WorkflowError(f"invalid configuration: {error}") from None


PATHS = Paths(config["results"])
# --sdm conda: a CUDA build of PyTorch where the config uses a GPU, the CPU build otherwise
CONDA_ENV = (
    "../envs/widthlab.yaml"
    if config["device"] != "cpu"
    else "../envs/widthlab-cpu.yaml"
)


def grid_train_settings(name):
    return {**config["train"], **config["grids"][name].get("train", {})}


# model id → name of the grid that holds it (the first one, when grids overlap). Grids may
# share models only when they would train them the same way.
MODEL_GRID = {}
for _name, _grid in GRIDS.items():
    for _spec in _grid.specs():
        _first = MODEL_GRID.setdefault(_spec.id, _name)
        if grid_train_settings(_first) != grid_train_settings(_name):
            raise WorkflowError(
                f"invalid configuration: grids.{_first} and grids.{_name} both hold model "
                f"{_spec.id} but train it differently; give one of them a `variant` tag"
            )


wildcard_constraints:
    model=unnamed(MODEL_ID_PATTERN),
    data=unnamed(DATA_ID_PATTERN),


def model_ids():
    """Model ids of every grid, in config order, each once."""
    return list(MODEL_GRID)


def spec_of(wildcards):
    return parse_model_id(wildcards.model)


def dataset_of_model(mid):
    return PATHS.dataset(parse_model_id(mid).data.id)


def dataset_of(wildcards):
    return dataset_of_model(wildcards.model)


def train_settings(wildcards):
    """This model's training settings only, so that editing another grid reruns nothing here."""
    return canonical(grid_train_settings(MODEL_GRID[wildcards.model]))


def recipes(models):
    """{model id: its training recipe} (widthlab.recipe): summaries refuse to contrast models
    whose recipes differ in anything but the compared factor."""
    return {m: recipe_key(grid_train_settings(MODEL_GRID[m])) for m in models}


def canonical(settings):
    """Settings with sorted keys: Snakemake compares params as text, so key order must not matter."""
    return json.loads(json.dumps(settings, sort_keys=True))


def dataset_settings(wildcards):
    settings = {
        "probe_size": config["data"]["probe_size"],
        "test_size": config["data"]["test_size"],
        "seed": config["data"]["seed"],
    }
    if wildcards.data.startswith("synthetic"):
        settings["synthetic"] = config["data"]["synthetic"]
    return canonical(settings)


def uses_gpu():
    return config["device"] != "cpu"


# Every job's threads, placement (cluster.*), run time and memory (widthlab.cost, widthlab.cluster):
# rules say `threads: GPU_THREADS` (jobs that use the device) or `CPU_THREADS`, and
# `resources: **device_job(estimate, name)` or `**host_job(estimate, name)`, where the estimate is
# an Estimate or a function of the job's wildcards.
CLUSTER = Cluster.from_config(config["cluster"])
GPU_THREADS = CLUSTER.job_threads(uses_gpu())
CPU_THREADS = CLUSTER.threads
COSTS = cost.CostSettings.from_config(config, threads=GPU_THREADS)


def device_job(estimate, job, **extra):
    """Resources of a job that runs on the configured device (a GPU unless device is cpu)."""
    return _resources(estimate, uses_gpu(), job, **extra)


def host_job(estimate, job):
    """Resources of a job that runs on CPUs only (datasets, summaries)."""
    return _resources(estimate, False, job)


def _resources(estimate, gpu, job, **extra):
    try:
        return CLUSTER.resources(estimate, gpu, job, **extra)
    except ValueError as error:
        raise WorkflowError(f"invalid configuration: {error}") from None


def specs_of(ids):
    return [parse_model_id(m) for m in ids]


def train_estimate(ids):
    """One training job of these models (a pack, or one model) with their grid's settings."""
    return cost.train_cost(
        specs_of(ids), grid_train_settings(MODEL_GRID[ids[0]]), COSTS
    )


def summary_job(models):
    """Resources of a summary over ``models`` (one table each, figures)."""
    return host_job(cost_stages.summary_cost(len(models), COSTS), "summary")


# A model whose training job would not fit cluster.max_job_mem_gb, max_job_hours or the GPU
# stops the run here, naming the grid key (e.g. a width of 10^9), before any job starts.
for _name, _grid in GRIDS.items():
    _problem = cost.oversized_model(
        _name,
        _grid.axes,
        [(s, grid_train_settings(_name)) for s in _grid.specs()],
        COSTS,
        CLUSTER.ceilings,
    )
    if _problem:
        raise WorkflowError(f"invalid configuration: {_problem}")


# Small MLPs that train the same way train together, one job per pack (widthlab.training.packs);
# every other model has its own `train` job.
TRAIN_PACKS = plan_packs(
    [(parse_model_id(m), grid_train_settings(MODEL_GRID[m])) for m in MODEL_GRID],
    **{k: v for k, v in config["train_packs"].items() if k != "cpu_max_macs"},
    max_macs=(
        config["train_packs"]["cpu_max_macs"] if config["device"] == "cpu" else None
    ),
)


def pack_rule_name(pack):
    return f"train_{pack.name.replace('-', '_')}"


def model_jobs(stage, models):
    """{job: model ids} of a stage whose per-model work runs in `jobs` jobs (widthlab.model_jobs):
    `activations.jobs`, or `analyses.<stage>.jobs`."""
    key = "activations.jobs" if stage == "activations" else f"analyses.{stage}.jobs"
    section = config["activations"] if stage == "activations" else analysis(stage)
    try:
        return split_into_jobs(models, section["jobs"], key)
    except ValueError as error:
        raise WorkflowError(f"invalid configuration: {error}") from None


def analysis(stage):
    """The config section of one analysis stage (defaults filled by the schema)."""
    return config["analyses"][stage]


def analysis_grids(stage):
    """The grid names an analysis studies (`analyses.<stage>.grid`: a name or a list)."""
    grids = analysis(stage).get("grid", "main")
    return [grids] if isinstance(grids, str) else list(grids)


def analysis_models(stage):
    """Model ids of the grids an analysis studies, in their order, each once. (A disabled stage
    may name grids this config lacks; an enabled one was checked at start-up.)"""
    grids = [name for name in analysis_grids(stage) if name in GRIDS]
    return list(
        dict.fromkeys(spec.id for name in grids for spec in GRIDS[name].specs())
    )


# Each stage registers its final targets here; `rule all` and the report collect them.
# A stage whose `analyses.<stage>.enabled` is false stays out of `rule all` (its rules can
# still be asked for by name or with --until).
TARGETS = {}


def stages_run(stages):
    """Those of ``stages`` that registered targets and are enabled, in the given order."""
    return [s for s in stages if s in TARGETS and enabled(s)]


def all_targets():
    return [path for stage in stages_run(TARGETS) for path in TARGETS[stage]]


def enabled(stage):
    return config["analyses"].get(stage, {}).get("enabled", True)


def joint_reads(stage):
    """Models outside ``stage``'s own grids whose per-model ``stage`` tables the cross-paper
    analysis reads: the units of the similarity stage's deep models (blocks need 3 layers), the
    clones of the transfer stage's models."""
    if not enabled("report"):
        return []
    if stage == "units" and enabled("similarity") and enabled("units"):
        return [
            m for m in analysis_models("similarity") if parse_model_id(m).depth >= 3
        ]
    if stage == "clones" and enabled("transfer") and enabled("clones"):
        # the fully trained source models; those taken at a declared source accuracy are for
        # the transfer stage's matched rows only
        primary = analysis_grids("transfer")[0]
        return [m for m in analysis_models("transfer") if MODEL_GRID[m] == primary]
    return []


def stage_models(stage):
    """Models whose per-model ``stage`` tables this run makes: its grids', and the joint's."""
    return list(dict.fromkeys(analysis_models(stage) + joint_reads(stage)))


def joint_inputs(wildcards):
    """The cross-paper analysis reads whichever pairs of stages this run has."""
    inputs = {"prune_clone": PATHS.table("joint", "prune_vs_clone")}
    if joint_reads("units"):
        inputs["blocks"] = PATHS.summary("similarity_blocks")
        inputs["layers"] = PATHS.summary("similarity_layers")
        inputs["units"] = [PATHS.table("units", m) for m in joint_reads("units")]
    if joint_reads("clones"):
        inputs["gaps"] = PATHS.summary("transfer_gaps")
        inputs["clones"] = [PATHS.table("clones", m) for m in joint_reads("clones")]
    return inputs


def run_datasets():
    """The datasets this run reads: every grid's, the transfer target's, the bottleneck study's."""
    names = {grid.data.name for grid in GRIDS.values()}
    if enabled("transfer") and analysis("transfer").get("target_dataset"):
        names.add(analysis("transfer")["target_dataset"])
    if enabled("bottleneck"):
        names.add(parse_data_id(analysis("bottleneck")["dataset"]).name)
    return sorted(names)


def raw_inputs(wildcards):
    """The raw files the dataset rule reads (none for digits and synthetic), so that a changed
    raw file rebuilds the dataset."""
    return expected_raw_files(parse_data_id(wildcards.data).name, config["data_root"])


# Missing raw data stops the run here, naming the files and how to get them (nothing is ever
# downloaded), rather than as Snakemake's missing-input error of the dataset rule.
_missing = [
    m for n in run_datasets() if (m := missing_raw_files(n, config["data_root"]))
]
if _missing:
    raise WorkflowError(f"missing raw data: {'; '.join(_missing)}")
