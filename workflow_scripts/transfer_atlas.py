"""Rules transfer_atlas_<job>: for each of the job's models, a 2-D embedding of one layer's
activations, gridded into cells."""

from widthlab.data.npz import DatasetFiles
from widthlab.grid import parse_model_id
from widthlab.provenance import Job
from widthlab.transfer.atlas import atlas_activations, atlas_tables, target_atlas_inputs
from widthlab.transfer.settings import AtlasConfig, target_data_id

job = Job.from_snakemake(snakemake)
cfg = AtlasConfig.from_dict(snakemake.params.settings)
models = snakemake.params.models
datasets = DatasetFiles([*snakemake.input.data, *snakemake.input.target])
device = "cpu"
if snakemake.input.model:  # target images, random control or feature visualisation
    import torch

    from widthlab.device import resolve_device
    from widthlab.model_files import load_model

    torch.set_num_threads(max(1, snakemake.threads))
    device = resolve_device(snakemake.params.device)
for i, (mid, table_path) in enumerate(zip(models, snakemake.output, strict=True)):
    spec = parse_model_id(mid)
    data_path, dataset = datasets.of(spec.data.id)
    inputs, model = [data_path], None
    if snakemake.input.model:
        model, _ = load_model(snakemake.input.model[i], map_location=device)
        inputs.append(snakemake.input.model[i])
    if cfg.images == "target":
        # the atlas of the target images: the stage's target classes, from the config section
        target_id = target_data_id(
            spec.data, snakemake.params.target_classes, snakemake.params.target_dataset
        )
        target_path, target = datasets.of(target_id)
        inputs.append(target_path)
        layer, activations, labels, images, names = target_atlas_inputs(
            model, dataset, target, cfg.layer, device
        )
    else:
        inputs.append(snakemake.input.layers[i])
        layer, activations = atlas_activations(snakemake.input.layers[i], cfg.layer)
        labels, images, names = dataset.y_probe, dataset.x_probe, dataset.class_names
    table = atlas_tables(
        spec, activations, labels, images, layer, cfg, class_names=names, model=model, device=device
    )
    job.log.info(
        "%s: %d cells, %s layer %s, %s",
        mid,
        len(table),
        cfg.images,
        layer,
        table["embedding"].iloc[0],
    )
    with job.for_model(mid, inputs):
        job.seed, job.device = spec.seed, str(device)
        job.write_parquet(table, table_path)
