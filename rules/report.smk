# Report stage: the headline table (each paper's claim, what this run measured, does it hold)
# and the cross-paper joint analysis. Included last, so every stage has registered its targets.

PAPER_STAGES = ("similarity", "transfer", "units", "bottleneck", "clones")  # papers 1-5
HEADLINE_CATEGORY = "0. Headline: what width does here"


rule headline:
    input:
        unpack(
            lambda w: {
                s: PATHS.summary(f"{s}_headline") for s in stages_run(PAPER_STAGES)
            }
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
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/report_headline.py"


TARGETS["report"] = [rules.headline.output.table]
