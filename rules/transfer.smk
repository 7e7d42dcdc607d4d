# transfer stage (Gilboa & Gur-Ari 2019, wider networks learn better features): per model,
# last-layer fine-tuning on the target classes (trained vs its own initialisation), input
# reconstruction and read-outs per layer; an activation atlas per model of the atlas seeds;
# across the grid, accuracy vs width at matched source accuracy and the headline.
from widthlab.transfer import jobs as transfer_jobs

TRANSFER_CATEGORY = "2. Gilboa & Gur-Ari 2019: wider networks learn better features"
TRANSFER = analysis("transfer")
# the analyses.transfer keys a per-model job depends on (not grid, enabled or atlas)
TRANSFER_MODEL_SETTINGS = canonical(transfer_jobs.model_settings(TRANSFER))
# the atlas reads the model for the target images, the random control or feature visualisation
TRANSFER_ATLAS_TARGET = TRANSFER["atlas"]["images"] == "target"
TRANSFER_ATLAS_MODEL = TRANSFER_ATLAS_TARGET or any(
    TRANSFER["atlas"][k] for k in ("random_control", "feature_visualisation")
)

# the target task's dataset file of a model
transfer_target_of = lambda m: PATHS.dataset(transfer_jobs.target_data_of(m, TRANSFER))
TRANSFER_ATLAS_MODELS = transfer_jobs.atlas_models(
    analysis_models("transfer"),
    TRANSFER["atlas"]["seeds"],
    {
        m: grid_train_settings(MODEL_GRID[m]).get("stop_at_test_acc")
        for m in analysis_models("transfer")
    },
)


# Per-model fine-tuning and read-outs, spread over `analyses.transfer.jobs` jobs
# (widthlab.model_jobs): interpreter start-up dominates a digits model's work.
for _job, _models in model_jobs("transfer", analysis_models("transfer")).items():

    rule:
        name:
            f"transfer_model_{_job}"
        input:
            model=[PATHS.model(m) for m in _models],
            data=list(dict.fromkeys(dataset_of_model(m) for m in _models)),
            target=list(dict.fromkeys(transfer_target_of(m) for m in _models)),
        output:
            [PATHS.table("transfer", m) for m in _models],
        log:
            PATHS.log("transfer_model", str(_job)),
        benchmark:
            PATHS.benchmark("transfer_model", str(_job))
        conda:
            CONDA_ENV
        threads: GPU_THREADS
        resources:
            **device_job(
                cost_stages.transfer_cost(specs_of(_models), COSTS),
                f"transfer_model_{_job}",
            ),
        params:
            settings=TRANSFER_MODEL_SETTINGS,
            device=config["device"],
        script:
            "../workflow_scripts/transfer_model.py"


# Atlases of the atlas seeds' models, spread over the same number of jobs.
for _job, _models in model_jobs("transfer", TRANSFER_ATLAS_MODELS).items():

    rule:
        name:
            f"transfer_atlas_{_job}"
        input:
            layers=[] if TRANSFER_ATLAS_TARGET else [PATHS.layers(m) for m in _models],
            data=list(dict.fromkeys(dataset_of_model(m) for m in _models)),
            model=[PATHS.model(m) for m in _models] if TRANSFER_ATLAS_MODEL else [],
            target=(
                list(dict.fromkeys(transfer_target_of(m) for m in _models))
                if TRANSFER_ATLAS_TARGET
                else []
            ),
        output:
            [PATHS.table("transfer_atlas", m) for m in _models],
        log:
            PATHS.log("transfer_atlas", str(_job)),
        benchmark:
            PATHS.benchmark("transfer_atlas", str(_job))
        conda:
            CONDA_ENV
        threads: GPU_THREADS if TRANSFER_ATLAS_MODEL else CPU_THREADS
        resources:
            **(device_job if TRANSFER_ATLAS_MODEL else host_job)(
                cost_stages.atlas_cost(specs_of(_models), COSTS),
                f"transfer_atlas_{_job}",
            ),
        params:
            models=_models,
            settings=canonical(TRANSFER["atlas"]),
            target_classes=TRANSFER["target_classes"],
            target_dataset=TRANSFER["target_dataset"],
            device=config["device"],
        script:
            "../workflow_scripts/transfer_atlas.py"


rule transfer_summary:
    input:
        tables=[PATHS.table("transfer", m) for m in analysis_models("transfer")],
        atlases=[PATHS.table("transfer_atlas", m) for m in TRANSFER_ATLAS_MODELS],
    output:
        summary=PATHS.summary("transfer"),
        gaps=PATHS.summary("transfer_gaps"),
        by_width=PATHS.summary("transfer_by_width"),
        information=PATHS.summary("transfer_information"),
        atlas=PATHS.summary("transfer_atlas"),
        headline=PATHS.summary("transfer_headline"),
        target_vs_width=report(
            PATHS.figure("transfer", "target_vs_width"),
            caption="../report/transfer/target_vs_width.rst",
            category=TRANSFER_CATEGORY,
            subcategory="fine-tuning",
        ),
        gap_vs_width=report(
            PATHS.figure("transfer", "gap_vs_width"),
            caption="../report/transfer/gap_vs_width.rst",
            category=TRANSFER_CATEGORY,
            subcategory="fine-tuning",
        ),
        target_vs_source=report(
            PATHS.figure("transfer", "target_vs_source"),
            caption="../report/transfer/target_vs_source.rst",
            category=TRANSFER_CATEGORY,
            subcategory="fine-tuning",
        ),
        information_fig=report(
            PATHS.figure("transfer", "information"),
            caption="../report/transfer/information.rst",
            category=TRANSFER_CATEGORY,
            subcategory="hidden-state information",
        ),
        atlas_fig=report(
            PATHS.figure("transfer", "atlas"),
            caption="../report/transfer/atlas.rst",
            category=TRANSFER_CATEGORY,
            subcategory="activation atlas",
        ),
    log:
        PATHS.log("transfer_summary"),
    benchmark:
        PATHS.benchmark("transfer_summary")
    conda:
        CONDA_ENV
    threads: CPU_THREADS
    resources:
        **summary_job(analysis_models("transfer")),
    params:
        recipes=canonical(recipes(analysis_models("transfer"))),
    script:
        "../workflow_scripts/transfer_summary.py"


TARGETS["transfer"] = rules.transfer_summary.output
