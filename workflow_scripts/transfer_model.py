"""Rules transfer_model_<job>: for each of the job's models, fine-tuning of a new last layer on
the target classes (trained vs initial backbone) and information per layer."""

import torch

from widthlab.data.npz import DatasetFiles
from widthlab.device import resolve_device
from widthlab.model_files import load_model
from widthlab.provenance import Job
from widthlab.transfer.measure import source_and_target, transfer_measurements
from widthlab.transfer.settings import TransferConfig, class_overlap, target_data_id

job = Job.from_snakemake(snakemake)
torch.set_num_threads(max(1, snakemake.threads))
cfg = TransferConfig.from_dict(snakemake.params.settings)
device = resolve_device(snakemake.params.device)
job.device = snakemake.params.device
datasets = DatasetFiles([*snakemake.input.data, *snakemake.input.target])
for model_path, table_path in zip(snakemake.input.model, snakemake.output, strict=True):
    model, spec = load_model(model_path, map_location=device)
    source_path, source_ds = datasets.of(spec.data.id)
    target_id = target_data_id(spec.data, cfg.target_classes, cfg.target_dataset)
    target_path, target_ds = datasets.of(target_id)
    overlap = class_overlap(spec.data, cfg.target_classes, cfg.target_dataset)
    if overlap:
        job.log.warning("%s: target classes %s were also source classes", spec.id, overlap)
    source, target_split = source_and_target(source_ds, target_ds)
    table = transfer_measurements(model, spec, source, target_split, cfg, device)
    last = table[(table["measure"] == "target_acc") & (table["shots"] == str(cfg.shots[-1]))]
    job.log.info("%s: %s", spec.id, last.groupby("backbone")["value"].mean().to_dict())
    with job.for_model(spec.id, [model_path, source_path, target_path]):
        job.seed = spec.seed
        job.write_parquet(table, table_path)
