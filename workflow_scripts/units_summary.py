"""Rule units_summary: unit counts, growth statistic g and headline across the grid; figures."""

from widthlab.io import read_parquet
from widthlab.provenance import Job
from widthlab.units import claims, figures
from widthlab.units.settings import UnitsSettings
from widthlab.units.summary import summarise

job = Job.from_snakemake(snakemake)
settings = UnitsSettings.from_config(snakemake.params.settings)
tables = summarise(
    [read_parquet(path) for path in snakemake.input.tables],
    [read_parquet(path) for path in snakemake.input.curves],
    level=settings.level,
)
tables["headline"] = claims.headline(tables, settings, snakemake.params.recipes)
for name in ("summary", "layers", "curves", "growth", "slopes", "effects", "headline"):
    job.write_parquet(tables[name], getattr(snakemake.output, name))
for row in tables["headline"].itertuples():
    job.log.info("%s: %s", row.holds, row.detail)
drawn_from = {"curves": tables["curves"], "units": tables["layers"]}
drawn_from.update(summary=tables["summary"], growth=tables["growth"])
for name, draw in figures.FIGURES.items():
    job.save_figure(draw(drawn_from), getattr(snakemake.output, name))
