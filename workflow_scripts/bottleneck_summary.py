"""Rule bottleneck_summary: all parts of every regime → runs, curves, kernels, effects, the
headline, and each regime's figures (drawn from these tables)."""

import pandas as pd

from widthlab import bottleneck
from widthlab.io import read_parquet
from widthlab.plots.bottleneck import figures_of_regime
from widthlab.provenance import Job


def gather(paths):
    return pd.concat([read_parquet(path) for path in paths], ignore_index=True)


job = Job.from_snakemake(snakemake)
runs = bottleneck.add_run_metrics(gather(snakemake.input.runs))
curves, kernel = gather(snakemake.input.curves), gather(snakemake.input.kernel)
linear = gather(snakemake.input.linear) if snakemake.input.linear else None
headline = bottleneck.headline(runs, linear)
job.log.info("\n%s", headline[["claim", "value", "holds", "detail"]].to_string())
job.write_parquet(runs, snakemake.output.runs)
job.write_parquet(curves, snakemake.output.curves)
job.write_parquet(kernel, snakemake.output.kernel)
job.write_parquet(bottleneck.effects_table(runs), snakemake.output.effects)
job.write_parquet(headline, snakemake.output.headline)
tables = {"curves": curves, "kernel": kernel, "summary": runs}
drawers = {regime: figures_of_regime(tables, regime) for regime, _ in snakemake.params.figures}
for (regime, name), path in zip(snakemake.params.figures, snakemake.output.figures, strict=True):
    job.save_figure(drawers[regime][name](), path)
