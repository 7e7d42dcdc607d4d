"""Rule clones_summary: clone sizes and counts, growth fits, conditions, ensembles, headline."""

from widthlab.clones import claims, figures
from widthlab.clones.settings import CloneSettings
from widthlab.clones.summary import stage_tables
from widthlab.io import read_parquet
from widthlab.provenance import Job

job = Job.from_snakemake(snakemake)
settings = CloneSettings.from_config(snakemake.params.settings, snakemake.params.device)
chunks = [read_parquet(path) for path in snakemake.input.tables]
logits = [read_parquet(path) for path in snakemake.input.logits]
tables = stage_tables(chunks, logits, snakemake.params.grids, settings, snakemake.params.recipes)
tables["headline"] = claims.headline(tables, settings)
for name in ("summary", "growth", "conditions", "ensembles", "gap", "headline"):
    job.write_parquet(tables[name], getattr(snakemake.output, name))
for row in tables["headline"].itertuples():
    job.log.info("%s: %s", row.holds, row.detail)
drawn = figures.stage_figures(chunks, tables, settings.primary, settings.gap_method)
for name, path in zip(snakemake.params.figures, snakemake.output.figures, strict=True):
    job.save_figure(drawn[name], path)
