"""The similarity stage's vocabulary and settings (torch-free): estimator codes and their
readable names, and :class:`SimilaritySettings`, the stage's one settings object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: an estimator code with this suffix is the same estimator on layers whose first principal
#: component was removed (Nguyen et al.: removing PC1 removes the block)
PC1_REMOVED_SUFFIX = "_pc1_removed"

ESTIMATOR_NAMES = {
    "linear": "linear CKA, biased HSIC (rises with width on its own)",
    "debiased": "linear CKA, unbiased HSIC₁ on all probe examples",
    "minibatch": "linear CKA, minibatch-accumulated unbiased HSIC₁",
    "rbf": "RBF CKA, biased HSIC",
}


def estimator_name(estimator: str) -> str:
    """A readable description of an estimator code (``<est>_pc1_removed`` included)."""
    base = estimator.removesuffix(PC1_REMOVED_SUFFIX)
    name = ESTIMATOR_NAMES.get(base, base)
    return f"{name}, PC1 removed from every layer" if estimator != base else name


# --------------------------------------------------------------------------------------------
# The stage's settings, built once from the validated `analyses.similarity` section
# --------------------------------------------------------------------------------------------

#: what the per-model jobs, the cross-model job and the summary each read (their rule params,
#: so changing a summary-only key reruns only the summary)
MODEL_KEYS = ("estimators", "minibatch", "probe", "rbf_threshold")
CROSS_KEYS = ("cross_estimators", "minibatch", "rbf_threshold")
SUMMARY_KEYS = ("width_estimator", "estimators", "blocks", "errors")


@dataclass(frozen=True)
class SimilaritySettings:
    """Every key of ``analyses.similarity`` with the schema's defaults (a test keeps them equal).
    Nested sections stay mappings: the measure code reads them as the config states them."""

    grids: tuple[str, ...] = ("main",)
    enabled: bool = True
    estimators: tuple[str, ...] = ("debiased", "minibatch", "linear", "debiased_pc1_removed")
    width_estimator: str = "debiased"
    cross_estimators: tuple[str, ...] = ("debiased", "linear")
    minibatch: Mapping[str, Any] = field(
        default_factory=lambda: {"batch_size": 256, "passes": 10, "seed": 0}
    )
    rbf_threshold: float = 1.0
    probe: Mapping[str, Any] = field(
        default_factory=lambda: {"test_fraction": 0.3, "c": 1.0, "max_iter": 5000, "seed": 0}
    )
    blocks: Mapping[str, Any] = field(
        default_factory=lambda: {
            "threshold": 0.9,
            "min_size": 3,
            "threshold_alternatives": [0.85, 0.95],
        }
    )
    pairs: Mapping[str, Any] = field(
        default_factory=lambda: {
            "seeds": True,
            "wide_vs_deep": True,
            "max_parameter_ratio": 2.0,
            "explicit": [],
        }
    )
    errors: Mapping[str, Any] = field(
        default_factory=lambda: {
            "test": "permutation",
            "permutations": 10000,
            "alpha": 0.05,
            "seed": 0,
        }
    )
    jobs: int = 4

    def __post_init__(self):
        # what the schema cannot express: the width estimator is computed within and across
        for key in ("estimators", "cross_estimators"):
            if self.width_estimator not in getattr(self, key):
                raise ValueError(
                    f"config key analyses.similarity.{key}: must include the width_estimator "
                    f"{self.width_estimator!r}"
                )

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> SimilaritySettings:
        """From the validated section (the schema has filled every default)."""
        values = dict(section)
        grid = values.pop("grid", "main")
        values["grids"] = (grid,) if isinstance(grid, str) else tuple(grid)
        for key in ("estimators", "cross_estimators"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def _params(self, keys: tuple[str, ...]) -> dict:
        return {key: _plain(getattr(self, key)) for key in keys}

    def model_params(self) -> dict:
        return self._params(MODEL_KEYS)

    def cross_params(self) -> dict:
        return self._params(CROSS_KEYS)

    def summary_params(self) -> dict:
        return self._params(SUMMARY_KEYS)


def _plain(value):
    """Tuples as lists and mappings as dicts: the shape the config (and every reader) has."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
