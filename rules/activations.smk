# Activation stage: every tap of every model on the shared probe set, plus its predictions; the
# models are spread over `activations.jobs` jobs (widthlab.model_jobs).


for _job, _models in model_jobs("activations", model_ids()).items():

    rule:
        name:
            f"activations_{_job}"
        input:
            model=[PATHS.model(m) for m in _models],
            data=list(dict.fromkeys(dataset_of_model(m) for m in _models)),
        output:
            layers=[PATHS.layers(m) for m in _models],
            predictions=[PATHS.predictions(m) for m in _models],
        log:
            PATHS.log("activations", str(_job)),
        benchmark:
            PATHS.benchmark("activations", str(_job))
        conda:
            CONDA_ENV
        threads: GPU_THREADS
        resources:
            **device_job(
                cost.activations_cost(specs_of(_models), COSTS), f"activations_{_job}"
            ),
        params:
            models=_models,
            settings=canonical(
                {k: v for k, v in config["activations"].items() if k != "jobs"}
            ),
            device=config["device"],
        script:
            "../workflow_scripts/activations.py"


TARGETS["activations"] = [PATHS.predictions(m) for m in model_ids()]
