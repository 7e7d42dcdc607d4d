"""Rule transfer_model: fine-tuning (trained vs initial backbone) and information per layer."""

import torch

from widthlab.data.npz import load_dataset
from widthlab.device import resolve_device
from widthlab.models import load_model
from widthlab.provenance import Job
from widthlab.transfer.measure import source_and_target, transfer_measurements
from widthlab.transfer.settings import TransferConfig, class_overlap

job = Job.from_snakemake(snakemake)
torch.set_num_threads(max(1, snakemake.threads))
cfg = TransferConfig.from_dict(snakemake.params.settings)
device = resolve_device(snakemake.params.device)
model, spec = load_model(snakemake.input.model, map_location=device)
source_ds = load_dataset(snakemake.input.data)
target_ds = load_dataset(snakemake.input.target)
job.seed, job.device = spec.seed, snakemake.params.device
overlap = class_overlap(spec.data, cfg.target_classes, cfg.target_dataset)
if overlap:
    job.log.warning("%s: target classes %s were also source classes", spec.id, overlap)
source, target = source_and_target(source_ds, target_ds)
table = transfer_measurements(model, spec, source, target, cfg, device)
accuracy = table[(table["measure"] == "target_acc") & (table["shots"] == str(cfg.shots[-1]))]
job.log.info("%s: %s", spec.id, accuracy.groupby("backbone")["value"].mean().to_dict())
job.write_parquet(table, snakemake.output[0])
