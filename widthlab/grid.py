"""Model grid: specs, their one id string, and every artifact path.

A model id is the single name of a trained network everywhere (paths, tables, figures), e.g.
``digits-mlp-w128-d4-nall-wd5e-4-s0``. It is built by :meth:`ModelSpec.id` and parsed by
:func:`parse_model_id`; nothing else formats or parses ids.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

DATASETS = ("digits", "fashion_mnist", "mnist", "cifar10", "cifar100", "synthetic")
ARCHS = ("mlp", "cnn", "resnet", "wrn", "bmlp")
INITS = ("he", "xavier", "orthogonal")
DROPOUT_ARCHS = ("mlp", "bmlp", "cnn")


def format_float(value: float) -> str:
    """Short, lossless, dash-safe-to-parse float: 0 → '0', 0.0005 → '5e-4', 0.5 → '0.5'."""
    if value == 0:
        return "0"
    if 1e-2 <= abs(value) < 1e3:
        return repr(float(value)).rstrip("0").rstrip(".")
    mantissa, exponent = f"{value:.12e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


@dataclass(frozen=True)
class DataSpec:
    """A dataset variant: which data, which classes (relabelled 0..k-1), how much label noise."""

    name: str
    classes: tuple[int, ...] | None = None
    label_noise: float = 0.0

    def __post_init__(self):
        if self.name not in DATASETS:
            raise ValueError(f"unknown dataset {self.name!r}; choose one of {DATASETS}")
        if not 0.0 <= self.label_noise <= 1.0:
            raise ValueError(f"label_noise must be in [0, 1], got {self.label_noise}")
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
            if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
                raise ValueError(f"classes must be ≥ 2 distinct labels, got {self.classes}")

    @property
    def id(self) -> str:
        parts = [self.name]
        if self.classes is not None:
            sep = "" if all(c < 10 for c in self.classes) else "_"
            parts.append("c" + sep.join(str(c) for c in self.classes))
        if self.label_noise:
            parts.append(f"rl{format_float(self.label_noise)}")
        return "-".join(parts)


DATA_ID_PATTERN = r"(?P<name>[a-z0-9_]+?)(?:-c(?P<classes>[0-9_]+))?(?:-rl(?P<rl>[0-9.e-]+))?"
_DATA_ID = re.compile(f"^{DATA_ID_PATTERN}$")


def parse_data_id(data_id: str) -> DataSpec:
    match = _DATA_ID.match(data_id)
    if not match or match["name"] not in DATASETS:
        raise ValueError(f"not a dataset id: {data_id!r}")
    classes = match["classes"]
    if classes is not None:
        classes = tuple(int(c) for c in (classes.split("_") if "_" in classes else classes))
    return DataSpec(match["name"], classes, float(match["rl"]) if match["rl"] else 0.0)


@dataclass(frozen=True)
class ModelSpec:
    """One trained network of the grid."""

    data: DataSpec
    arch: str
    width: int
    depth: int
    train_size: int | None = None
    weight_decay: float = 0.0
    seed: int = 0
    bottleneck: int | None = None
    dropout: float = 0.0
    init: str = "he"
    variant: str | None = None

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {ARCHS}")
        for name in ("width", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if (self.arch == "bmlp") != (self.bottleneck is not None):
            raise ValueError("a bottleneck size is given exactly when arch is 'bmlp'")
        if self.train_size is not None and self.train_size < 1:
            raise ValueError(f"train_size must be positive or None, got {self.train_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.dropout and self.arch not in DROPOUT_ARCHS:
            raise ValueError(f"dropout is only built into {DROPOUT_ARCHS}, not {self.arch!r}")
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose one of {INITS}")
        if self.variant is not None and not re.fullmatch(r"[a-z][a-z0-9]*", self.variant):
            raise ValueError(f"variant must be lowercase letters and digits, got {self.variant!r}")

    @property
    def id(self) -> str:
        parts = [self.data.id, self.arch, f"w{self.width}", f"d{self.depth}"]
        if self.bottleneck is not None:
            parts.append(f"k{self.bottleneck}")
        parts += [
            f"n{'all' if self.train_size is None else self.train_size}",
            f"wd{format_float(self.weight_decay)}",
        ]
        if self.dropout:
            parts.append(f"do{format_float(self.dropout)}")
        if self.init != "he":
            parts.append(f"i{self.init}")
        parts.append(f"s{self.seed}")
        if self.variant is not None:
            parts.append(f"v{self.variant}")
        return "-".join(parts)

    def with_(self, **changes) -> ModelSpec:
        return replace(self, **changes)

    def columns(self) -> dict:
        """The id and its axes as table columns, for every tidy per-model table."""
        return {
            "model": self.id,
            "dataset": self.data.id,
            "arch": self.arch,
            "width": self.width,
            "depth": self.depth,
            "bottleneck": self.bottleneck,
            "train_size": self.train_size,
            "weight_decay": self.weight_decay,
            "dropout": self.dropout,
            "init": self.init,
            "seed": self.seed,
            "variant": self.variant,
        }


MODEL_ID_PATTERN = (
    f"(?P<data>{DATA_ID_PATTERN.replace('?P<', '?P<data_')})-(?P<arch>" + "|".join(ARCHS) + r")"
    r"-w(?P<width>\d+)-d(?P<depth>\d+)(?:-k(?P<k>\d+))?-n(?P<n>all|\d+)-wd(?P<wd>[0-9.e-]+?)"
    r"(?:-do(?P<do>[0-9.e-]+?))?(?:-i(?P<init>" + "|".join(INITS) + r"))?-s(?P<seed>\d+)"
    r"(?:-v(?P<variant>[a-z][a-z0-9]*))?"
)
_MODEL_ID = re.compile(f"^{MODEL_ID_PATTERN}$")


def unnamed(pattern: str) -> str:
    """``pattern`` without its named groups, for Snakemake wildcard constraints."""
    return re.sub(r"\(\?P<\w+>", "(?:", pattern)


def parse_model_id(model_id: str) -> ModelSpec:
    match = _MODEL_ID.match(model_id)
    if not match:
        raise ValueError(f"not a model id: {model_id!r}")
    return ModelSpec(
        data=parse_data_id(match["data"]),
        arch=match["arch"],
        width=int(match["width"]),
        depth=int(match["depth"]),
        train_size=None if match["n"] == "all" else int(match["n"]),
        weight_decay=float(match["wd"]),
        seed=int(match["seed"]),
        bottleneck=int(match["k"]) if match["k"] else None,
        dropout=float(match["do"]) if match["do"] else 0.0,
        init=match["init"] or "he",
        variant=match["variant"],
    )


GRID_AXES = (
    "arch",
    "width",
    "depth",
    "train_size",
    "weight_decay",
    "dropout",
    "init",
    "seed",
    "bottleneck",
)


@dataclass(frozen=True)
class Grid:
    """A named set of models: a dataset variant times the product of the axis lists."""

    name: str
    data: DataSpec
    axes: dict = field(hash=False)
    variant: str | None = None

    @classmethod
    def from_config(cls, name: str, grid: dict) -> Grid:
        data = DataSpec(grid["dataset"], grid.get("classes"), grid.get("label_noise", 0.0))
        axes = {axis: list(grid[axis]) for axis in GRID_AXES if axis in grid}
        for axis, values in axes.items():
            if not values:
                raise ValueError(f"grids.{name}.{axis}: the list is empty")
        grid = cls(name, data, axes, grid.get("variant"))
        try:
            grid.specs()
        except ValueError as error:
            raise ValueError(f"grids.{name}: {error}") from None
        return grid

    def specs(self) -> list[ModelSpec]:
        names = list(self.axes)
        specs = []
        for values in itertools.product(*(self.axes[n] for n in names)):
            kwargs = {"arch": "mlp", **dict(zip(names, values, strict=True))}
            if kwargs.get("train_size") == "all":
                kwargs["train_size"] = None
            if kwargs["arch"] != "bmlp":
                kwargs.pop("bottleneck", None)
            specs.append(ModelSpec(data=self.data, variant=self.variant, **kwargs))
        return list(dict.fromkeys(specs))


def grids_from_config(config: dict) -> dict[str, Grid]:
    return {name: Grid.from_config(name, grid) for name, grid in config["grids"].items()}


@dataclass(frozen=True)
class Paths:
    """Every artifact path of the workflow, built in this one place."""

    root: str = "results"

    def _p(self, *parts: str) -> str:
        return str(Path(self.root, *parts))

    def dataset(self, data_id: str) -> str:
        return self._p("data", f"{data_id}.npz")

    def model(self, mid: str) -> str:
        return self._p("models", mid, "model.pt")

    def history(self, mid: str) -> str:
        return self._p("models", mid, "history.parquet")

    def metrics(self, mid: str) -> str:
        return self._p("models", mid, "metrics.json")

    def checkpoint(self, mid: str) -> str:
        return self._p("models", mid, "checkpoint.pt")

    def pack_checkpoint(self, pack: str) -> str:
        return self._p("packs", f"{pack}.checkpoint.pt")

    def layers(self, mid: str) -> str:
        return self._p("activations", mid, "layers.npz")

    def predictions(self, mid: str) -> str:
        return self._p("activations", mid, "predictions.parquet")

    def table(self, stage: str, key: str) -> str:
        return self._p(stage, f"{key}.parquet")

    def summary(self, name: str) -> str:
        return self._p("summary", f"{name}.parquet")

    def figure(self, stage: str, name: str, suffix: str = "png") -> str:
        return self._p("figures", stage, f"{name}.{suffix}")

    def log(self, rule: str, key: str = "all") -> str:
        return self._p("logs", rule, f"{key}.log")

    def benchmark(self, rule: str, key: str = "all") -> str:
        return self._p("benchmarks", rule, f"{key}.tsv")
