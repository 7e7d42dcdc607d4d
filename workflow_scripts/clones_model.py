"""Rules clones_model_<job>: chunks of the last hidden layer of each of the job's models on the
train and test splits."""

import torch

from widthlab.clones.measure import analyse_model
from widthlab.clones.settings import MeasureSettings
from widthlab.data.npz import DatasetFiles
from widthlab.device import resolve_device
from widthlab.model_files import load_model
from widthlab.provenance import Job

job = Job.from_snakemake(snakemake)
torch.set_num_threads(max(1, snakemake.threads))
device = resolve_device(snakemake.params.device)
settings = MeasureSettings.from_config({**snakemake.params.settings, "device": str(device)})
job.seed, job.device = settings.seed, str(device)
datasets = DatasetFiles(snakemake.input.data)
outputs = zip(snakemake.input.model, snakemake.output.table, snakemake.output.logits, strict=True)
for model_path, table_path, logits_path in outputs:
    model, spec = load_model(model_path)
    data_path, dataset = datasets.trained_on(spec)
    table, logits = analyse_model(
        model,
        dataset.x_train,
        dataset.y_train,
        dataset.x_test,
        dataset.y_test,
        settings,
        spec.columns(),
        log=job.log.info,
    )
    with job.for_model(spec.id, [model_path, data_path]):
        job.write_parquet(table, table_path)
        job.write_parquet(logits, logits_path)
