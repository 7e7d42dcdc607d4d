"""Rule training_summary: one row per model (final metrics) and the training figures."""

from widthlab.plots import training as figures
from widthlab.provenance import Job
from widthlab.training.summary import history_table, metrics_table

job = Job.from_snakemake(snakemake)
table = metrics_table(snakemake.input.metrics)
job.write_parquet(table, snakemake.output.table)
job.save_figure(figures.accuracy_vs_width(table), snakemake.output.figure)
job.save_figure(
    figures.learning_curves(history_table(snakemake.input.histories)), snakemake.output.curves
)
