# Data stage: one NPZ per dataset variant with its splits and the fixed probe set.


rule dataset:
    input:
        raw_inputs,
    output:
        PATHS.dataset("{data}"),
    log:
        PATHS.log("dataset", "{data}"),
    benchmark:
        PATHS.benchmark("dataset", "{data}")
    conda:
        CONDA_ENV
    threads: CPU_THREADS
    resources:
        **host_job(lambda w: cost_stages.dataset_cost(w.data, COSTS), "dataset"),
    params:
        settings=dataset_settings,
        data_root=config["data_root"],
    script:
        "../workflow_scripts/dataset.py"
