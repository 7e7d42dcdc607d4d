# Activation stage: every tap of every model on the shared probe set, plus its predictions.


rule activations:
    input:
        model=PATHS.model("{model}"),
        data=dataset_of,
    output:
        layers=PATHS.layers("{model}"),
        predictions=PATHS.predictions("{model}"),
    log:
        PATHS.log("activations", "{model}"),
    benchmark:
        PATHS.benchmark("activations", "{model}")
    conda:
        CONDA_ENV
    resources:
        mem_mb=model_mem_mb,
        gpu=lambda w: int(uses_gpu()),
    params:
        settings=canonical(config["activations"]),
        device=config["device"],
    script:
        "../workflow_scripts/activations.py"


TARGETS["activations"] = [PATHS.predictions(m) for m in model_ids()]
