"""Rule activations: every tap of one model on the probe set, and its predictions."""

import tempfile

from widthlab.activations import extract, predictions_table, save_arrays
from widthlab.data import load_dataset
from widthlab.models import load_model
from widthlab.provenance import Job

job = Job.from_snakemake(snakemake)
settings = snakemake.params.settings
model, spec = load_model(snakemake.input.model)
dataset = load_dataset(snakemake.input.data)
job.seed, job.device = spec.seed, snakemake.params.device
with tempfile.TemporaryDirectory(prefix="widthlab-acts-") as workdir:
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
    job.save_npz(snakemake.output.layers, save_arrays(taps))
table = predictions_table(logits, dataset.y_probe, dataset.probe_idx)
job.log.info("%s: probe accuracy %.4f", spec.id, table["correct"].mean())
job.write_parquet(table, snakemake.output.predictions)
