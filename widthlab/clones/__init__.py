"""Clones of the last hidden layer (Doimo et al., NeurIPS 2022, "representation mitosis").

The paper: if the last hidden layer is wide enough, its units split into groups ("clones") that
carry the same information and differ only by independent noise; the number of clones grows
linearly with the width above a critical width; clones appear once training reaches zero
training error (helped by regularisation); and a wide net with clones "performs significantly
better than" an ensemble of narrow nets whose last layer has the size of a clone.
``docs/stages/clones.md`` describes the method, the outputs and the claims with their rules.

Modules (the house shape; this file imports nothing):

- :mod:`.settings` — ``CloneSettings`` (the whole ``analyses.clones`` section),
  ``MeasureSettings`` (what a per-model job depends on) and ``CloneThresholds`` (torch-free).
- :mod:`.chunks` — chunk sizes and seeded random chunks (numpy only).
- :mod:`.measure` — one model: its last hidden layer, every chunk measurement, the per-model
  table and its test logits (torch); the estimators live in :mod:`.accuracy` (trained head,
  rescaled head, retrained readout), :mod:`.regression` (ridge R², residual correlation) and
  :mod:`.imbalance` (information imbalance), with :mod:`.tensors` for conversions.
- :mod:`.summary` — tables across models: clone size and #clones per model, growth fits,
  conditions, ensembles and the chunk-error gap (torch-free); :mod:`.growth` and
  :mod:`.ensembles` hold their mathematics (numpy only).
- :mod:`.evidence` — the per-seed tables behind each claim; :mod:`.claims` — the headline
  rows, every verdict through :func:`widthlab.headline.claim` (both torch-free).
- :mod:`.jobs` — what the rules need while building the DAG (torch-free).
- :mod:`.figures` — tables → figures (torch-free).
"""
