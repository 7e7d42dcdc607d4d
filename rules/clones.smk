# clones stage (Doimo et al. 2022, representation mitosis): per model, random chunks of the last
# hidden layer on the train and test splits (chunk accuracy, ridge R², residual correlation,
# information imbalance) and the test logits; across the grids, clone size w_c*, #clones = W /
# w_c*, the growth fit, the conditions (weight decay, interpolation), ensembles and headline.
from widthlab.clones import jobs as clones_jobs

CLONES_CATEGORY = "5. Doimo et al. 2022: representation mitosis (clones)"


# the analyses.clones keys a per-model job depends on (not grid, enabled, jobs or summary keys)
CLONES_MODEL_SETTINGS = canonical(clones_jobs.model_settings(analysis("clones")))
CLONES_MODELS = analysis_models("clones")
# model id → the first of the stage's grids that holds it (the first grid is the primary one)
CLONES_GRID_OF = clones_jobs.first_grid_of(
    {
        name: [spec.id for spec in GRIDS[name].specs()]
        for name in analysis_grids("clones")
        if name in GRIDS
    }
)


# Per-model work, spread over `analyses.clones.jobs` jobs (widthlab.model_jobs).
for _job, _models in model_jobs("clones", stage_models("clones")).items():

    rule:
        name:
            f"clones_model_{_job}"
        input:
            model=[PATHS.model(m) for m in _models],
            data=list(dict.fromkeys(dataset_of_model(m) for m in _models)),
        output:
            table=[PATHS.table("clones", m) for m in _models],
            logits=[PATHS.table("clones/logits", m) for m in _models],
        log:
            PATHS.log("clones_model", str(_job)),
        benchmark:
            PATHS.benchmark("clones_model", str(_job))
        conda:
            CONDA_ENV
        threads: GPU_THREADS
        resources:
            **device_job(
                cost_stages.clones_cost(specs_of(_models), COSTS),
                f"clones_model_{_job}",
            ),
        params:
            settings=CLONES_MODEL_SETTINGS,
            device=config["device"],
        script:
            "../workflow_scripts/clones_model.py"


rule clones_summary:
    input:
        tables=[PATHS.table("clones", m) for m in CLONES_MODELS],
        logits=[PATHS.table("clones/logits", m) for m in CLONES_MODELS],
    output:
        summary=PATHS.summary("clones"),
        growth=PATHS.summary("clones_growth"),
        conditions=PATHS.summary("clones_conditions"),
        ensembles=PATHS.summary("clones_ensembles"),
        gap=PATHS.summary("clones_gap"),
        headline=PATHS.summary("clones_headline"),
        figures=[
            report(
                PATHS.figure("clones", name),
                caption=f"../report/clones/{name}.rst",
                category=CLONES_CATEGORY,
                subcategory=subcategory,
            )
            for name, subcategory in clones_jobs.FIGURES.items()
        ],
    log:
        PATHS.log("clones_summary"),
    benchmark:
        PATHS.benchmark("clones_summary")
    conda:
        CONDA_ENV
    threads: CPU_THREADS
    resources:
        **summary_job(CLONES_MODELS),
    params:
        settings=canonical(clones_jobs.summary_settings(analysis("clones"))),
        device=config["device"],
        grids=canonical(CLONES_GRID_OF),
        recipes=canonical(recipes(CLONES_MODELS)),
        figures=list(clones_jobs.FIGURES),
    script:
        "../workflow_scripts/clones_summary.py"


TARGETS["clones"] = rules.clones_summary.output
