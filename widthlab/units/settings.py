"""The units stage's settings: one frozen object built from the validated ``analyses.units``
section (``UnitsSettings.from_config``). The defaults here equal the schema's
(``tests/unit/test_units_claims.py`` checks it), so code and config cannot drift apart."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

DEFAULT_THRESHOLD = 0.8  # prunability: agreement with the intact model falls below this
DEFAULT_ENERGY = 0.95  # redundancy: share of the variance the kept principal components hold
DEFAULT_CORR_THRESHOLD = 0.5  # |Pearson r| at or above which two units count as similar
DEFAULT_MAX_ROWS = 50_000  # activation rows per layer for PCA
REDUNDANCY_RULES = ("product", "pcs")
COUNT_QUANTITIES = ("units", "prunable", "non_prunable", "redundant", "non_redundant")
ALL = "all"  # the layer name of a model's whole-network row


@dataclass(frozen=True)
class MeasureSettings:
    """How one model is measured: the keys of ``analyses.units`` a per-model job depends on."""

    fractions: int | tuple[float, ...] = 7  # n: linspace(0, 1, n); or the fractions themselves
    orders: int = 3
    threshold: float = DEFAULT_THRESHOLD
    energy: float = DEFAULT_ENERGY
    corr_threshold: float = DEFAULT_CORR_THRESHOLD
    max_rows: int = DEFAULT_MAX_ROWS
    redundancy_rule: str = "product"
    batch_size: int | None = None  # None: sized from the largest layer (measure.auto_batch_size)
    seed: int = 0

    def __post_init__(self):
        if self.redundancy_rule not in REDUNDANCY_RULES:
            raise ValueError(
                f"redundancy_rule must be one of {REDUNDANCY_RULES}, not {self.redundancy_rule!r}"
            )
        if isinstance(self.fractions, list):
            object.__setattr__(self, "fractions", tuple(self.fractions))


#: the section's keys a per-model job depends on (everything else only reaches the summary)
MEASURE_KEYS = tuple(f.name for f in fields(MeasureSettings))
#: the per-model defaults as a plain dict (measure.analyse_model overrides them key by key)
MODEL_SETTINGS = asdict(MeasureSettings())


@dataclass(frozen=True)
class UnitsSettings:
    """Every key of ``analyses.units``: the DAG's (grids, jobs, enabled), the per-model
    measurement's and the summary's."""

    grids: tuple[str, ...] = ("main",)
    enabled: bool = True
    jobs: int = 4
    level: float = 0.95
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    # declared before looking: the prunability threshold's alternatives; a verdict on prunable
    # counts that changes under one of them is not robust
    threshold_alternatives: tuple[float, ...] = (0.7, 0.9)

    def __post_init__(self):
        object.__setattr__(
            self, "threshold_alternatives", tuple(float(t) for t in self.threshold_alternatives)
        )

    @classmethod
    def from_config(cls, section: Mapping | None) -> UnitsSettings:
        """From the validated ``analyses.units`` section (schema defaults filled in)."""
        section = dict(section or {})
        grids = section.pop("grid", "main")
        measure = {k: section.pop(k) for k in MEASURE_KEYS if k in section}
        return cls(
            grids=(grids,) if isinstance(grids, str) else tuple(grids),
            measure=MeasureSettings(**measure),
            **section,
        )
