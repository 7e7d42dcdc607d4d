"""What a job costs: expected run time, host memory and GPU memory, from model sizes alone.

The cluster requests of every rule come from here (``rules/common.smk``: request = estimate ×
``cluster.safety``, doubled on each retry), as does ``widthlab plan``. Nothing here imports torch.

The device model has a few numbers per device (:data:`DEVICES`): sustained rates of
multiply–accumulates of linear layers and of convolutions (a training step costs 3× its
forward MACs) and of float64 products; the time per operation of a step when kernel launches
or interpreter overhead dominate (``op_step_s``; a weight layer is 2 operations with its ReLU,
3 with a norm; an evaluation batch costs a third); and start-up (imports, CUDA
initialisation). A step takes the larger of its compute and its overhead, so narrow nets cost
their depth and wide ones their arithmetic. Rows:

``cpu``
    measured on the 2-core development machine, one thread (``python bench/cost_rates.py``
    prints the row and the model's error on its own runs).
``h100``
    from the planning measurement the study configs cite: ResNet-38 trained at 9.5 s per
    CIFAR-10 epoch (391 steps of 128 plus the epoch's evaluation of 60 000 images) at every
    width ×1…×10, i.e. launch-bound at ×1 (0.2 ms per operation and step over its 40
    convolutions, norms and ReLUs) and at least 1.4 × 10¹⁴ MAC/s sustained at ×10 (its
    8.3 GMACs per image in the same step time). ``python bench/cost_rates.py --device cuda``
    measures the row on a GPU.

Per-job models (seconds; each ``*_cost`` function documents its terms) count the dominant work
of the stage's code: training steps and per-epoch evaluation; forward passes of extraction and
ablation; Gram matrices and their products (float64) for CKA; scikit-learn fits on the host's
cores; and a fixed start-up. They are estimates to size requests, not predictions to the
second: the safety factor covers their error (the bench checks the CPU row on a model it was
not fitted to).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from widthlab.grid import DataSpec, ModelSpec
from widthlab.sizes import Architecture, DataShape, architecture, data_shape

MB = 1e6


@dataclass(frozen=True)
class Device:
    """How fast one device runs the workflow's work (see the module docstring)."""

    name: str
    macs_per_s: float  # sustained multiply-accumulates per second of linear layers
    conv_macs_per_s: float  # the same for convolutions (far lower than matmuls on CPUs)
    fp64_macs_per_s: float  # float64 matrix products (CKA Grams)
    op_step_s: float  # seconds per operation of a training step when overhead-bound
    startup_s: float  # process start: imports, CUDA initialisation, reading inputs
    process_mb: float  # host memory of a bare worker process (torch, pandas, CUDA libraries)
    context_mb: float  # GPU memory of the CUDA context and allocator slack (0 on a CPU)
    memory_gb: float | None  # the GPU's memory (None on a CPU)


DEVICES = {
    # bench/cost_rates.py on the 2-core development machine, one thread, two runs while other
    # jobs shared the cores: MACs 9.0e9 / 1.0e10, convolutions 5.7e9, float64 6.2e9, overhead
    # 2.1e-4 / 4.5e-4 s per MLP layer (two operations) and step, start-up 7.2 / 8.8 s,
    # 500-810 MB; the row takes the slower of each (the bench's own fit predicted a held-out
    # ResNet-8 epoch to 1.3x)
    "cpu": Device(
        "cpu",
        macs_per_s=9.0e9,
        conv_macs_per_s=4.0e9,
        fp64_macs_per_s=6.0e9,
        op_step_s=2.25e-4,
        startup_s=9.0,
        process_mb=800.0,
        context_mb=0.0,
        memory_gb=None,
    ),
    "h100": Device(
        "h100",
        macs_per_s=1.4e14,
        conv_macs_per_s=1.4e14,
        fp64_macs_per_s=2.5e13,
        op_step_s=1.97e-4,
        startup_s=20.0,
        process_mb=3000.0,
        context_mb=800.0,
        memory_gb=80.0,
    ),
}
# The host's cores run scikit-learn, NumPy and file compression in every job, GPU or not.
HOST = DEVICES["cpu"]
COMPRESS_BYTES_PER_S = 40e6  # zlib (np.savez_compressed) on float activations
WRITE_BYTES_PER_S = 500e6  # checkpoints (torch.save) on a cluster's shared filesystem
SKLEARN_ITERATIONS = 300  # lbfgs iterations a logistic fit typically runs before it stops


@dataclass(frozen=True)
class Estimate:
    """Expected wall time and peak memory of one job."""

    seconds: float
    host_mb: float
    gpu_mb: float = 0.0

    @property
    def minutes(self) -> float:
        return self.seconds / 60

    def plus(self, other: Estimate) -> Estimate:
        """Two parts of one job that hold memory at once (a process and its work)."""
        return Estimate(
            self.seconds + other.seconds,
            self.host_mb + other.host_mb,
            self.gpu_mb + other.gpu_mb,
        )

    def then(self, other: Estimate) -> Estimate:
        """This job's work followed by ``other``'s in the same process (time adds, memory
        peaks)."""
        return Estimate(
            self.seconds + other.seconds,
            max(self.host_mb, other.host_mb),
            max(self.gpu_mb, other.gpu_mb),
        )


@dataclass(frozen=True)
class CostSettings:
    """What the cost of a job depends on beyond its models: the device, the host's threads and
    the config sections that set the amount of work."""

    device: Device
    gpu: bool
    threads: int = 1
    probe_size: int = 0
    test_size: int = 0
    synthetic: Mapping[str, Any] = field(default_factory=dict)
    activations: Mapping[str, Any] = field(default_factory=dict)
    analyses: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], threads: int = 1) -> CostSettings:
        gpu = config.get("device", "cpu") != "cpu"
        cluster = config.get("cluster", {})
        return cls(
            device=DEVICES[cluster.get("throughput", "h100")] if gpu else DEVICES["cpu"],
            gpu=gpu,
            threads=threads,
            probe_size=config.get("data", {}).get("probe_size", 0),
            test_size=config.get("data", {}).get("test_size", 0),
            synthetic=config.get("data", {}).get("synthetic", {}),
            activations=config.get("activations", {}),
            analyses=config.get("analyses", {}),
        )

    def shape_of(self, data: DataSpec) -> DataShape:
        """The shape of ``data`` as the study uses it: its test split cut to ``data.test_size``."""
        shape = data_shape(data, self.synthetic)
        if self.test_size and self.test_size < shape.n_test:
            shape = replace(shape, n_test=self.test_size)
        return shape

    def shape(self, spec: ModelSpec) -> DataShape:
        return self.shape_of(spec.data)

    def arch(self, spec: ModelSpec) -> Architecture:
        return architecture(spec, self.shape(spec))

    def probes(self, spec: ModelSpec) -> int:
        n_test = self.shape(spec).n_test
        return n_test if not self.probe_size else min(self.probe_size, n_test)

    def host_seconds(self, macs: float) -> float:
        """Seconds of host-side linear algebra (scikit-learn, NumPy) on the job's threads."""
        return macs / (HOST.macs_per_s * self.threads)

    def base(self) -> Estimate:
        """A worker process that has started."""
        return Estimate(self.device.startup_s, self.device.process_mb, self.device.context_mb)


# ----------------------------------------------------------------------------------- pieces


def _mb(elements: float, nbytes: float = 4) -> float:
    return elements * nbytes / MB


def dataset_mb(shape: DataShape) -> float:
    """A dataset NPZ as loaded: both splits, float32."""
    return _mb((shape.n_train + shape.n_test) * shape.input_elements)


def on_device(s: CostSettings, seconds: float, host_mb: float, device_mb: float) -> Estimate:
    """Work whose ``device_mb`` sits on the GPU when the run has one, else in host memory."""
    if s.gpu:
        return Estimate(seconds, host_mb, device_mb)
    return Estimate(seconds, host_mb + device_mb)


def forward_seconds(archs: Sequence[Architecture], examples: int, batch: int, device: Device):
    """Forward passes (no gradient) of ``examples`` through models stepped together."""
    if examples <= 0:
        return 0.0
    overhead = math.ceil(examples / batch) * max(map(operations, archs)) * device.op_step_s / 3
    return max(overhead, examples * sum(compute_seconds(a, device) for a in archs))


def operations(arch: Architecture) -> int:
    """Operations of a forward pass that each cost a launch: a weight layer and its ReLU, and
    its norm in normalised nets."""
    return len(arch.layers) * (3 if arch.normalised else 2)


def compute_seconds(arch: Architecture, device: Device) -> float:
    """Seconds of arithmetic of one example's forward pass."""
    conv = sum(layer.macs for layer in arch.layers if layer.kernel > 1 or layer.positions > 1)
    return conv / device.conv_macs_per_s + (arch.macs - conv) / device.macs_per_s


def forward_mb(arch: Architecture, batch: int, taps: bool = True) -> float:
    """Device memory of a forward pass without gradients: the weights, a few live layer
    outputs and, when the taps are returned, every tap of the batch."""
    live = 3 * max(layer.outputs for layer in arch.layers)
    kept = sum(t.channels * t.height * t.width for t in arch.taps) if taps else 0
    return _mb(arch.parameters + batch * (live + kept))


def activation_factor(arch: Architecture) -> int:
    """Tensors a backward pass keeps per weight-layer output: the output and its ReLU, plus the
    norm's output in normalised nets."""
    return 3 if arch.normalised else 2


# ----------------------------------------------------------------------------------- training


def seen_examples(spec: ModelSpec, shape: DataShape) -> int:
    """The training examples a model is trained on, and measured on wherever a stage speaks of
    its *training* split (clones, joint): its ``train_size``, at most the split."""
    return min(spec.train_size or shape.n_train, shape.n_train)


def train_cost(specs: Sequence[ModelSpec], train: Mapping[str, Any], s: CostSettings) -> Estimate:
    """One training job: one model, or a pack stepped as one network (its layers launch once,
    its MACs add up). Every epoch runs ceil(n / batch) steps, evaluates the training subset and
    the test split, and checkpoints every ``checkpoint_every_steps`` steps; a job runs at most
    ``max_epochs`` epochs (stopping at zero training error only shortens it)."""
    shape = s.shape(specs[0])
    archs = [architecture(spec, shape) for spec in specs]
    n = seen_examples(specs[0], shape)
    batch = int(train.get("batch_size", 128))
    eval_batch = int(train.get("eval_batch_size", 1024))
    steps = math.ceil(n / batch)
    device = s.device
    compute = sum(compute_seconds(a, device) for a in archs)
    step = max(max(map(operations, archs)) * device.op_step_s, 3 * batch * compute)
    evaluation = forward_seconds(archs, n, eval_batch, device) + forward_seconds(
        archs, shape.n_test, eval_batch, device
    )
    params_mb = _mb(sum(a.parameters for a in archs))
    every = int(train.get("checkpoint_every_steps", 200)) or steps
    # a checkpoint holds the weights and the optimizer's moments (momentum: one, Adam: two)
    state = (3 if train.get("optimizer") == "adam" else 2) * params_mb * MB
    checkpoints = (math.ceil(steps / every) + 1) * state / WRITE_BYTES_PER_S
    epochs = int(train.get("max_epochs", 150))
    seconds = epochs * (steps * step + evaluation + checkpoints)

    device_mb = (
        _mb((n + shape.n_test) * shape.input_elements)  # the training subset and the test split
        + 4 * params_mb  # weights, gradients and up to two optimizer moments
        + _mb(batch * sum(a.activations * activation_factor(a) for a in archs))
        + max(forward_mb(a, eval_batch, taps=False) for a in archs)
    )
    host = 2 * dataset_mb(shape) + 3 * params_mb  # the NPZ and its copy; checkpoint state
    return s.base().plus(on_device(s, seconds, host, device_mb))


# -------------------------------------------------------------------------------- activations


def tap_elements(arch: Architecture, max_positions: int) -> int:
    return sum(tap.stored(max_positions) for tap in arch.taps)


def activations_cost(specs: Sequence[ModelSpec], s: CostSettings) -> Estimate:
    """Every tap of each model on the probe set, streamed through memory maps, then written as
    a compressed NPZ (``activations.dtype``); one model after another."""
    settings = s.activations
    batch = int(settings.get("batch_size", 512))
    nbytes = 2 if settings.get("dtype") == "float16" else 4
    max_positions = int(settings.get("max_conv_positions", 64))
    work = Estimate(0.0, 0.0)
    for spec in specs:
        shape, arch = s.shape(spec), s.arch(spec)
        probes = s.probes(spec)
        stored = probes * tap_elements(arch, max_positions) * nbytes
        seconds = forward_seconds([arch], probes, batch, s.device) + stored / COMPRESS_BYTES_PER_S
        batch_mb = _mb(batch * sum(t.channels * t.height * t.width for t in arch.taps))
        host = dataset_mb(shape) + batch_mb  # one batch of taps on its way to the memory maps
        device_mb = forward_mb(arch, batch)
        work = work.then(on_device(s, seconds, host, device_mb))
    return s.base().plus(work)


# ----------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Request:
    """What a job asks the scheduler for: minutes, host MB and GPU MB."""

    runtime: int
    mem_mb: int
    gpu_mem_mb: int


def request(
    estimate: Estimate, attempt: int = 1, safety: float = 1.5, min_minutes: int = 1
) -> Request:
    """``estimate`` × ``safety``, time and host memory doubled on every retry (training resumes
    from its checkpoint, so a longer retry continues rather than restarts), at least
    ``min_minutes``; GPU memory does not grow with retries (the device is what it is)."""
    scale = safety * 2 ** (max(1, attempt) - 1)
    return Request(
        runtime=max(1, min_minutes, math.ceil(estimate.minutes * scale)),
        mem_mb=max(1, math.ceil(estimate.host_mb * scale)),
        gpu_mem_mb=math.ceil(estimate.gpu_mb * safety),
    )


@dataclass(frozen=True)
class Ceilings:
    """The largest job a run may plan (``cluster.max_job_mem_gb``, ``cluster.max_job_hours``,
    and the GPU's memory); a model above them stops the run at start-up."""

    mem_gb: float
    hours: float
    gpu_mem_gb: float | None
    safety: float

    def problem(self, estimate: Estimate) -> str | None:
        asked = request(estimate, 1, self.safety)
        if asked.mem_mb > self.mem_gb * 1000:
            return (
                f"needs {_size(asked.mem_mb)} of host memory, above cluster.max_job_mem_gb "
                f"({self.mem_gb:g})"
            )
        if self.gpu_mem_gb is not None and asked.gpu_mem_mb > self.gpu_mem_gb * 1000:
            return (
                f"needs {_size(asked.gpu_mem_mb)} of GPU memory, above cluster.gpu_mem_gb "
                f"({self.gpu_mem_gb:g})"
            )
        if asked.runtime > self.hours * 60:
            return (
                f"needs {asked.runtime / 60:.3g} hours, above cluster.max_job_hours "
                f"({self.hours:g})"
            )
        return None


def _size(mb: float) -> str:
    for unit in ("MB", "GB", "TB", "PB"):
        if mb < 1000 or unit == "PB":
            return f"{mb:.3g} {unit}"
        mb /= 1000
    return f"{mb:.3g} PB"


def oversized_model(
    grid: str,
    axes: Mapping[str, Sequence],
    models: Iterable[tuple[ModelSpec, Mapping[str, Any]]],
    s: CostSettings,
    ceilings: Ceilings,
) -> str | None:
    """One line naming the grid key of the first model of grid ``grid`` whose training job
    would not fit, or None. The key is the axis that makes it too big: ``width`` if the grid's
    narrowest width would fit, else ``depth`` if its shallowest depth would, else the grid."""
    for spec, train in models:
        problem = ceilings.problem(train_cost([spec], train, s))
        if problem is None:
            continue
        key = f"grids.{grid}"
        for axis in ("width", "depth"):
            smaller = spec.with_(**{axis: min(axes.get(axis, [getattr(spec, axis)]))})
            if smaller != spec and ceilings.problem(train_cost([smaller], train, s)) is None:
                key = f"grids.{grid}.{axis}"
                break
        return f"config key {key}: model {spec.id} {problem}"
    return None
