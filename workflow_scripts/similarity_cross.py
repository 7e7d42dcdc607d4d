"""Rule similarity_cross: CKA between every layer of model A and every layer of model B, for
each configured pair (seed pairs, wide vs deep, explicit)."""

import pandas as pd

from widthlab.activations import load_layers
from widthlab.provenance import Job
from widthlab.similarity.measure import cross_pair_table, limit_threads

job = Job.from_snakemake(snakemake)
limit_threads(snakemake.threads)
job.device = snakemake.params.device
paths = dict(zip(snakemake.params.models, snakemake.input.layers, strict=True))
cache = {}


def layers_of(mid):
    if mid not in cache:
        cache[mid] = load_layers(paths[mid])
    return cache[mid]


tables = []
for kind, a, b in snakemake.params.pairs:
    pair_table = cross_pair_table(
        (kind, a, b), layers_of(a), layers_of(b), snakemake.params.settings, job.device
    )
    tables.append(pair_table)
    job.log.info("%s: %s vs %s", kind, a, b)
columns = ["kind", "model_a", "model_b", "layer_a", "layer_b", "name_a", "name_b"]
empty = pd.DataFrame(columns=[*columns, "estimator", "cka"])
job.write_parquet(pd.concat(tables, ignore_index=True) if tables else empty, snakemake.output.table)
