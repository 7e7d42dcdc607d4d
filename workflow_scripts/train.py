"""Rules train and train_pack*: one model, or a pack of small MLPs trained together; resumed
from the checkpoint if a previous job was stopped."""

from widthlab.data.npz import load_dataset
from widthlab.grid import parse_model_id
from widthlab.model_files import save_model
from widthlab.provenance import Job
from widthlab.training.checkpoint import die_with_parent, remove
from widthlab.training.settings import TrainConfig
from widthlab.training.train import train, train_pack


def as_list(paths):
    return [paths] if isinstance(paths, str) else list(paths)


job = Job.from_snakemake(snakemake)
specs = [parse_model_id(m) for m in snakemake.params.models]
settings = TrainConfig.from_dict({**snakemake.params.train, "device": snakemake.params.device})
dataset = load_dataset(snakemake.input.data)
die_with_parent(job.log.info)  # a SIGKILLed Snakemake stops its trainer (checkpoint written)
common = {
    "checkpoint_path": snakemake.params.checkpoint,
    "log": job.log.info,
    "keep_checkpoint": True,  # dropped below, once every output is written
}
if len(specs) == 1:
    results = [train(specs[0], dataset, settings, **common)]
else:
    results = train_pack(specs, dataset, settings, name=snakemake.params.pack, **common)
outputs = zip(
    specs,
    results,
    as_list(snakemake.output.model),
    as_list(snakemake.output.history),
    as_list(snakemake.output.metrics),
    strict=True,
)
for spec, result, model_path, history_path, metrics_path in outputs:
    with job.for_model(spec.id, [snakemake.input.data]):
        job.seed = spec.seed
        job.device = result.metrics["device"]
        job.write_parquet(result.history, history_path)
        job.save_json(metrics_path, result.metrics)
        save_model(result.model, spec, model_path)
        job.sidecar(model_path)
remove(snakemake.params.checkpoint)
