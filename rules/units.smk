# units stage (Casper et al. 2021, frivolous units): per model, zero-ablation prunability and PCA
# redundancy on the test split; across the grid, unit counts, growth statistic g and headline.
from widthlab.units import jobs as units_jobs

UNITS_CATEGORY = "3. Casper et al. 2021: frivolous units"
# the analyses.units keys a per-model job depends on (not grid, enabled or the summary's)
UNITS_MODEL_SETTINGS = canonical(units_jobs.model_settings(analysis("units")))


# Per-model work, spread over `analyses.units.jobs` jobs (widthlab.model_jobs).
for _job, _models in model_jobs("units", stage_models("units")).items():

    rule:
        name:
            f"units_model_{_job}"
        input:
            model=[PATHS.model(m) for m in _models],
            data=list(dict.fromkeys(dataset_of_model(m) for m in _models)),
        output:
            table=[PATHS.table("units", m) for m in _models],
            curves=[PATHS.table("units/curves", m) for m in _models],
        log:
            PATHS.log("units_model", str(_job)),
        benchmark:
            PATHS.benchmark("units_model", str(_job))
        conda:
            CONDA_ENV
        threads: GPU_THREADS
        resources:
            **device_job(
                cost_stages.units_cost(specs_of(_models), COSTS), f"units_model_{_job}"
            ),
        params:
            settings=UNITS_MODEL_SETTINGS,
            device=config["device"],
        script:
            "../workflow_scripts/units_model.py"


rule units_summary:
    input:
        tables=lambda w: [PATHS.table("units", m) for m in analysis_models("units")],
        curves=lambda w: [
            PATHS.table("units/curves", m) for m in analysis_models("units")
        ],
    output:
        summary=PATHS.summary("units"),
        layers=PATHS.summary("units_layers"),
        curves=PATHS.summary("units_curves"),
        growth=PATHS.summary("units_growth"),
        slopes=PATHS.summary("units_slopes"),
        effects=PATHS.summary("units_effects"),
        headline=PATHS.summary("units_headline"),
        ablation_curves=report(
            PATHS.figure("units", "ablation_curves"),
            caption="../report/units/ablation_curves.rst",
            category=UNITS_CATEGORY,
            subcategory="ablation",
        ),
        unit_counts=report(
            PATHS.figure("units", "unit_counts"),
            caption="../report/units/unit_counts.rst",
            category=UNITS_CATEGORY,
            subcategory="unit counts",
        ),
        fractions=report(
            PATHS.figure("units", "fractions"),
            caption="../report/units/fractions.rst",
            category=UNITS_CATEGORY,
            subcategory="unit counts",
        ),
        split=report(
            PATHS.figure("units", "split"),
            caption="../report/units/split.rst",
            category=UNITS_CATEGORY,
            subcategory="unit counts",
        ),
        per_layer=report(
            PATHS.figure("units", "per_layer"),
            caption="../report/units/per_layer.rst",
            category=UNITS_CATEGORY,
            subcategory="per layer",
        ),
    log:
        PATHS.log("units_summary"),
    benchmark:
        PATHS.benchmark("units_summary")
    conda:
        CONDA_ENV
    threads: CPU_THREADS
    resources:
        **summary_job(analysis_models("units")),
    params:
        settings=canonical(units_jobs.summary_settings(analysis("units"))),
        recipes=canonical(recipes(analysis_models("units"))),
    script:
        "../workflow_scripts/units_summary.py"


TARGETS["units"] = rules.units_summary.output
