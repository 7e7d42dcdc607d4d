"""Rule bottleneck_summary: all parts of every regime → runs, curves, kernels, effects, the
headline, and each regime's figures (drawn from these tables)."""

import pandas as pd

from widthlab.bottleneck import claims, summary
from widthlab.bottleneck.figures import figures_of_regime
from widthlab.io import read_parquet
from widthlab.provenance import Job


def gather(paths):
    return pd.concat([read_parquet(path) for path in paths], ignore_index=True)


job = Job.from_snakemake(snakemake)
settings = claims.settings_of(snakemake.params.settings)
runs = summary.add_run_metrics(gather(snakemake.input.runs))
curves, kernel = gather(snakemake.input.curves), gather(snakemake.input.kernel)
linear = gather(snakemake.input.linear) if snakemake.input.linear else None
headline = claims.headline(runs, settings, linear)
job.log.info("\n%s", headline[["claim", "value", "holds", "detail"]].to_string())
job.write_parquet(runs, snakemake.output.runs)
job.write_parquet(curves, snakemake.output.curves)
job.write_parquet(kernel, snakemake.output.kernel)
job.write_parquet(summary.effects_table(runs), snakemake.output.effects)
job.write_parquet(headline, snakemake.output.headline)
tables = {"curves": curves, "kernel": kernel, "summary": runs}
drawers = {regime: figures_of_regime(tables, regime) for regime, _ in snakemake.params.figures}
for (regime, name), path in zip(snakemake.params.figures, snakemake.output.figures, strict=True):
    job.save_figure(drawers[regime][name](), path)
