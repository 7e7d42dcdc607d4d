"""Rule clones_model: chunks of one model's last hidden layer on the train and test splits."""

import torch

from widthlab.activations import resolve_device
from widthlab.clones import CloneConfig, analyse_model
from widthlab.data import load_dataset
from widthlab.models import load_model
from widthlab.provenance import Job

job = Job.from_snakemake(snakemake)
torch.set_num_threads(max(1, snakemake.threads))
device = resolve_device(snakemake.params.device)
config = CloneConfig.from_dict({**snakemake.params.settings, "device": str(device)})
model, spec = load_model(snakemake.input.model)
dataset = load_dataset(snakemake.input.data)
job.seed, job.device = config.seed, str(device)
table, logits = analyse_model(
    model,
    dataset.x_train,
    dataset.y_train,
    dataset.x_test,
    dataset.y_test,
    config,
    spec.columns(),
    log=job.log.info,
)
job.write_parquet(table, snakemake.output.table)
job.write_parquet(logits, snakemake.output.logits)
