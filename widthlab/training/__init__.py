"""Training the grid's models, one at a time or packed: deterministic, checkpointed,
resumable, preemption-safe.

Read in this order:

- :mod:`~widthlab.training.settings` — :class:`TrainConfig`, how to train (no torch).
- :mod:`~widthlab.training.train` — :func:`train` (one model) and :func:`train_pack` (small
  MLPs stacked), the entry points.
- :mod:`~widthlab.training.loop` — :func:`fit`, the one loop: steps, epoch ends, stopping.
- :mod:`~widthlab.training.state` — :class:`TrainState`, where training stands (a dataclass).
- :mod:`~widthlab.training.learners` — what the loop steps: one model, or a pack of MLPs as one
  stacked network (one ``baddbmm`` per layer), each row stopping at its own epoch.
- :mod:`~widthlab.training.checkpoint` — checkpoints, resume, SIGTERM / SIGUSR1.
- :mod:`~widthlab.training.pieces` — losses, schedule, batches, augmentation, determinism.
- :mod:`~widthlab.training.summary` — ``history.parquet`` and ``metrics.json`` per model, the
  stop rule, the tables across models (no torch).
- :mod:`~widthlab.training.packs` — which models train together (no torch).

Determinism: ``torch.manual_seed(spec.seed)`` before a model is built; shuffling and
augmentation draw from their own generator, seeded from ``spec.seed``; on CPU deterministic
algorithms are switched on while training. The whole (subsampled) dataset sits on the device
and batches are drawn by indexing a per-epoch permutation; augmentation runs on the device. A
run stopped at any step and resumed from its checkpoint ends with weights bit-identical (CPU,
same thread count) to an uninterrupted run.
"""
