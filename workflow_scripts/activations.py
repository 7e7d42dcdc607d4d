"""Rules activations_<job>: every tap of each of the job's models on the probe set, and its
predictions."""

import tempfile

from widthlab.activations import extract, predictions_table, save_arrays
from widthlab.data.npz import DatasetFiles
from widthlab.model_files import load_model
from widthlab.provenance import Job

job = Job.from_snakemake(snakemake)
settings = snakemake.params.settings
job.device = snakemake.params.device
datasets = DatasetFiles(snakemake.input.data)
outputs = zip(
    snakemake.input.model, snakemake.output.layers, snakemake.output.predictions, strict=True
)
for model_path, layers_path, predictions_path in outputs:
    model, spec = load_model(model_path)
    data_path, dataset = datasets.of(spec.data.id)
    with (
        job.for_model(spec.id, [model_path, data_path]),
        tempfile.TemporaryDirectory(prefix="widthlab-acts-") as workdir,
    ):
        job.seed = spec.seed
        taps, logits = extract(
            model,
            dataset.x_probe,
            batch_size=settings["batch_size"],
            device=snakemake.params.device,
            dtype=settings["dtype"],
            max_conv_positions=settings["max_conv_positions"],
            workdir=workdir,
        )
        job.log.info("%s: %s", spec.id, {name: tap.shape for name, tap in taps.items()})
        job.save_npz(layers_path, save_arrays(taps))
        table = predictions_table(logits, dataset.y_probe, dataset.probe_idx)
        job.log.info("%s: probe accuracy %.4f", spec.id, table["correct"].mean())
        job.write_parquet(table, predictions_path)
