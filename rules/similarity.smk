# similarity stage (Nguyen, Raghu & Kornblith 2021, CKA and block structure): per model, CKA of
# every layer pair, PC1 share and linear probes per layer; CKA across configured model pairs;
# blocks, error patterns, figures and the headline across the grid(s) the stage studies.
from widthlab.similarity.jobs import choose_pairs
from widthlab.similarity.settings import SimilaritySettings

SIMILARITY_CATEGORY = "1. Nguyen, Raghu & Kornblith 2021: CKA and block structure"
try:
    SIMILARITY = SimilaritySettings.from_config(analysis("similarity"))
    SIMILARITY_MODELS = analysis_models("similarity")
    SIMILARITY_PAIRS = choose_pairs(
        SIMILARITY_MODELS, SIMILARITY.pairs, recipes(SIMILARITY_MODELS)
    )
except ValueError as error:
    raise WorkflowError(f"invalid configuration: {error}") from None
SIMILARITY_PAIRED = list(dict.fromkeys(m for p in SIMILARITY_PAIRS for m in (p.a, p.b)))
SIMILARITY_FIGURES = {
    name: report(
        PATHS.figure("similarity", name),
        caption=f"../report/similarity/{name}.rst",
        category=SIMILARITY_CATEGORY,
        subcategory=subcategory,
    )
    for name, subcategory in [
        ("cka_heatmaps", "within-model CKA"),
        ("cka_heatmaps_pc1_removed", "within-model CKA"),
        ("cross_model", "cross-model CKA"),
        ("estimator_comparison", "cross-model CKA"),
        ("pc1_share", "per layer"),
        ("probe_accuracy", "per layer"),
        ("block_size", "block structure"),
        ("agreement", "error patterns"),
        ("per_class_difference", "error patterns"),
    ]
}


# Per-model work, spread over `analyses.similarity.jobs` jobs (a model's job is a stable hash of
# its id): each job writes the within-model CKA table and the per-layer table of its models.
for _job, _models in model_jobs("similarity", SIMILARITY_MODELS).items():

    rule:
        name:
            f"similarity_models_{_job}"
        input:
            layers=[PATHS.layers(m) for m in _models],
            predictions=[PATHS.predictions(m) for m in _models],
        output:
            cka=[PATHS.table("similarity", m) for m in _models],
            layers=[PATHS.table("similarity_layers", m) for m in _models],
        log:
            PATHS.log("similarity_models", str(_job)),
        benchmark:
            PATHS.benchmark("similarity_models", str(_job))
        conda:
            CONDA_ENV
        threads: GPU_THREADS
        resources:
            **device_job(
                cost_stages.similarity_models_cost(specs_of(_models), COSTS),
                f"similarity_models_{_job}",
            ),
        params:
            models=_models,
            settings=canonical(SIMILARITY.model_params()),
            device=config["device"],
        script:
            "../workflow_scripts/similarity_models.py"


rule similarity_cross:
    input:
        layers=[PATHS.layers(m) for m in SIMILARITY_PAIRED],
    output:
        table=PATHS.summary("similarity_cross"),
    log:
        PATHS.log("similarity_cross"),
    benchmark:
        PATHS.benchmark("similarity_cross")
    conda:
        CONDA_ENV
    threads: GPU_THREADS
    resources:
        **device_job(
            cost_stages.similarity_cross_cost(
                [specs_of([p.a, p.b]) for p in SIMILARITY_PAIRS], COSTS
            ),
            "similarity_cross",
        ),
    params:
        models=SIMILARITY_PAIRED,
        pairs=[[p.kind, p.a, p.b] for p in SIMILARITY_PAIRS],
        settings=canonical(SIMILARITY.cross_params()),
        device=config["device"],
    script:
        "../workflow_scripts/similarity_cross.py"


rule similarity_summary:
    input:
        cka=[PATHS.table("similarity", m) for m in SIMILARITY_MODELS],
        layers=[PATHS.table("similarity_layers", m) for m in SIMILARITY_MODELS],
        predictions=[PATHS.predictions(m) for m in SIMILARITY_MODELS],
        cross=rules.similarity_cross.output.table,
    output:
        summary=PATHS.summary("similarity"),
        blocks=PATHS.summary("similarity_blocks"),
        layers=PATHS.summary("similarity_layers"),
        agreement=PATHS.summary("similarity_agreement"),
        classes=PATHS.summary("similarity_classes"),
        headline=PATHS.summary("similarity_headline"),
        heatmaps=SIMILARITY_FIGURES["cka_heatmaps"],
        heatmaps_pc1=SIMILARITY_FIGURES["cka_heatmaps_pc1_removed"],
        cross=SIMILARITY_FIGURES["cross_model"],
        estimators=SIMILARITY_FIGURES["estimator_comparison"],
        pc1=SIMILARITY_FIGURES["pc1_share"],
        probes=SIMILARITY_FIGURES["probe_accuracy"],
        block_size=SIMILARITY_FIGURES["block_size"],
        agreement_figure=SIMILARITY_FIGURES["agreement"],
        classes_figure=SIMILARITY_FIGURES["per_class_difference"],
    log:
        PATHS.log("similarity_summary"),
    benchmark:
        PATHS.benchmark("similarity_summary")
    conda:
        CONDA_ENV
    threads: CPU_THREADS
    resources:
        **summary_job(SIMILARITY_MODELS),
    params:
        models=SIMILARITY_MODELS,
        pairs=[[p.kind, p.a, p.b] for p in SIMILARITY_PAIRS],
        settings=canonical(SIMILARITY.summary_params()),
        recipes=canonical(recipes(SIMILARITY_MODELS)),
    script:
        "../workflow_scripts/similarity_summary.py"


TARGETS["similarity"] = rules.similarity_summary.output
