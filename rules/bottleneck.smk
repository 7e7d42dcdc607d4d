# Bottleneck stage (Littwin et al. 2021): the exact infinite-width NTK limit vs ReLU nets whose
# middle hidden layer has k units, trained by this stage itself (NTK parameterisation, full-batch
# GD, MSE) on a dataset's inputs; it does not read the shared model grid. One job per regime and
# part (ntk | w<width> | limit), the deep linear theory, a summary with the figures of every regime.
from widthlab.bottleneck import jobs as bottleneck_lib

BOTTLENECK = analysis("bottleneck")
BOTTLENECK_CATEGORY = "4. Littwin et al. 2021: infinite width with a bottleneck"
BOTTLENECK_REGIMES = list(BOTTLENECK["regimes"])
BOTTLENECK_LINEAR = BOTTLENECK["linear"]["enabled"]
# the names of widthlab.bottleneck.figures.FIGURES (the script checks that they agree)
BOTTLENECK_FIGURES = [
    "loss_curves",
    "steps_to_threshold",
    "feature_learning",
    "final_test",
    "kernel_dynamics",
]


# every part table of every regime, by kind (curves, kernel, runs)
BOTTLENECK_PARTS = {
    part: [
        PATHS.table("bottleneck", f"{regime}/{job}/{part}")
        for regime in BOTTLENECK_REGIMES
        for job in bottleneck_lib.job_names(BOTTLENECK, regime)
    ]
    for part in ("curves", "kernel", "runs")
}
# (regime, figure) of every figure the summary draws, in the order of its output list
BOTTLENECK_FIGURE_KEYS = [
    (r, name) for r in BOTTLENECK_REGIMES for name in BOTTLENECK_FIGURES
]


rule bottleneck_study:
    input:
        data=PATHS.dataset(BOTTLENECK["dataset"]),
    output:
        curves=PATHS.table("bottleneck", "{regime}/{job}/curves"),
        kernel=PATHS.table("bottleneck", "{regime}/{job}/kernel"),
        runs=PATHS.table("bottleneck", "{regime}/{job}/runs"),
    log:
        PATHS.log("bottleneck_study", "{regime}-{job}"),
    benchmark:
        PATHS.benchmark("bottleneck_study", "{regime}-{job}")
    wildcard_constraints:
        regime="[a-z0-9_]+",
        job="ntk|limit|w[0-9]+",
    conda:
        CONDA_ENV
    threads: GPU_THREADS
    resources:
        **device_job(
            lambda w: cost_stages.bottleneck_study_cost(
                bottleneck_lib.job_settings(BOTTLENECK, w.regime, w.job), w.job, COSTS
            ),
            "bottleneck_study",
        ),
    params:
        settings=lambda w: canonical(
            bottleneck_lib.job_settings(BOTTLENECK, w.regime, w.job)
        ),
        device=config["device"],
    script:
        "../workflow_scripts/bottleneck_study.py"


rule bottleneck_linear:
    output:
        summary=PATHS.summary("bottleneck_linear"),
        curves=PATHS.summary("bottleneck_linear_curves"),
        figure=report(
            PATHS.figure("bottleneck", "linear_curves"),
            caption="../report/bottleneck/linear_curves.rst",
            category=BOTTLENECK_CATEGORY,
            subcategory="deep linear theory",
        ),
    log:
        PATHS.log("bottleneck_linear"),
    benchmark:
        PATHS.benchmark("bottleneck_linear")
    conda:
        CONDA_ENV
    threads: GPU_THREADS
    resources:
        **device_job(
            cost_stages.bottleneck_linear_cost(
                bottleneck_lib.linear_settings(BOTTLENECK), COSTS
            ),
            "bottleneck_linear",
        ),
    params:
        settings=canonical(bottleneck_lib.linear_settings(BOTTLENECK)),
        device=config["device"],
    script:
        "../workflow_scripts/bottleneck_linear.py"


rule bottleneck_summary:
    input:
        runs=BOTTLENECK_PARTS["runs"],
        curves=BOTTLENECK_PARTS["curves"],
        kernel=BOTTLENECK_PARTS["kernel"],
        linear=[PATHS.summary("bottleneck_linear")] if BOTTLENECK_LINEAR else [],
    output:
        runs=PATHS.summary("bottleneck"),
        curves=PATHS.summary("bottleneck_curves"),
        kernel=PATHS.summary("bottleneck_kernel"),
        effects=PATHS.summary("bottleneck_effects"),
        headline=PATHS.summary("bottleneck_headline"),
        figures=[
            report(
                PATHS.figure("bottleneck", f"{regime}_{name}"),
                caption=f"../report/bottleneck/{name}.rst",
                category=BOTTLENECK_CATEGORY,
                subcategory=f"regime {regime}",
                labels={"regime": regime, "figure": name},
            )
            for regime, name in BOTTLENECK_FIGURE_KEYS
        ],
    log:
        PATHS.log("bottleneck_summary"),
    benchmark:
        PATHS.benchmark("bottleneck_summary")
    conda:
        CONDA_ENV
    threads: CPU_THREADS
    resources:
        **summary_job(BOTTLENECK_PARTS["runs"]),
    params:
        figures=BOTTLENECK_FIGURE_KEYS,
        settings=canonical(bottleneck_lib.summary_settings(BOTTLENECK)),
    script:
        "../workflow_scripts/bottleneck_summary.py"


TARGETS["bottleneck"] = [
    *rules.bottleneck_summary.output,
    *([PATHS.figure("bottleneck", "linear_curves")] if BOTTLENECK_LINEAR else []),
]
