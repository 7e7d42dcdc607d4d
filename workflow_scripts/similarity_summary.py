"""Rule similarity_summary: blocks, error patterns, the headline and every figure of the stage,
from the per-model tables, the cross-model table and the predictions."""

import pandas as pd

from widthlab.io import read_parquet
from widthlab.provenance import Job
from widthlab.similarity import claims, figures
from widthlab.similarity.jobs import Pair
from widthlab.similarity.settings import PC1_REMOVED_SUFFIX
from widthlab.similarity.summary import summarise

job = Job.from_snakemake(snakemake)
out, settings = snakemake.output, snakemake.params.settings
cka = pd.concat([read_parquet(p) for p in snakemake.input.cka], ignore_index=True)
layers = pd.concat([read_parquet(p) for p in snakemake.input.layers], ignore_index=True)
cross = read_parquet(snakemake.input.cross)
predictions = {
    mid: read_parquet(path)
    for mid, path in zip(snakemake.params.models, snakemake.input.predictions, strict=True)
}
pairs = [Pair(*p) for p in snakemake.params.pairs]
tables = summarise(cka, layers, cross, predictions, pairs, settings)
blocks, errors = settings["blocks"], settings["errors"]
tables["headline"] = claims.headline(
    tables["alternatives"],
    tables["agreement"],
    tables["classes"],
    settings["width_estimator"],
    blocks["min_size"],
    errors["alpha"],
    snakemake.params.recipes,
)
for name in ("summary", "blocks", "agreement", "classes", "headline"):
    job.write_parquet(tables[name], out[name])
job.write_parquet(layers, out.layers)
job.log.info("headline:\n%s", tables["headline"][["claim", "value", "holds"]].to_string())

width = settings["width_estimator"]
job.save_figure(figures.cka_heatmap_grid(cka, width), out.heatmaps)
job.save_figure(figures.cka_heatmap_grid(cka, width + PC1_REMOVED_SUFFIX), out.heatmaps_pc1)
job.save_figure(figures.cross_model_heatmaps(cross, width), out.cross)
job.save_figure(figures.estimator_comparison(cross), out.estimators)
job.save_figure(figures.pc1_share_curves(layers), out.pc1)
job.save_figure(figures.probe_accuracy_curves(layers), out.probes)
summary = tables["summary"]
job.save_figure(figures.block_size_plot(summary[summary["estimator"] == width]), out.block_size)
job.save_figure(figures.agreement_plot(tables["agreement"]), out.agreement_figure)
job.save_figure(figures.per_class_difference_plot(tables["classes"]), out.classes_figure)
