"""Rule dataset: raw files → one NPZ with splits and the fixed probe set."""

from widthlab.data.npz import dataset_arrays
from widthlab.data.sources import raw_files
from widthlab.data.splits import build_dataset
from widthlab.grid import parse_data_id
from widthlab.provenance import Job

job = Job.from_snakemake(snakemake)
spec = parse_data_id(snakemake.wildcards.data)
settings = snakemake.params.settings
job.seed = settings["seed"]
job.inputs += raw_files(spec, snakemake.params.data_root)
dataset = build_dataset(
    spec,
    snakemake.params.data_root,
    probe_size=settings["probe_size"],
    test_size=settings["test_size"],
    seed=settings["seed"],
    synthetic=settings.get("synthetic"),
)
job.log.info("%s: %d train, %d test, %d probe", spec.id, *dataset.sizes)
job.save_npz(snakemake.output[0], dataset_arrays(dataset))
