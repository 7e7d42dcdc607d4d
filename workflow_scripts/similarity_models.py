"""Rules similarity_models_<k>: within-model CKA (every layer pair) and per-layer PC1 share and
probe accuracy, for each model of this job."""

from widthlab.activations import load_layers
from widthlab.grid import parse_model_id
from widthlab.io import read_parquet
from widthlab.provenance import Job
from widthlab.similarity.measure import limit_threads, model_tables

job = Job.from_snakemake(snakemake)
limit_threads(snakemake.threads)
job.device = snakemake.params.device
settings = snakemake.params.settings
for mid, layers_path, predictions_path, cka_path, table_path in zip(
    snakemake.params.models,
    snakemake.input.layers,
    snakemake.input.predictions,
    snakemake.output.cka,
    snakemake.output.layers,
    strict=True,
):
    spec = parse_model_id(mid)
    taps = load_layers(layers_path)
    labels = read_parquet(predictions_path).sort_values("example")["label"].to_numpy()
    cka, per_layer = model_tables(
        spec.columns(), list(taps), list(taps.values()), labels, settings, job.device
    )
    job.log.info(
        "%s: %d layers, PC1 shares %s", mid, len(taps), per_layer["pc1_share"].round(3).tolist()
    )
    with job.for_model(mid, [layers_path, predictions_path]):
        job.write_parquet(cka, cka_path)
        job.write_parquet(per_layer, table_path)
