"""Frivolous units (Casper et al., AAAI 2021): prunable and redundant units, and how they grow.

Method facts follow the official code (``xboix/frivolous_dnns``); where this module decides
something the code leaves open, the choice is written here.

Prunability (zero-ablation)
    A unit is switched off by zeroing its post-activation output (a whole channel in a conv map),
    through the ``masks`` argument of :class:`TappedModel.forward`. For each of ``orders`` random
    orders one permutation per tap is drawn (seeded); at fraction ``f`` the first
    ``floor(f · units + 1e-9)`` units of that permutation are ablated (as ``int(f · n)`` in the
    official code, with a tolerance so ``f · n`` a hair below an integer is not rounded down).
    The ablated sets are nested along ``f``. Scope ``"all"`` ablates every tap at once at the same
    fraction; scope ``<tap>`` ablates only that tap (the per-layer curves). The metric is the share
    of the examples whose predicted label equals the intact model's prediction.
    Batching: one forward pass serves many masks. The examples are repeated along the batch and
    every copy gets its own ``(batch, units)`` mask row, so up to ``batch_size`` rows
    (configurations × examples) go through the model at once, on the model's device.

Prunability (a number)
    :func:`crossing` finds the fraction where an agreement curve first falls below ``threshold``
    (default 0.8), linearly interpolated between the last grid point at or above it and the first
    below it. Curves that never fall below give the largest fraction of the grid (1.0 on the
    default grid) with flag ``never_crosses``; curves that start below (agreement at the smallest
    fraction < threshold) give 0.0 with flag ``starts_below``. The per-model prunability is read
    off the curve averaged over orders; the spread over orders (one crossing per order) is kept as
    ``prunability_sd``.

Redundancy (PCA compressibility)
    Per tap, PCA of the test activations (conv maps: every spatial position is a sample; rows are
    subsampled to at most ``max_rows`` = 50 000, seeded). ``n_pcs`` = the smallest number of
    principal components whose variance is ≥ 95 % of the total; compressibility =
    ``(units − n_pcs) / units``, the fraction of dimensions that can be dropped keeping 95 % of the
    variance (``[10, 10, 1e-6 × 8]`` → 0.8). A layer whose units all have zero variance has
    ``n_pcs = 0`` and compressibility 1 (flag ``no_variance``). (The official
    ``get_compressability95`` returns one more dimension than can be dropped, because its loop
    counts the eigenvalue that crosses 5 %; here the count is exact.)
    Auxiliary: the mean over units of the number of *other* units with |Pearson r| ≥ 0.5. Dead units
    (zero variance, relative tolerance ``1e-12`` of the layer's largest variance) have no defined
    correlation; they count 0 and are counted for nobody (the official code's NaN correlations
    would count them −1). Their number is kept as ``dead_units``.

Unit counts (per layer and for the whole network)
    ``prunable = prunability × units``; ``non_prunable = units − prunable``. Redundant units are
    counted among the non-prunable ones. Two rules (``redundancy_rule``):

    - ``"product"`` (default, Casper et al.'s counting): ``redundant = compressibility ×
      non_prunable``; the compressibility of the whole layer stands in for that of its
      non-prunable units (prunability identifies a *number* of units, not which ones).
    - ``"pcs"``: ``non_redundant = min(n_pcs, non_prunable)``, ``redundant = non_prunable −
      non_redundant``: the non-prunable units need at least ``n_pcs`` dimensions, the rest are
      linear combinations of those. Exact on hand-built layers that mix dead units (prunable and
      compressible at once, which ``"product"`` counts twice) with duplicated units.

    ``non_redundant = non_prunable − redundant``. Network rows (``layer == "all"``) take the
    prunability of the all-layer curve, sum units and counts over the taps (each tap loses the same
    fraction of units) and unit-weight the compressibility and the correlation count.

Growth statistic g
    Counts of one quantity along a width series ``W, 2W, 4W, …`` (a ×2 series is required); ``g``
    = mean of ``count(2W) / count(W)`` over the successive doublings. Normalising to the widest
    model does not change the ratios. ``g = 2`` grows like the width, ``g > 2`` faster, ``g = 1``
    stays constant. Doublings whose smaller count is 0 have no ratio and are skipped (if none is
    left, g is NaN).

Modules (the house shape; this file imports nothing):

- :mod:`.settings` — ``UnitsSettings`` (the whole ``analyses.units`` section) and the defaults
  the schema states (torch-free).
- :mod:`.ablation` — zero-ablation curves and prunability (torch, imported when called).
- :mod:`.redundancy` — PCA compressibility and the correlation count (numpy).
- :mod:`.counts` — prunable / redundant unit counts and the per-model table (torch-free).
- :mod:`.measure` — one model: the per-model job (torch).
- :mod:`.summary` — tables across models: counts, growth g, slopes, factor effects (torch-free).
- :mod:`.claims` — the headline rows, every verdict through :func:`widthlab.headline.claim`.
- :mod:`.jobs` — what ``rules/units.smk`` needs while building the DAG (torch-free).
- :mod:`.figures` — tables → figures (torch-free).

``docs/stages/units.md`` states the method, the outputs and each claim with its rule.
"""
