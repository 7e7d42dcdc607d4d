# Training stage: one job per pack of small MLPs (rule train_pack<n>_<hash>), one per other
# model (rule train); each resumes from its checkpoint when rerun. Snakemake prefers a pack's
# rule, whose outputs are plain paths, over `train`'s wildcard for the models it holds.
# SLURM signals a training job (USR1) shortly before its time limit; it checkpoints and exits,
# and the retry resumes.


for pack in TRAIN_PACKS:

    rule:
        name:
            pack_rule_name(pack)
        input:
            data=dataset_of_model(pack.ids[0]),
        output:
            model=[PATHS.model(m) for m in pack.ids],
            history=[PATHS.history(m) for m in pack.ids],
            metrics=[PATHS.metrics(m) for m in pack.ids],
        log:
            PATHS.log("train", pack.name),
        benchmark:
            PATHS.benchmark("train", pack.name)
        conda:
            CONDA_ENV
        threads: GPU_THREADS
        resources:
            **device_job(
                train_estimate(pack.ids),
                pack_rule_name(pack),
                signal="USR1",
            ),
        params:
            models=list(pack.ids),
            pack=pack.name,
            train=canonical(grid_train_settings(MODEL_GRID[pack.ids[0]])),
            device=config["device"],
            checkpoint=PATHS.pack_checkpoint(pack.name),
        script:
            "../workflow_scripts/train.py"


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
    threads: GPU_THREADS
    resources:
        **device_job(lambda w: train_estimate([w.model]), "train", signal="USR1"),
    params:
        models=lambda w: [w.model],
        pack="",
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
    threads: CPU_THREADS
    resources:
        **summary_job(model_ids()),
    script:
        "../workflow_scripts/training_summary.py"


TARGETS["training"] = rules.training_summary.output
