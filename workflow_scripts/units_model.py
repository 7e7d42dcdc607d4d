"""Rules units_model_<job>: zero-ablation prunability and PCA redundancy of each of the job's
models on the test split."""

from widthlab.data.npz import DatasetFiles
from widthlab.device import resolve_device
from widthlab.model_files import load_model
from widthlab.provenance import Job
from widthlab.units.measure import analyse_model, model_seed

job = Job.from_snakemake(snakemake)
settings = dict(snakemake.params.settings)
device = resolve_device(snakemake.params.device)
job.device = str(device)
datasets = DatasetFiles(snakemake.input.data)
outputs = zip(snakemake.input.model, snakemake.output.table, snakemake.output.curves, strict=True)
for model_path, table_path, curves_path in outputs:
    model, spec = load_model(model_path)
    data_path, dataset = datasets.of(spec.data.id)
    seed = model_seed(settings["seed"], spec.seed)
    table, curves = analyse_model(
        model.to(device), dataset.x_test, dataset.y_test, settings, spec.columns(), seed
    )
    network = table[table["layer"] == "all"].iloc[0]
    job.log.info(
        "%s: %d test examples, prunability %.3f (%s), compressibility %.3f",
        spec.id,
        network["examples"],
        network["prunability"],
        network["flags"] or "crosses",
        network["compressibility"],
    )
    with job.for_model(spec.id, [model_path, data_path]):
        job.seed = seed
        job.write_parquet(table, table_path)
        job.write_parquet(curves, curves_path)
