"""Rule bottleneck_linear: deep linear theory (reduced A·B dynamics vs simulated wide nets)."""

from widthlab.bottleneck.figures import LINEAR_FIGURES
from widthlab.bottleneck.linear import run_linear_job
from widthlab.device import resolve_device
from widthlab.provenance import Job

job = Job.from_snakemake(snakemake)
settings = snakemake.params.settings
job.seed, job.device = settings["seeds"], str(resolve_device(snakemake.params.device))
tables = run_linear_job(settings, device=job.device)
job.log.info("\n%s", tables["linear_summary"].to_string())
job.write_parquet(tables["linear_summary"], snakemake.output.summary)
job.write_parquet(tables["linear_curves"], snakemake.output.curves)
job.save_figure(LINEAR_FIGURES["linear_curves"](tables), snakemake.output.figure)
