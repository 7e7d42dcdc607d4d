"""Rule joint_prune_clone: kept subsets of every model's last hidden layer, agreement and R²."""

from widthlab.data.npz import DatasetFiles
from widthlab.joint.measure import prune_vs_clone_models
from widthlab.provenance import Job

job = Job.from_snakemake(snakemake)
datasets = DatasetFiles(snakemake.input.data)
job.device = snakemake.params.device
table = prune_vs_clone_models(
    snakemake.input.models, datasets, snakemake.params.settings, job.device, job.log.info
)
job.write_parquet(table, snakemake.output[0])
