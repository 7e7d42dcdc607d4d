"""The clones stage's settings: one frozen object built from the validated ``analyses.clones``
section (``CloneSettings.from_config``). The defaults here equal the schema's
(``tests/unit/test_clones_settings.py`` checks it), so code and config cannot drift apart."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

ACCURACY_METHODS = ("head", "head_rescaled", "readout")


@dataclass(frozen=True)
class MeasureSettings:
    """How one model is measured: how many chunks each measurement averages over, and the
    estimators' settings (the keys a per-model job depends on)."""

    n_accuracy_chunks: int = 100  # head and rescaled head (train and test)
    n_readout_chunks: int = 5  # retrained readouts (one LogisticRegression fit per chunk)
    n_r2_chunks: int = 40  # ridge R²
    n_corr_chunks: int = 10  # residual correlation (the first of the ridge chunks; W² each)
    n_ii_chunks: int = 10  # information imbalance (one N×N distance matrix per chunk)
    ridge_alpha: float = 1e-8
    r2_fit_split: str = "train"  # "train": out of sample on test; "test": the official code
    ii_points: int = 1000
    ii_ties: str = "average"
    readout_c: float = 100.0
    readout_max_iter: int = 200
    readout_stop: bool = True  # no readouts above the first size where every chunk fits train
    seed: int = 0
    device: str = "cpu"  # from the config's top-level `device`, not from this section
    chunk_sizes: tuple[int, ...] | None = None  # default 1, 2, 4, …, W

    def __post_init__(self):
        if self.r2_fit_split not in ("train", "test"):
            raise ValueError(f"r2_fit_split must be 'train' or 'test', not {self.r2_fit_split!r}")
        if self.ii_ties not in ("average", "index"):
            raise ValueError(f"ii_ties must be 'average' or 'index', not {self.ii_ties!r}")

    @classmethod
    def from_config(cls, values: Mapping | None) -> MeasureSettings:
        values = dict(values or {})
        if values.get("chunk_sizes") is not None:
            values["chunk_sizes"] = tuple(int(s) for s in values["chunk_sizes"])
        return cls(**values)


#: the section's keys a per-model job depends on (everything else only reaches the summary)
MEASURE_KEYS = tuple(f.name for f in fields(MeasureSettings) if f.name != "device")


@dataclass(frozen=True)
class CloneThresholds:
    """The clone-size rule; a threshold set to None is not applied."""

    ii_max: float | None = 0.05  # Δ(chunk → full) ≤ ii_max
    r2_min: float | None = 0.9  # ridge R² ≥ r2_min
    train_error_max: float | None = 0.0  # mean chunk training error ≤ train_error_max
    accuracy_method: str = "readout"  # whose training error: head | head_rescaled | readout

    def __post_init__(self):
        if self.accuracy_method not in ACCURACY_METHODS:
            raise ValueError(
                f"accuracy_method must be one of {ACCURACY_METHODS}, not {self.accuracy_method!r}"
            )

    @classmethod
    def from_config(cls, values: Mapping | CloneThresholds | None) -> CloneThresholds:
        if isinstance(values, CloneThresholds):
            return values
        return cls(**dict(values or {}))


@dataclass(frozen=True)
class CloneSettings:
    """Every key of ``analyses.clones``: the DAG's (grids, jobs, enabled), the per-model
    measurement's and the summary's."""

    grids: tuple[str, ...] = ("main",)  # the first is the primary grid
    enabled: bool = True
    jobs: int = 4
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    thresholds: CloneThresholds = field(default_factory=CloneThresholds)
    gap_method: str = "head"  # the chunk accuracy behind chunk test error − error_∞
    # declared before looking: each replaces some thresholds; a verdict on clone counts that
    # changes under one of them is not robust
    threshold_alternatives: tuple[Mapping, ...] = field(
        default_factory=lambda: (
            {"ii_max": 0.1, "r2_min": 0.8},
            {"ii_max": 0.025, "r2_min": 0.95},
        )
    )
    critical_width: int | None = None  # None: per seed, from the other seeds' hinge fit
    ensemble_min_members: int = 5  # error_∞ needs an ensemble of at least this many seeds
    gap_floor: float | None = None  # None: one test example (1 / number of test examples)

    def __post_init__(self):
        if self.gap_method not in ACCURACY_METHODS:
            raise ValueError(
                f"gap_method must be one of {ACCURACY_METHODS}, not {self.gap_method!r}"
            )
        object.__setattr__(
            self, "threshold_alternatives", tuple(dict(a) for a in self.threshold_alternatives)
        )
        self.alternative_thresholds()  # an unknown key or method fails here, not later

    def alternative_thresholds(self) -> tuple[CloneThresholds, ...]:
        """The clone-size rule under each declared alternative."""
        return tuple(replace(self.thresholds, **alt) for alt in self.threshold_alternatives)

    @property
    def primary(self) -> str:
        return self.grids[0]

    @classmethod
    def from_config(cls, section: Mapping | None, device: str = "cpu") -> CloneSettings:
        """From the validated ``analyses.clones`` section (schema defaults filled in)."""
        section = dict(section or {})
        grids = section.pop("grid", "main")
        measure = {k: section.pop(k) for k in MEASURE_KEYS if k in section}
        return cls(
            grids=(grids,) if isinstance(grids, str) else tuple(grids),
            measure=MeasureSettings.from_config({**measure, "device": device}),
            thresholds=CloneThresholds.from_config(section.pop("thresholds", None)),
            **section,
        )
