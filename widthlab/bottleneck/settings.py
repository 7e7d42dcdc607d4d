"""The bottleneck stage's settings and vocabulary (torch-free).

:class:`BottleneckSettings` holds every key of the validated ``analyses.bottleneck`` section
(``BottleneckSettings.from_config``); its defaults equal the schema's
(``tests/unit/test_bottleneck_claims.py`` checks it). :class:`JobSettings` is what one study job
depends on (:func:`widthlab.bottleneck.jobs.job_settings` builds it as a plain dict for
Snakemake's params; ``JobSettings.from_dict`` reads it back in the job).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

PAPER = "Littwin et al. 2021"
VARIANTS = ("ntk", "finite", "bottleneck", "limit")
#: ``common``: every variant at the NTK's step; ``own``: at the same fraction of its own limit
STEP_RULES = ("common", "own")
RUN_KEYS = ["variant", "width", "k", "seed", "step_rule"]
CURVE_COLUMNS = [*RUN_KEYS, "step", "split", "loss", "accuracy"]
KERNEL_COLUMNS = [*RUN_KEYS, "step", "lambda_max", "kernel_change"]
SUMMARY_COLUMNS = [
    *RUN_KEYS,
    "lr",
    "stability_limit",
    "threshold",
    "steps",
    "steps_to_threshold",
    "diverged_at",
    "final_train_loss",
    "final_test_loss",
    "final_test_acc",
    "alignment_init",
    "alignment_trained",
    "cka_init_trained",
    "kernel_change",
    "lambda_max_init",
    "lambda_max_final",
    "lambda_max_peak",
    "seconds",
]
#: keys a regime may override
REGIME_OVERRIDES = ("depth", "lr", "lr_fraction", "steps", "threshold_fraction", "bottlenecks")
REGIME_DEFAULTS = {"target": "onehot", "component": 0, "scale": 1.0}
DEFAULT_REGIMES = {
    "classes": {"target": "onehot"},
    "lowpc_x10": {"target": "pc", "component": 16, "scale": 10.0, "lr_fraction": 0.1},
}


@dataclass(frozen=True)
class LinearSettings:
    """``analyses.bottleneck.linear``: the deep linear theory."""

    enabled: bool = True
    bottlenecks: tuple[int, ...] = (1, 4)
    width: int = 512
    enc_layers: int = 2
    dec_layers: int = 2
    lr: float = 0.4
    steps: int = 600
    n: int = 128
    dim: int = 16
    condition: float = 100.0
    scale: float = 1.0
    targets: tuple[str, ...] = ("top", "low")
    threshold_fraction: float = 0.001
    seeds: tuple[int, ...] = (0, 1, 2)
    simulate: bool = True
    curve_points: int = 40

    def __post_init__(self):
        for name in ("bottlenecks", "targets", "seeds"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @classmethod
    def from_dict(cls, settings: Mapping) -> LinearSettings:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in settings.items() if k in names})


@dataclass(frozen=True, kw_only=True)
class StudyKeys:
    """The keys of ``analyses.bottleneck`` every study job depends on (a regime may override
    depth, lr, lr_fraction, steps, threshold_fraction)."""

    dataset: str = "digits"
    n_train: int = 128
    n_test: int = 256
    depth: int = 3
    sigma_w2: float = 2.0
    sigma_b2: float = 0.0
    lr: float | None = None
    lr_fraction: float = 0.5
    steps: int = 500
    threshold_fraction: float = 0.02
    seeds: tuple[int, ...] = (0, 1, 2)
    kernel_subset: int = 64
    curve_points: int = 40


@dataclass(frozen=True, kw_only=True)
class BottleneckSettings(StudyKeys):
    """Every key of ``analyses.bottleneck`` (see ``docs/stages/bottleneck.md``)."""

    widths: tuple[int, ...] = (128,)
    finite_max_width: int = 256
    bottlenecks: tuple[int, ...] = (2, 8, 32)
    # declared before looking: the k every headline row is about (None: the smallest of a
    # regime's bottlenecks); the other k are its robustness alternatives
    primary_k: int | None = None
    # 1 − CKA and the relative kernel change above this count as "moved" (the lazy NTK has 0)
    change_tolerance: float = 0.02
    limit_decoder_width: int = 256
    regimes: Mapping[str, Mapping] = field(default_factory=lambda: dict(DEFAULT_REGIMES))
    linear: LinearSettings = field(default_factory=LinearSettings)
    enabled: bool = True

    def __post_init__(self):
        for name in ("widths", "bottlenecks", "seeds"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        for regime in self.regimes:
            ks = self.regime_bottlenecks(regime)
            if self.primary_k is not None and self.primary_k not in ks:
                raise ValueError(
                    f"analyses.bottleneck.primary_k = {self.primary_k} is not one of regime "
                    f"{regime!r}'s bottlenecks {list(ks)}"
                )

    @classmethod
    def from_config(cls, section: Mapping | None) -> BottleneckSettings:
        """From the validated ``analyses.bottleneck`` section (schema defaults filled in)."""
        section = dict(section or {})
        linear = LinearSettings.from_dict(section.pop("linear", {}))
        names = {f.name for f in fields(cls)}
        return cls(linear=linear, **{k: v for k, v in section.items() if k in names})

    def regime(self, name: str) -> dict:
        """The regime's spec with its defaults (target, component, scale)."""
        if name not in self.regimes:
            raise KeyError(f"analyses.bottleneck.regimes has no regime {name!r}")
        return {**REGIME_DEFAULTS, **self.regimes[name]}

    def regime_bottlenecks(self, name: str) -> tuple[int, ...]:
        return tuple(int(k) for k in self.regime(name).get("bottlenecks", self.bottlenecks))

    def primary(self, name: str) -> int:
        """The declared k of the regime's headline rows."""
        ks = self.regime_bottlenecks(name)
        return int(self.primary_k) if self.primary_k is not None else min(ks)


@dataclass(frozen=True, kw_only=True)
class JobSettings(StudyKeys):
    """What one study job (``ntk``, ``w<width>`` or ``limit``) of one regime depends on."""

    job: str
    regime: str
    target: str = "onehot"
    component: int = 0
    scale: float = 1.0
    bottlenecks: tuple[int, ...] = ()
    width: int | None = None  # w<width> jobs
    finite: bool = False  # w<width> jobs: also the net without a bottleneck
    decoder_width: int | None = None  # the limit job

    def __post_init__(self):
        for name in ("seeds", "bottlenecks"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

    @classmethod
    def from_dict(cls, settings: Mapping, job: str) -> JobSettings:
        names = {f.name for f in fields(cls)}
        return cls(job=job, **{k: v for k, v in settings.items() if k in names and k != "job"})

    @property
    def variants(self) -> tuple[str, ...]:
        if self.job == "ntk":
            return ("ntk",)
        if self.job == "limit":
            return ("limit",)
        return ("finite", "bottleneck")

    def to_dict(self) -> dict:
        return asdict(self)
