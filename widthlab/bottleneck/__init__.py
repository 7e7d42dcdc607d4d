"""Infinite width with a bottleneck (Littwin et al. 2021): the NTK limit vs bottleneck networks.

Three views of the same question — does one narrow layer inside an otherwise infinitely wide
network make it learn features, and train faster than the lazy NTK limit?

* **Exact infinite-width baseline.** ReLU MLPs in NTK parameterisation
  (``h = σ_w W a / √fan_in + σ_b b``, all entries N(0, 1)): the NNGP and NTK by the arc-cosine
  recursion, kernel gradient descent for the loss ``1/(2N) Σ_i ‖f(x_i) − y_i‖²`` in closed form.
* **Networks with a bottleneck**, trained with plain full-batch GD: the bottleneck limit (an
  exact infinitely wide encoder, its k outputs moving through its fixed kernel, and a wide
  decoder: the object of the paper's claims), finite nets whose middle layer has k units, and
  finite nets without a bottleneck; each at the NTK's step and at the same fraction of its own
  stability limit ``2N/λ_max(Θ_0)``.
* **Deep linear theory.** An infinitely wide deep linear net with one width-``d`` bottleneck is
  the two-layer model ``F(x) = A·B·x``, checked against simulated wide nets.

Modules (the house shape; this file imports nothing):

- :mod:`.settings` — ``BottleneckSettings`` (the section), ``JobSettings`` (one job) and the
  stage's vocabulary (torch-free).
- :mod:`.kernels` — NNGP / NTK closed forms, stability limit, kernel dynamics.
- :mod:`.networks` — the finite nets and the bottleneck limit, their empirical NTKs and own
  stability limits, full-batch GD.
- :mod:`.linear` — the deep linear theory.
- :mod:`.measure` — the study of one job (torch).
- :mod:`.summary` — tables across jobs (torch-free).
- :mod:`.claims` — the headline rows, every verdict through :func:`widthlab.headline.claim`.
- :mod:`.jobs` — what ``rules/bottleneck.smk`` needs while building the DAG (torch-free).
- :mod:`.figures` — tables → figures (torch-free).

``docs/stages/bottleneck.md`` states the method, the outputs and the claims with their rules.
"""
