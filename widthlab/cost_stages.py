"""What the analysis jobs cost (the training and extraction jobs are in :mod:`widthlab.cost`).

Each function returns a :class:`~widthlab.cost.Estimate` for one job from its models and the
stage's config section, counting the dominant work of the stage's code (named per function).
Jobs over several models handle them one after another: times add, memory peaks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from widthlab.cost import (
    HOST,
    MB,
    SKLEARN_ITERATIONS,
    CostSettings,
    Estimate,
    compute_seconds,
    dataset_mb,
    forward_mb,
    forward_seconds,
    on_device,
    seen_examples,
)
from widthlab.grid import DataSpec, ModelSpec, parse_data_id
from widthlab.sizes import DATASETS, data_shape, hidden_widths

GRAM_BUDGET_BYTES = 2 * 1024**3  # widthlab.cka.DEFAULT_MAX_GRAM_BYTES
EVAL_BATCH = 1024
TSNE_SECONDS = 1e-3  # per point and log2(points): Barnes-Hut t-SNE, ≈ 60 s for 5000 points


def _mb(elements: float, nbytes: float = 4) -> float:
    return elements * nbytes / MB


# --------------------------------------------------------------------------------- similarity


def _gram_work(dims: Sequence[int], other: Sequence[int], n: int, s: CostSettings):
    """(seconds, MB held) of every layer-pair CKA between two stacks of layers: float64 Grams
    held within the Gram budget (beyond it, chunks of layers recompute their Grams for each
    partner chunk) and their stacked products."""
    per_chunk = max(1, int(GRAM_BUDGET_BYTES // (2 * n * n * 8)))
    chunks = math.ceil(max(len(dims), len(other)) / per_chunk)
    grams = (sum(dims) + sum(other)) * n * n * chunks
    products = len(dims) * len(other) * n * n
    rate = s.device.fp64_macs_per_s if s.gpu else HOST.fp64_macs_per_s * s.threads
    held = min(len(dims) + len(other), 2 * per_chunk) * n * n * 8
    return (grams + products) / rate, held / MB


def _stored_dims(spec: ModelSpec, s: CostSettings) -> list[int]:
    positions = int(s.activations.get("max_conv_positions", 64))
    return [tap.stored(positions) for tap in s.arch(spec).taps]


def similarity_models_cost(specs: Sequence[ModelSpec], s: CostSettings) -> Estimate:
    """Per model: all-pairs CKA of its stored taps for every full-data estimator, the minibatch
    estimators over ``passes`` shuffles of ``batch_size``, each layer's PC1 (covariance) and a
    logistic probe per layer (scikit-learn on the host)."""
    section = s.analyses.get("similarity", {})
    estimators = section.get("estimators", ["debiased", "minibatch", "linear"])
    mini = sum(e.startswith("minibatch") for e in estimators)
    full = len(estimators) - mini
    minibatch = section.get("minibatch", {})
    work = Estimate(0.0, 0.0)
    for spec in specs:
        n, dims = s.probes(spec), _stored_dims(spec, s)
        gram_s, held_mb = _gram_work(dims, dims, n, s)
        b = min(int(minibatch.get("batch_size", 256)), n)
        batch_s, _ = _gram_work(dims, dims, b, s)
        seconds = (
            full * gram_s + mini * int(minibatch.get("passes", 10)) * math.ceil(n / b) * batch_s
        )
        classes = s.shape(spec).classes
        seconds += sum(s.host_seconds(n * d * min(d, n)) for d in dims)  # PC1 of each layer
        seconds += sum(s.host_seconds(SKLEARN_ITERATIONS * 2 * n * d * classes) for d in dims)
        layers_mb = _mb(n * sum(dims)) + 2 * _mb(n * max(dims), 8)  # taps; a layer in float64
        work = work.then(on_device(s, seconds, layers_mb, held_mb))
    return s.base().plus(work)


def similarity_cross_cost(pairs: Iterable[tuple[ModelSpec, ModelSpec]], s: CostSettings):
    """Per configured pair: the cross-model CKA of every layer pair, per cross estimator."""
    estimators = len(s.analyses.get("similarity", {}).get("cross_estimators", ["debiased"]))
    work = Estimate(0.0, 0.0)
    for a, b in pairs:
        n, dims_a, dims_b = s.probes(a), _stored_dims(a, s), _stored_dims(b, s)
        seconds, held_mb = _gram_work(dims_a, dims_b, n, s)
        layers_mb = _mb(n * (sum(dims_a) + sum(dims_b)))
        work = work.then(on_device(s, estimators * seconds, layers_mb, held_mb))
    return s.base().plus(work)


# -------------------------------------------------------------------------------------- units


def units_cost(specs: Sequence[ModelSpec], s: CostSettings) -> Estimate:
    """Per model, on the test split: masked forward passes for ``orders`` × fractions, for all
    taps at once and each tap alone; PCA and unit correlations per tap on at most ``max_rows``
    samples (conv positions are samples)."""
    section = s.analyses.get("units", {})
    fractions = section.get("fractions", 7)
    fractions = fractions if isinstance(fractions, int) else len(fractions)
    orders, max_rows = int(section.get("orders", 3)), int(section.get("max_rows", 50000))
    work = Estimate(0.0, 0.0)
    for spec in specs:
        shape, arch = s.shape(spec), s.arch(spec)
        n = shape.n_test
        passes = orders * fractions * (1 + len(arch.taps)) + 2
        seconds = forward_seconds([arch], passes * n, EVAL_BATCH, s.device)
        rows = {t: min(max_rows, n * t.height * t.width) for t in arch.taps}
        seconds += sum(s.host_seconds(r * t.channels**2 * 2) for t, r in rows.items())
        samples = _mb(sum(r * t.channels for t, r in rows.items()))
        largest = _mb(max(r * t.channels for t, r in rows.items()), 8) * 3
        batch = forward_mb(arch, EVAL_BATCH)
        host = dataset_mb(shape) + samples + largest
        work = work.then(on_device(s, seconds, host, batch + _mb(arch.parameters)))
    return s.base().plus(work)


# ------------------------------------------------------------------------------------- clones


def chunk_sizes(width: int) -> list[int]:
    """1, 2, 4, … below ``width``, then ``width`` (as :func:`widthlab.clones.chunk_sizes`)."""
    return [2**k for k in range(max(0, math.ceil(math.log2(width))))] + [width]


def clones_cost(specs: Sequence[ModelSpec], s: CostSettings) -> Estimate:
    """Per model: the last hidden layer on train and test; per chunk size, the head on
    ``n_accuracy_chunks`` chunks, ``n_readout_chunks`` logistic readouts, ``n_r2_chunks`` ridge
    fits chunk → layer and ``n_ii_chunks`` information imbalances on ``ii_points`` points."""
    c = s.analyses.get("clones", {})
    work = Estimate(0.0, 0.0)
    for spec in specs:
        shape, arch = s.shape(spec), s.arch(spec)
        n = seen_examples(spec, shape) + shape.n_test
        w, k = arch.taps[-1].channels, shape.classes
        points = min(int(c.get("ii_points", 1000)), shape.n_test)
        macs = 0.0
        for size in chunk_sizes(w):
            macs += int(c.get("n_accuracy_chunks", 100)) * 2 * n * size * k
            macs += int(c.get("n_readout_chunks", 5)) * SKLEARN_ITERATIONS * 2 * n * size * k
            macs += int(c.get("n_r2_chunks", 40)) * (n * size * (size + w) + size**3)
            macs += int(c.get("n_ii_chunks", 10)) * points**2 * (size + w)
        seconds = forward_seconds([arch], n, EVAL_BATCH, s.device) + s.host_seconds(macs)
        host = dataset_mb(shape) + 3 * _mb(n * w, 8) + 4 * _mb(points**2, 8) + _mb(w * w, 8)
        work = work.then(on_device(s, seconds, host, forward_mb(arch, EVAL_BATCH)))
    return s.base().plus(work)


# ----------------------------------------------------------------------------------- transfer


def _target_shape(spec: ModelSpec, s: CostSettings):
    section = s.analyses.get("transfer", {})
    name = section.get("target_dataset") or spec.data.name
    classes = tuple(section.get("target_classes", (5, 6, 7, 8, 9)))
    return s.shape_of(DataSpec(name, classes))


def transfer_cost(specs: Sequence[ModelSpec], s: CostSettings) -> Estimate:
    """Per model, the trained model and its initialisation: features of every layer on the
    target splits (at most ``max_examples``); logistic last layers for every shot count and
    draw; per layer, leave-one-out ridge reconstruction of the input and a kNN read-out."""
    t = s.analyses.get("transfer", {})
    work = Estimate(0.0, 0.0)
    for spec in specs:
        shape, arch, target = s.shape(spec), s.arch(spec), _target_shape(spec, s)
        cap = int(t.get("max_examples", 5000))
        n = min(cap, target.n_train) + min(cap, target.n_test)
        dims = [tap.stored(int(t.get("max_conv_positions", 16))) for tap in arch.taps]
        shots = t.get("shots", [10, 100, "all"])
        fits = sum(1 if s_ == "all" else int(t.get("draws", 5)) for s_ in shots)
        w, k = dims[-1], target.classes
        macs = fits * int(t.get("max_iter", 200)) * 2 * target.n_train * w * k
        macs += sum(n * d * min(d, n) + min(d, n) ** 3 + n * n * d for d in dims)
        examples = target.n_train + target.n_test + n
        seconds = 2 * forward_seconds([arch], examples, EVAL_BATCH, s.device)
        seconds += 2 * s.host_seconds(macs)
        host = dataset_mb(shape) + dataset_mb(target) + 2 * _mb(n * sum(dims))
        host += _mb(n * n, 8) * 2
        work = work.then(on_device(s, seconds, host, forward_mb(arch, EVAL_BATCH)))
    return s.base().plus(work)


def atlas_cost(specs: Sequence[ModelSpec], s: CostSettings) -> Estimate:
    """Per model, a 2-D embedding (t-SNE) of one layer on the atlas images, for the model and
    its random twin, and the cell means; feature visualisation adds ``steps`` input
    optimisations."""
    atlas = s.analyses.get("transfer", {}).get("atlas", {})
    work = Estimate(0.0, 0.0)
    for spec in specs:
        shape, arch = s.shape(spec), s.arch(spec)
        n = (
            _target_shape(spec, s).n_test
            if atlas.get("images", "target") == "target"
            else s.probes(spec)
        )
        twins = 2 if atlas.get("random_control", True) else 1
        embedding = TSNE_SECONDS * n * math.log2(max(n, 2))
        seconds = twins * (embedding + forward_seconds([arch], n, EVAL_BATCH, s.device))
        if atlas.get("feature_visualisation"):
            cells = int(atlas.get("grid", 8)) ** 2
            seconds += cells * int(atlas.get("steps", 200)) * 3 * compute_seconds(arch, s.device)
        host = 2 * dataset_mb(shape) + twins * _mb(n * arch.taps[-1].stored(64)) + _mb(n * n, 8)
        work = work.then(on_device(s, seconds, host, forward_mb(arch, EVAL_BATCH)))
    return s.base().plus(work)


# -------------------------------------------------------------------------------------- joint


def joint_cost(specs: Sequence[ModelSpec], s: CostSettings) -> Estimate:
    """Per model: the last hidden layer on train and test; per kept fraction and subset, a
    masked forward of the head on test and a ridge fit kept → layer on train."""
    r = s.analyses.get("report", {})
    fits = len(r.get("kept_fractions", [0.125, 0.25, 0.5, 0.75])) * int(r.get("subsets", 20))
    work = Estimate(0.0, 0.0)
    for spec in specs:
        shape, arch = s.shape(spec), s.arch(spec)
        n, w = seen_examples(spec, shape) + shape.n_test, arch.taps[-1].channels
        seconds = forward_seconds([arch], n, EVAL_BATCH, s.device)
        seconds += s.host_seconds(fits * (n * w * 2 * w + w**3))
        host = dataset_mb(shape) + 3 * _mb(n * w, 8)
        work = work.then(on_device(s, seconds, host, forward_mb(arch, EVAL_BATCH)))
    return s.base().plus(work)


# --------------------------------------------------------------------------------- bottleneck


def bottleneck_study_cost(settings: Mapping[str, Any], job: str, s: CostSettings) -> Estimate:
    """One job of the bottleneck study (``ntk``, ``limit`` or ``w<width>``): full-batch GD in
    float64 for every seed and bottleneck k (and the net without one where ``finite``), under
    both step rules, each step 3 × the net's MACs on ``n_train`` examples, plus an empirical
    NTK on ``kernel_subset`` examples at each of ``curve_points`` record steps."""
    shape = data_shape(parse_data_id(settings["dataset"]), s.synthetic)
    n, d = int(settings["n_train"]) + int(settings["n_test"]), shape.input_elements
    depth, steps = int(settings["depth"]), int(settings["steps"])
    seeds, sub = len(settings["seeds"]), int(settings["kernel_subset"])
    ks = [int(k) for k in settings.get("bottlenecks", [])]
    if job == "ntk":
        macs = depth * n * n * d + steps * n * n * shape.classes
        nets: list[tuple[int, int | None]] = []
    else:
        width = int(settings.get("width") or settings.get("decoder_width") or 1)
        nets = [(width, k) for k in ks] + ([(width, None)] if settings.get("finite") else [])
        macs = 0
    for width, k in nets:
        sizes = [d, *hidden_widths(width, depth, k), shape.classes]
        params = sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))
        kernels = int(settings["curve_points"]) * sub * sub * params
        macs += seeds * 2 * (steps * 3 * n * params + kernels)  # 2: the common and own step
    rate = s.device.fp64_macs_per_s
    overhead = seeds * len(nets) * 2 * steps * 2 * (depth + 1) * s.device.op_step_s
    largest = max([w for w, _ in nets] or [1])
    memory = _mb(n * largest * (depth + 1) * 3 + sub * sub + largest * largest * depth, 8)
    return s.base().plus(on_device(s, max(macs / rate, overhead), _mb(n * d, 8) * 3, memory))


def bottleneck_linear_cost(settings: Mapping[str, Any], s: CostSettings) -> Estimate:
    """The deep linear theory: reduced dynamics and, with ``simulate``, wide linear nets of
    ``enc_layers + dec_layers`` layers of ``width`` trained for ``steps`` full-batch steps."""
    runs = len(settings["bottlenecks"]) * len(settings["targets"]) * len(settings["seeds"])
    layers = int(settings["enc_layers"]) + int(settings["dec_layers"])
    width, n = int(settings["width"]), int(settings["n"])
    macs = runs * int(settings["steps"]) * 3 * n * layers * width * width
    seconds = macs / s.device.fp64_macs_per_s if settings.get("simulate", True) else 0.0
    memory = _mb(layers * width * width * 4 + n * width * layers, 8)
    return s.base().plus(on_device(s, seconds, memory, memory))


# ------------------------------------------------------------------------- data and summaries


def dataset_cost(data_id: str, s: CostSettings) -> Estimate:
    """Reading the raw files, ordering and standardising: a few copies of the whole dataset
    (float32), on the host."""
    shape = data_shape(parse_data_id(data_id), s.synthetic)
    full = DATASETS[parse_data_id(data_id).name]
    raw = _mb((full[2] + full[3]) * shape.input_elements)
    return Estimate(HOST.startup_s + raw * MB / 50e6, HOST.process_mb + 4 * raw)


def summary_cost(models: int, s: CostSettings, per_model_mb: float = 20.0) -> Estimate:
    """A job that reads one table per model and draws figures, on the host: start-up (pandas,
    matplotlib, seaborn) and a second and ``per_model_mb`` per model."""
    return Estimate(
        3 * HOST.startup_s + 1.0 * models, HOST.process_mb + 500 + per_model_mb * models
    )
