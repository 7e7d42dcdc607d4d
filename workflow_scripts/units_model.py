"""Rule units_model: zero-ablation prunability and PCA redundancy of one model on the test split."""

from widthlab.activations import resolve_device
from widthlab.data import load_dataset
from widthlab.models import load_model
from widthlab.provenance import Job
from widthlab.units import analyse_model, model_seed

job = Job.from_snakemake(snakemake)
settings = dict(snakemake.params.settings)
model, spec = load_model(snakemake.input.model)
dataset = load_dataset(snakemake.input.data)
device = resolve_device(snakemake.params.device)
seed = model_seed(settings["seed"], spec.seed)
job.seed, job.device = seed, str(device)
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
job.write_parquet(table, snakemake.output.table)
job.write_parquet(curves, snakemake.output.curves)
