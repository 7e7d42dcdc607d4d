"""Rule train: one model of the grid, resumed from its checkpoint if a previous job was stopped."""

from widthlab.data import load_dataset
from widthlab.grid import parse_model_id
from widthlab.models import save_model
from widthlab.provenance import Job
from widthlab.train import TrainConfig, train

job = Job.from_snakemake(snakemake)
spec = parse_model_id(snakemake.wildcards.model)
settings = TrainConfig.from_dict({**snakemake.params.train, "device": snakemake.params.device})
job.seed = spec.seed
result = train(
    spec,
    load_dataset(snakemake.input.data),
    settings,
    checkpoint_path=snakemake.params.checkpoint,
    log=job.log.info,
)
job.device = result.metrics["device"]
job.write_parquet(result.history, snakemake.output.history)
job.save_json(snakemake.output.metrics, result.metrics)
save_model(result.model, spec, snakemake.output.model)
job.sidecar(snakemake.output.model)
