"""Which job of a per-model stage handles which model (no torch import: the workflow calls it
while it builds the DAG).

Interpreter start-up and imports (torch, pandas) cost a few CPU-seconds per job, more than the
per-model work of small models, so a stage's per-model work runs in ``jobs`` jobs that each
handle several models in one process. A model goes to job ``blake2b(id) mod jobs``, a stable
hash rather than its position in the grid, so adding a model to a grid reruns only the job it
lands in. Set ``jobs`` at least to the number of models (on a cluster with many GPUs) for about
one model per job.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable


def job_of(model_id: str, jobs: int) -> int:
    """The job (0 … jobs−1) that handles ``model_id``."""
    digest = hashlib.blake2b(model_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % jobs


def split_into_jobs(
    model_ids: Iterable[str], jobs: int, setting: str = "jobs"
) -> dict[int, list[str]]:
    """{job: model ids} for the non-empty jobs, ids sorted (so that reordering the config's grids
    changes no job's params); ``setting`` names the config key in the error for ``jobs`` < 1."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"config key {setting}: must be an integer ≥ 1, got {jobs!r}")
    out: dict[int, list[str]] = defaultdict(list)
    for mid in sorted(set(model_ids)):
        out[job_of(mid, jobs)].append(mid)
    return dict(sorted(out.items()))
