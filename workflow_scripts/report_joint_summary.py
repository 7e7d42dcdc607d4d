"""Rule joint_summary: the three cross-paper questions as tables, a figure and headline rows."""

import pandas as pd

from widthlab import io
from widthlab.joint import claims, summary
from widthlab.joint.figures import joint_figure
from widthlab.provenance import Job

job = Job.from_snakemake(snakemake)
inputs = snakemake.input
prune_clone = io.read_parquet(inputs.prune_clone)
layers = transfer_clones = None
if "blocks" in inputs.keys():
    units = pd.concat([io.read_parquet(p) for p in inputs.units], ignore_index=True)
    layers = summary.layer_table(
        io.read_parquet(inputs.blocks),
        io.read_parquet(inputs.layers),
        units,
        snakemake.params.estimator,
    )
if "gaps" in inputs.keys():
    clone_tables = {}
    for path in inputs.clones:
        table = io.read_parquet(path)
        clone_tables[table["model"].iloc[0]] = table
    transfer_clones = summary.transfer_clone_table(
        io.read_parquet(inputs.gaps), clone_tables, snakemake.params.thresholds
    )
contrasts = summary.layer_contrasts(layers) if layers is not None else None
headline = claims.headline(prune_clone, contrasts, transfer_clones)
job.log.info("\n%s", headline[["quantity", "value", "holds", "detail"]].to_string())
job.write_parquet(headline, snakemake.output.headline)
job.write_parquet(layers if layers is not None else pd.DataFrame(), snakemake.output.layers)
job.write_parquet(
    transfer_clones if transfer_clones is not None else pd.DataFrame(),
    snakemake.output.transfer_clones,
)
job.save_figure(joint_figure(prune_clone, contrasts, transfer_clones), snakemake.output.figure)
