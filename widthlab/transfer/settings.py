"""The transfer stage's settings and vocabulary (torch-free)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

from widthlab.grid import DataSpec

if TYPE_CHECKING:  # torch is imported where it is used, so tables and figures never load it
    pass

PAPER = "Gilboa & Gur-Ari 2019"
BACKBONES = ("trained", "random")
ALL = "all"
LAST = "last"
EMBEDDINGS = ("auto", "tsne", "umap")
TABLE_COLUMNS = [
    "backbone",
    "analysis",
    "layer",
    "layer_index",
    "images",
    "shots",
    "examples",
    "draw",
    "measure",
    "value",
]


class TransferError(ValueError):
    """Bad settings or inputs of the transfer stage (the message names the key or file)."""


# ----------------------------------------------------------------------------------- settings


@dataclass
class TransferConfig:
    """Settings of the per-model job (``analyses.transfer`` in the config; see the module doc)."""

    target_classes: tuple[int, ...] = (5, 6, 7, 8, 9)
    target_dataset: str | None = None
    shots: tuple = (10, 100, ALL)
    draws: int = 5
    C: float = 1.0
    max_iter: int = 200
    knn_k: int = 5
    ridge_alphas: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
    max_examples: int = 5000
    max_conv_positions: int = 16
    batch_size: int = 1024
    seed: int = 0

    def __post_init__(self):
        self.target_classes = tuple(int(c) for c in self.target_classes)
        self.shots = tuple(ALL if s == ALL else int(s) for s in self.shots)
        self.ridge_alphas = tuple(float(a) for a in self.ridge_alphas)
        problems = []
        if (
            len(set(self.target_classes)) != len(self.target_classes)
            or len(self.target_classes) < 2
        ):
            problems.append(
                f"target_classes must be ≥ 2 distinct classes, got {self.target_classes}"
            )
        if not self.shots or any(s != ALL and s < 1 for s in self.shots):
            problems.append(f"shots must be positive integers or 'all', got {self.shots}")
        for name in ("draws", "max_iter", "knn_k", "max_examples", "max_conv_positions"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if not self.C > 0:
            problems.append(f"C must be positive, got {self.C}")
        if not self.ridge_alphas or min(self.ridge_alphas) <= 0:
            problems.append(f"ridge_alphas must be positive, got {self.ridge_alphas}")
        if problems:
            raise TransferError("analyses.transfer: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, settings: Mapping) -> TransferConfig:
        """The keys of this class from ``settings``; others (grid, enabled, atlas) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in settings.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AtlasConfig:
    """Settings of the atlas job (``analyses.transfer.atlas``)."""

    layer: str = LAST
    images: str = "target"
    seeds: tuple[int, ...] = (0,)
    grid: int = 8
    embedding: str = "auto"
    perplexity: float = 30.0
    random_control: bool = True
    feature_visualisation: bool = False
    steps: int = 200
    lr: float = 0.05
    seed: int = 0

    def __post_init__(self):
        self.seeds = tuple(int(s) for s in self.seeds)
        if self.embedding not in EMBEDDINGS:
            raise TransferError(
                f"analyses.transfer.atlas.embedding must be one of {EMBEDDINGS}, "
                f"got {self.embedding!r}"
            )
        if self.grid < 1:
            raise TransferError(f"analyses.transfer.atlas.grid must be ≥ 1, got {self.grid}")
        if self.images not in ("source", "target"):
            raise TransferError(
                f"analyses.transfer.atlas.images must be 'source' or 'target', got {self.images!r}"
            )
        if not self.perplexity > 0:
            raise TransferError(
                f"analyses.transfer.atlas.perplexity must be positive, got {self.perplexity}"
            )

    @classmethod
    def from_dict(cls, settings: Mapping) -> AtlasConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in settings.items() if k in names})


def target_data_id(
    source: DataSpec | str, target_classes: Sequence[int], target_dataset: str | None = None
) -> str:
    """The dataset id of the target task: ``target_dataset`` (default: the source's dataset)
    restricted to ``target_classes``."""
    from widthlab.grid import parse_data_id

    source = parse_data_id(source) if isinstance(source, str) else source
    return DataSpec(target_dataset or source.name, tuple(int(c) for c in target_classes)).id


def class_overlap(
    source: DataSpec, target_classes: Sequence[int], target_dataset: str | None = None
) -> list[int]:
    """Original class labels the source model was trained on that are also target classes
    (none when the target task comes from another dataset)."""
    if target_dataset not in (None, source.name):
        return []
    if source.classes is None:
        return sorted(int(c) for c in target_classes)
    return sorted(set(int(c) for c in target_classes) & set(source.classes))
