"""Rule clones_summary: clone sizes and counts, growth fits, conditions, ensembles, headline."""

from widthlab.clones import summarise
from widthlab.io import read_parquet
from widthlab.plots import clones as figures
from widthlab.provenance import Job

job = Job.from_snakemake(snakemake)
chunks = [read_parquet(path) for path in snakemake.input.tables]
tables = summarise(
    chunks,
    [read_parquet(path) for path in snakemake.input.logits],
    grids=snakemake.params.grids,
    primary=snakemake.params.primary,
    thresholds=snakemake.params.thresholds,
    gap_method=snakemake.params.gap_method,
)
for name in ("summary", "growth", "conditions", "ensembles", "gap", "headline"):
    job.write_parquet(tables[name], getattr(snakemake.output, name))
for row in tables["headline"].itertuples():
    job.log.info("%s: %s", row.holds, row.detail)
drawn = figures.stage_figures(chunks, tables, snakemake.params.primary, snakemake.params.gap_method)
for name, path in zip(snakemake.params.figures, snakemake.output.figures, strict=True):
    job.save_figure(drawn[name], path)
