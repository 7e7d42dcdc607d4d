"""Rule bottleneck_study: one part (ntk | w<width> | limit) of one regime of the study."""

from widthlab.bottleneck.measure import run_job
from widthlab.bottleneck.settings import JobSettings
from widthlab.data.npz import load_dataset
from widthlab.device import resolve_device
from widthlab.provenance import Job

job = Job.from_snakemake(snakemake)
settings = JobSettings.from_dict(snakemake.params.settings, snakemake.wildcards.job)
dataset = load_dataset(snakemake.input.data)
job.seed, job.device = list(settings.seeds), str(resolve_device(snakemake.params.device))
tables = run_job(
    (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test),
    settings,
    device=job.device,
    log=job.log.info,
)
for name in ("curves", "kernel", "runs"):
    job.write_parquet(
        tables["summary" if name == "runs" else name], getattr(snakemake.output, name)
    )
