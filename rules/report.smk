# Report stage: the headline table (each paper's claim, what this run measured, does it hold)
# and the cross-paper joint analysis. Included last, so every stage has registered its targets.

PAPER_STAGES = ("similarity", "transfer", "units", "bottleneck", "clones")  # papers 1-5
HEADLINE_CATEGORY = "0. Headline: what width does here"
JOINT_CATEGORY = "6. Across papers: the same models, questions none of the papers asked"


rule headline:
    input:
        unpack(
            lambda w: {
                s: PATHS.summary(f"{s}_headline") for s in stages_run(PAPER_STAGES)
            }
            | {"joint": rules.joint_summary.output.headline},
        ),
    output:
        table=PATHS.summary("headline"),
        page=report(
            PATHS.figure("report", "headline", "html"),
            caption="../report/report/headline.rst",
            category=HEADLINE_CATEGORY,
        ),
    log:
        PATHS.log("headline"),
    benchmark:
        PATHS.benchmark("headline")
    localrule: True
    conda:
        CONDA_ENV
    threads: CPU_THREADS
    resources:
        **summary_job(PAPER_STAGES),
    script:
        "../workflow_scripts/report_headline.py"


rule joint_prune_clone:
    input:
        models=lambda w: [PATHS.model(m) for m in analysis_models("report")],
        data=lambda w: sorted({dataset_of_model(m) for m in analysis_models("report")}),
    output:
        PATHS.table("joint", "prune_vs_clone"),
    log:
        PATHS.log("joint_prune_clone"),
    benchmark:
        PATHS.benchmark("joint_prune_clone")
    conda:
        CONDA_ENV
    threads: GPU_THREADS
    resources:
        **device_job(
            cost_stages.joint_cost(specs_of(analysis_models("report")), COSTS),
            "joint_prune_clone",
        ),
    params:
        settings=canonical(
            {k: analysis("report")[k] for k in ("kept_fractions", "subsets", "seed")}
        ),
        device=config["device"],
    script:
        "../workflow_scripts/report_joint_prune_clone.py"


rule joint_summary:
    input:
        unpack(joint_inputs),
    output:
        headline=PATHS.summary("joint_headline"),
        layers=PATHS.summary("joint_layers"),
        transfer_clones=PATHS.summary("joint_transfer_clones"),
        figure=report(
            PATHS.figure("joint", "joint"),
            caption="../report/report/joint.rst",
            category=JOINT_CATEGORY,
        ),
    log:
        PATHS.log("joint_summary"),
    benchmark:
        PATHS.benchmark("joint_summary")
    conda:
        CONDA_ENV
    threads: CPU_THREADS
    resources:
        **summary_job(analysis_models("report")),
    params:
        estimator=analysis("similarity").get("width_estimator", "debiased"),
        thresholds=canonical(analysis("clones").get("thresholds", {})),
    script:
        "../workflow_scripts/report_joint_summary.py"


TARGETS["report"] = [rules.headline.output.table]
