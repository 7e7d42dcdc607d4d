"""Rule transfer_summary: accuracy vs width at matched source accuracy, information, atlases."""

from widthlab.io import read_parquet
from widthlab.provenance import Job
from widthlab.transfer import claims, figures
from widthlab.transfer.summary import summarise

job = Job.from_snakemake(snakemake)
tables = summarise(
    [read_parquet(path) for path in snakemake.input.tables],
    [read_parquet(path) for path in snakemake.input.atlases],
)
tables["headline"] = claims.headline(tables, snakemake.params.recipes)
for name in ("summary", "gaps", "by_width", "information", "atlas", "headline"):
    job.write_parquet(tables[name], getattr(snakemake.output, name))
for row in tables["headline"].itertuples():
    job.log.info("%s: %s: %s", row.holds, row.claim, row.detail)
for output, (table, draw) in figures.FIGURES.items():
    job.save_figure(draw(tables[table]), getattr(snakemake.output, output))
