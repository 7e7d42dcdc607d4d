"""Rule headline: the stages' headline tables → one table and its HTML page for the report."""

from widthlab import headline, io
from widthlab.provenance import Job

job = Job.from_snakemake(snakemake)
stages = {name: io.read_parquet(path) for name, path in snakemake.input.items()}
table = headline.collect(stages)
job.log.info("%d claims from stages %s", len(table), sorted(stages))
job.write_parquet(table, snakemake.output.table)
io.write_text(snakemake.output.page, headline.as_html(table))
job.sidecar(snakemake.output.page)
