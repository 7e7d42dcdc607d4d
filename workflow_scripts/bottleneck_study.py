"""Rule bottleneck_study: one part (ntk | w<width> | limit) of one regime of the study."""

from widthlab import bottleneck
from widthlab.data.npz import load_dataset
from widthlab.device import resolve_device
from widthlab.provenance import Job

job = Job.from_snakemake(snakemake)
settings = snakemake.params.settings
dataset = load_dataset(snakemake.input.data)
job.seed, job.device = settings["seeds"], str(resolve_device(snakemake.params.device))
tables = bottleneck.run_job(
    (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test),
    settings,
    snakemake.wildcards.job,
    device=job.device,
    log=job.log.info,
)
for name in ("curves", "kernel", "runs"):
    job.write_parquet(
        tables["summary" if name == "runs" else name], getattr(snakemake.output, name)
    )
