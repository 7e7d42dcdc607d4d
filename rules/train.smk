# Training stage: one job per model id; resumes from its checkpoint when rerun.


rule train:
    input:
        data=dataset_of,
    output:
        model=PATHS.model("{model}"),
        history=PATHS.history("{model}"),
        metrics=PATHS.metrics("{model}"),
    log:
        PATHS.log("train", "{model}"),
    benchmark:
        PATHS.benchmark("train", "{model}")
    conda:
        CONDA_ENV
    resources:
        mem_mb=model_mem_mb,
        runtime=model_runtime,
        gpu=lambda w: int(uses_gpu()),
        slurm_extra=lambda w: "--signal=USR1@120",
    params:
        train=train_settings,
        device=config["device"],
        checkpoint=lambda w: PATHS.checkpoint(w.model),
    script:
        "../workflow_scripts/train.py"


rule training_summary:
    input:
        metrics=lambda w: [PATHS.metrics(m) for m in model_ids()],
        histories=lambda w: [PATHS.history(m) for m in model_ids()],
    output:
        table=PATHS.summary("training"),
        figure=report(
            PATHS.figure("training", "accuracy_vs_width"),
            caption="../report/training/accuracy_vs_width.rst",
            category="0. Training",
        ),
        curves=report(
            PATHS.figure("training", "learning_curves"),
            caption="../report/training/learning_curves.rst",
            category="0. Training",
        ),
    log:
        PATHS.log("training_summary"),
    benchmark:
        PATHS.benchmark("training_summary")
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/training_summary.py"


TARGETS["training"] = rules.training_summary.output
