"""Rule transfer_atlas: 2-D embedding of one layer's activations, gridded into cells."""

from widthlab.data.npz import load_dataset
from widthlab.grid import parse_model_id
from widthlab.provenance import Job
from widthlab.transfer.atlas import atlas_activations, atlas_tables, target_atlas_inputs
from widthlab.transfer.settings import AtlasConfig

job = Job.from_snakemake(snakemake)
cfg = AtlasConfig.from_dict(snakemake.params.settings)
spec = parse_model_id(snakemake.wildcards.model)
dataset = load_dataset(snakemake.input.data)
model, device = None, "cpu"
if snakemake.input.model:  # target images, random control or feature visualisation
    import torch

    from widthlab.device import resolve_device
    from widthlab.models import load_model

    torch.set_num_threads(max(1, snakemake.threads))
    device = resolve_device(snakemake.params.device)
    model, _ = load_model(snakemake.input.model[0], map_location=device)
if cfg.images == "target":
    target = load_dataset(snakemake.input.target[0])
    layer, activations, labels, images, names = target_atlas_inputs(
        model, dataset, target, cfg.layer, device
    )
else:
    layer, activations = atlas_activations(snakemake.input.layers[0], cfg.layer)
    labels, images, names = dataset.y_probe, dataset.x_probe, dataset.class_names
job.seed, job.device = spec.seed, str(device)
table = atlas_tables(
    spec, activations, labels, images, layer, cfg, class_names=names, model=model, device=device
)
job.log.info(
    "%s: %d cells, %s layer %s, %s",
    spec.id,
    len(table),
    cfg.images,
    layer,
    table["embedding"].iloc[0],
)
job.write_parquet(table, snakemake.output[0])
