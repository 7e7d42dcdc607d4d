"""Rule transfer_atlas: 2-D embedding of one layer's probe activations, gridded into cells."""

from widthlab.data import load_dataset
from widthlab.grid import parse_model_id
from widthlab.provenance import Job
from widthlab.transfer import AtlasConfig, atlas_activations, atlas_table

job = Job.from_snakemake(snakemake)
cfg = AtlasConfig.from_dict(snakemake.params.settings)
spec = parse_model_id(snakemake.wildcards.model)
layer, activations = atlas_activations(snakemake.input.layers, cfg.layer)
dataset = load_dataset(snakemake.input.data)
model, device = None, "cpu"
if cfg.feature_visualisation:  # only then torch and the model are needed
    import torch

    from widthlab.activations import resolve_device
    from widthlab.models import load_model

    torch.set_num_threads(max(1, snakemake.threads))
    device = resolve_device(snakemake.params.device)
    model, _ = load_model(snakemake.input.model[0], map_location=device)
job.seed, job.device = spec.seed, str(device)
table = atlas_table(
    spec,
    activations,
    dataset.y_probe,
    dataset.x_probe,
    layer,
    cfg,
    class_names=dataset.class_names,
    model=model,
    device=device,
)
job.log.info("%s: %d cells, layer %s, %s", spec.id, len(table), layer, table["embedding"].iloc[0])
job.write_parquet(table, snakemake.output[0])
