"""Rule bottleneck_linear: deep linear theory (reduced A·B dynamics vs simulated wide nets)."""

from widthlab import bottleneck
from widthlab.device import resolve_device
from widthlab.plots.bottleneck import LINEAR_FIGURES
from widthlab.provenance import Job

job = Job.from_snakemake(snakemake)
settings = snakemake.params.settings
job.seed, job.device = settings["seeds"], str(resolve_device(snakemake.params.device))
tables = bottleneck.run_linear_job(settings, device=job.device)
job.log.info("\n%s", tables["linear_summary"].to_string())
job.write_parquet(tables["linear_summary"], snakemake.output.summary)
job.write_parquet(tables["linear_curves"], snakemake.output.curves)
job.save_figure(LINEAR_FIGURES["linear_curves"](tables), snakemake.output.figure)
