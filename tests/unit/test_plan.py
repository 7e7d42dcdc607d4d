"""widthlab.plan: reading Snakemake's dry-run job blocks and summing them per rule family."""
# ruff: noqa: E501  (a dry run prints each job's resources on one line)

from widthlab import plan

DRY_RUN = """
Building DAG of jobs...

[Thu Dec  3 20:14:47 2026]
rule train_pack2_d648c956:
    input: results/data/digits.npz
    output: results/models/a/model.pt, results/models/b/model.pt
    jobid: 4
    threads: 4
    resources: tmpdir=/tmp, mem_mb=3000, mem=3 GB, runtime=90, estimate_s=3600, gpu=1, gpu_mem_mb=1500, slurm_partition=gpu, slurm_extra=--signal=USR1@120
Shell command: None

[Thu Dec  3 20:14:47 2026]
rule train:
    output: results/models/c/model.pt
    wildcards: model=c
    resources: tmpdir=/tmp, mem_mb=2000, runtime=30, estimate_s=1200, gpu=1, gpu_mem_mb=900

[Thu Dec  3 20:14:47 2026]
rule activations_12:
    resources: tmpdir=/tmp, mem_mb=4000, runtime=15, estimate_s=600, gpu=1, gpu_mem_mb=100

[Thu Dec  3 20:14:47 2026]
localrule headline:
    resources: tmpdir=/tmp, mem_mb=1000, runtime=5, estimate_s=36

[Thu Dec  3 20:14:47 2026]
localrule all:
    input: x
Job stats:
"""


def test_job_blocks_become_jobs_with_their_resources():
    jobs = plan.parse_dry_run(DRY_RUN)
    assert [j.rule for j in jobs] == ["train_pack2_d648c956", "train", "activations_12", "headline"]
    pack = jobs[0]
    assert pack.threads == 4 and pack.gpu and pack.number("runtime") == 90
    assert pack.resources["slurm_extra"] == "--signal=USR1@120"
    assert pack.paths("output") == ["results/models/a/model.pt", "results/models/b/model.pt"]
    assert jobs[3].local and not jobs[3].gpu and jobs[3].threads == 1
    assert plan.trainings(jobs) == 3


def test_rows_sum_estimated_hours_per_family():
    rows = {r.family: r for r in plan.plan_rows(plan.parse_dry_run(DRY_RUN))}
    assert list(rows) == ["train_pack", "train", "activations", "headline"]
    assert rows["train_pack"].gpu_hours == 1.0
    assert rows["headline"].gpu_jobs == 0 and rows["headline"].cpu_hours == 0.01
    table = plan.format_table(list(rows.values()))
    assert table.splitlines()[-1].startswith("| total | 4 | 3 | 1.5 | 0.0 |")
    assert "1 h 30 min, 3 GB, GPU 1.5 GB, 4 CPUs" in table


def test_families_of_loop_made_rules():
    assert plan.family("train_pack16_0123abcd") == "train_pack"
    assert plan.family("similarity_models_3") == "similarity_models"
    assert plan.family("similarity_cross") == "similarity_cross"


def test_the_error_line_is_snakemakes_message():
    text = 'WorkflowError in file "x", line 3:\ninvalid configuration: bad\n  File "y"\n'
    assert plan.error_line(text) == "invalid configuration: bad"
