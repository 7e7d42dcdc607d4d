"""Transfer, hidden-state information and activation atlases (Gilboa & Gur-Ari 2019, "Wider
Networks Learn Better Features").

Source and target
    A model of the analysed grid was trained on a *source* dataset variant (by default the
    digits 0–4, ``digits-c01234``). The *target* task is the same dataset (or
    ``target_dataset``, e.g. CIFAR-100 for CIFAR-10 models) restricted to ``target_classes``
    (default 5–9, ``digits-c56789``, relabelled 0..k-1), built by the dataset rule from its id
    (:func:`target_data_id`). Each dataset is standardised with its own training statistics,
    so target images are first mapped back to raw pixel values and re-standardised with the
    *source* statistics (:func:`in_source_space`): the frozen backbone sees them exactly as it
    saw its own inputs.

Backbones
    ``trained``: the model as trained. ``random``: the same architecture at the exact
    initialisation the training run started from (:func:`initial_model`: ``torch.manual_seed(
    spec.seed)`` then :func:`widthlab.models.build_model`, what :func:`widthlab.train.train`
    does before its first step). Random ReLU features also improve with width, so the claim is
    about the trained − random gap.

Last-layer fine-tuning (``analysis = finetune``)
    The backbone is frozen; its last hidden representation (the input of ``head``) is the
    feature vector. A new last linear layer is a multinomial scikit-learn ``LogisticRegression``
    (lbfgs, L2 with ``C``, a fixed budget of ``max_iter`` iterations, convergence warnings
    silenced) on features centred with its own training examples' unit means and divided by
    one number per layer, their root mean unit variance (:func:`standardise`; a per-unit
    z-score would blow up units that are nearly dead on a few-shot training set). It is
    fitted on ``shots`` examples per target class drawn from the target training split
    (``"all"``: the whole split) and scored on the whole target test split. Few-shot draws are
    seeded by ``(seed, shots, draw)`` only, so every model and both backbones see the same
    examples; a shot count that covers every class's training
    examples is the ``all`` case and is fitted once. Measures: ``target_acc`` (test) and
    ``target_train_acc`` per draw; ``source_acc`` (``analysis = source``): the model's own test
    accuracy on the source test split (chance for the random backbone).

Information in the hidden state (``analysis = information``), every tap, both backbones
    ``recon_r2`` / ``recon_mse``: ridge reconstruction of the input pixels from the layer,
    fitted on a training split and scored on the matching test split, for the source images
    and the target images (column ``images``). Ridge with intercept on the layer scaled as for
    fine-tuning; α (``recon_alpha``) is chosen from ``ridge_alphas`` by the exact leave-one-out
    error on the training split (the hat-matrix identity of scikit-learn's ``RidgeCV``); R² is the
    variance-weighted R² (1 − Σ SSE / Σ SST over pixels), MSE the mean squared error per pixel
    in standardised units. ``knn_acc``: k-nearest-neighbour (Euclidean, raw layer values)
    read-out of the target labels, the classes the model was never trained on; ``linear_acc``:
    the logistic-regression read-out of the same (as fine-tuning with all shots, which it equals
    for the last layer). At most ``max_examples`` examples of each split are used (the first
    ones, which are class-balanced by construction of the splits). Conv maps are average-pooled
    to at most ``max_conv_positions`` positions and flattened.

Activation atlas (:func:`atlas_table`)
    For one layer (``atlas.layer``, ``last`` = the last hidden layer), the activations of the
    target test split (``atlas.images: target``, the default: the unseen classes, through the
    model) or of the source probe examples (``source``, read from the activation stage's
    layers.npz) are embedded in 2-D (t-SNE of scikit-learn, PCA-initialised and seeded; UMAP
    when ``embedding`` is ``umap``, or ``auto`` and ``umap`` is importable). The embedding's
    bounding box is cut into ``grid × grid`` cells; every example falls in exactly one cell
    (points on the upper edge go to the last cell). Each non-empty cell holds its count, its
    majority class, its purity (share of the majority class) and the mean input image of its
    examples; optionally (``feature_visualisation``) an input optimised so that the layer's
    activation matches the cell's mean activation. With ``random_control`` (default) the same
    atlas is made of the untrained twin on the same images (column ``backbone``).

Summary and headline
    Per model the draws are averaged; slopes are per width doubling (OLS on log2 width) fitted
    per seed (and depth) and summarised by a t-interval over those fits. The matched comparison
    fits target accuracy (and the last layer's reconstruction R² and kNN accuracy) on log2
    width *and* source test accuracy over all trained models (OLS, 95 % interval from its
    standard error), i.e. the width effect at equal source accuracy; with too few models, or
    source accuracies that do not vary, it falls back to the plain slope without an interval.
    A claim ``holds`` by :func:`verdict`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from widthlab.grid import DataSpec, ModelSpec

# torch and scipy.stats (through widthlab.headline) are imported where they are used, so that
# the atlas job, which needs neither, starts fast
if TYPE_CHECKING:
    import torch

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


# ----------------------------------------------------------------------------------- backbones


def initial_model(spec: ModelSpec, in_shape, num_classes: int, **arch_kwargs):
    """The untrained network the training run of ``spec`` started from
    (:func:`widthlab.models.seeded_model`, as :func:`widthlab.train.train` builds it), inside
    ``torch.random.fork_rng`` so the caller's random state is left alone."""
    import torch

    from widthlab.models import seeded_model

    with torch.random.fork_rng(devices=[]):
        model = seeded_model(spec, tuple(in_shape), int(num_classes), **arch_kwargs)
    return model.eval()


def untrained_twin(model, spec: ModelSpec):
    """:func:`initial_model` for a loaded model (same input shape, classes, arch keywords)."""
    return initial_model(spec, model.in_shape, model.num_classes, **dict(model.arch_kwargs))


def _channel_stats(dataset, which: str) -> tuple[np.ndarray, np.ndarray] | None:
    extras = getattr(dataset, "extras", {}) or {}
    if "channel_mean" not in extras or "channel_std" not in extras:
        return None
    return (
        np.asarray(extras["channel_mean"], dtype=np.float32),
        np.asarray(extras["channel_std"], dtype=np.float32),
    )


def in_source_space(target, source) -> tuple[np.ndarray, np.ndarray]:
    """Target (train, test) images re-standardised with the source's channel statistics.

    Both datasets store ``channel_mean`` / ``channel_std`` (their own training statistics); the
    raw pixels ``x · std_t + mean_t`` are standardised again as ``(raw − mean_s) / std_s``.
    Datasets without these statistics are returned unchanged.
    """
    stats_t, stats_s = _channel_stats(target, "target"), _channel_stats(source, "source")
    if stats_t is None or stats_s is None:
        return target.x_train, target.x_test
    (mean_t, std_t), (mean_s, std_s) = stats_t, stats_s
    if len(mean_t) != len(mean_s):
        raise TransferError(
            f"target {target.name} has {len(mean_t)} channels, source {source.name} {len(mean_s)}"
        )
    scale = (std_t / std_s)[None, :, None, None]
    shift = ((mean_t - mean_s) / std_s)[None, :, None, None]
    return (
        (target.x_train * scale + shift).astype(np.float32),
        (target.x_test * scale + shift).astype(np.float32),
    )


def features(
    model,
    x: np.ndarray,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 1024,
    max_conv_positions: int = 16,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({tap: n × units float32}, logits n × C) of ``model`` on ``x``; conv maps pooled, flat."""
    import torch

    from widthlab.activations import pool_positions

    device = torch.device(device)
    model = model.to(device).eval()
    parts: dict[str, list[np.ndarray]] = {name: [] for name in model.tap_names}
    logits = []
    for start in range(0, len(x), batch_size):
        batch = torch.as_tensor(np.asarray(x[start : start + batch_size]), device=device)
        with torch.no_grad():
            out, taps = model(batch.float(), return_taps=True)
        logits.append(out.float().cpu().numpy())
        for name in model.tap_names:
            tap = pool_positions(taps[name], max_conv_positions).flatten(1)
            parts[name].append(tap.float().cpu().numpy())
    return {name: np.concatenate(p) for name, p in parts.items()}, np.concatenate(logits)


# --------------------------------------------------------------------------------- fine-tuning


def few_shot_indices(labels: np.ndarray, shots: int | str, draw: int, seed: int = 0) -> np.ndarray:
    """Indices of ``shots`` examples per class (sorted), drawn without replacement, seeded by
    ``(seed, shots, draw)``; ``"all"`` (or a count ≥ every class's size) gives every index."""
    labels = np.asarray(labels)
    if shots == ALL or shots >= np.bincount(labels).max(initial=0):
        return np.arange(len(labels))
    rng = np.random.default_rng([int(seed), int(shots), int(draw)])
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        chosen.append(rng.choice(members, size=min(int(shots), len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def covers_all(labels: np.ndarray, shots: int | str) -> bool:
    """Whether ``shots`` per class takes every training example (then it is the ``all`` case)."""
    return shots == ALL or shots >= np.bincount(np.asarray(labels)).max(initial=0)


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Centre with ``train``'s unit means and divide by one number, the root mean unit variance
    of ``train`` (float64): units keep their relative scale, so units that are nearly constant
    on the training examples are not blown up on others; a constant layer is only centred."""
    train = np.asarray(train, dtype=np.float64)
    mean = train.mean(axis=0)
    scale = float(np.sqrt(train.var(axis=0).mean())) if train.size else 0.0
    scale = scale if scale > 1e-12 else 1.0
    return [(np.asarray(a, dtype=np.float64) - mean) / scale for a in (train, *others)]


def linear_head(
    h_train: np.ndarray,
    y_train: np.ndarray,
    h_test: np.ndarray,
    y_test: np.ndarray,
    c: float = 1.0,
    max_iter: int = 200,
) -> tuple[float, float]:
    """(train, test) accuracy of a new multinomial logistic-regression last layer (module doc)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    classes = np.unique(y_train)
    if classes.size < 2:
        return float(np.mean(y_train == classes[0])), float(np.mean(y_test == classes[0]))
    x_tr, x_te = standardise(h_train, h_test)
    head = LogisticRegression(C=c, max_iter=max_iter)
    # one BLAS thread: small fits run faster and parallel jobs do not oversubscribe the cores
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        head.fit(x_tr, y_train)
    return float(head.score(x_tr, y_train)), float(head.score(x_te, y_test))


def finetune_rows(
    h_train: np.ndarray,
    y_train: np.ndarray,
    h_test: np.ndarray,
    y_test: np.ndarray,
    cfg: TransferConfig,
) -> list[dict]:
    """Rows (shots, examples, draw, measure, value) of last-layer fine-tuning on one backbone."""
    rows = []
    for shots in cfg.shots:
        everything = covers_all(y_train, shots)
        for draw in range(1 if everything else cfg.draws):
            idx = few_shot_indices(y_train, shots, draw, cfg.seed)
            train_acc, test_acc = linear_head(
                h_train[idx], y_train[idx], h_test, y_test, cfg.C, cfg.max_iter
            )
            base = {"shots": str(shots), "examples": len(idx), "draw": draw}
            rows.append({**base, "measure": "target_acc", "value": test_acc})
            rows.append({**base, "measure": "target_train_acc", "value": train_acc})
    return rows


# --------------------------------------------------------------------------------- information


def thin_svd(x: torch.Tensor, rtol: float = 1e-12):
    """(U, s, Vᵀ) of ``x`` restricted to squared singular values > rtol · max, through the
    eigenvalues of the smaller Gram matrix (faster and steadier on CPU than a general SVD for
    the tall-or-wide, often rank-deficient feature matrices here)."""
    import torch

    n, d = x.shape
    if n == 0 or d == 0:
        return x.new_zeros(n, 0), x.new_zeros(0), x.new_zeros(0, d)
    gram = x.T @ x if d <= n else x @ x.T
    values, vectors = torch.linalg.eigh(gram)
    keep = (values > values.max() * rtol) & (values > 0)
    s = values[keep].sqrt().flip(0)
    vectors = vectors[:, keep].flip(1)
    if d <= n:
        return (x @ vectors) / s, s, vectors.T
    return vectors, s, ((x.T @ vectors) / s).T


def ridge_loo(
    h_train: np.ndarray,
    x_train: np.ndarray,
    h_test: np.ndarray,
    x_test: np.ndarray,
    alphas: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0),
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Ridge reconstruction of ``x`` (targets, n × p) from ``h`` (n × d): held-out R², MSE, α.

    Units are scaled as in :func:`standardise`; with intercept; α chosen by the exact
    leave-one-out squared error on the training set (hat-matrix identity), then evaluated on the
    test set. R² is variance weighted over target columns (NaN when the test targets are
    constant).
    """
    import torch

    device = torch.device(device)

    def t(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float64).reshape(len(a), -1), device=device)

    hs_train, hs_test = standardise(_flat(h_train), _flat(h_test))
    h_tr, h_te, x_tr, x_te = t(hs_train), t(hs_test), t(x_train), t(x_test)
    n = h_tr.shape[0]
    h_mean, x_mean = h_tr.mean(dim=0), x_tr.mean(dim=0)
    u, s, vh = thin_svd(h_tr - h_mean)
    uty = u.T @ (x_tr - x_mean)
    best = None
    for alpha in alphas:
        shrink = s * s / (s * s + alpha)
        fitted = u @ (shrink[:, None] * uty) + x_mean
        leverage = (u * u) @ shrink + 1.0 / n
        loo = (x_tr - fitted) / torch.clamp(1.0 - leverage, min=1e-12)[:, None]
        error = float((loo * loo).mean())
        if best is None or error < best[0]:
            best = (error, float(alpha))
    alpha = best[1]
    coef = vh.T @ ((s / (s * s + alpha))[:, None] * uty)
    pred = (h_te - h_mean) @ coef + x_mean
    sst = ((x_te - x_te.mean(dim=0)) ** 2).sum(dim=0)
    sse = ((x_te - pred) ** 2).sum(dim=0)
    weighted = sst > 0
    r2 = (
        float(1.0 - sse[weighted].sum() / sst[weighted].sum()) if bool(weighted.any()) else math.nan
    )
    return {"recon_r2": r2, "recon_mse": float(((x_te - pred) ** 2).mean()), "alpha": alpha}


def knn_accuracy(h_train, y_train, h_test, y_test, k: int = 5) -> float:
    """Test accuracy of a k-nearest-neighbour classifier (Euclidean, uniform vote)."""
    from sklearn.neighbors import KNeighborsClassifier
    from threadpoolctl import threadpool_limits

    k = min(int(k), len(y_train))
    with threadpool_limits(1):
        knn = KNeighborsClassifier(n_neighbors=k).fit(np.asarray(h_train, np.float64), y_train)
        return float(knn.score(np.asarray(h_test, np.float64), y_test))


# ------------------------------------------------------------------------------- per model job


@dataclass
class Split:
    """Images and labels of one task's train and test splits (already in the source's space)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def head(self, n: int) -> Split:
        return Split(self.x_train[:n], self.y_train[:n], self.x_test[:n], self.y_test[:n])


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).reshape(len(x), -1)


def backbone_rows(
    model,
    source: Split,
    target: Split,
    cfg: TransferConfig,
    device: str | torch.device = "cpu",
) -> list[dict]:
    """Every measurement of one backbone (rows without the model columns and backbone)."""
    kwargs = {
        "device": device,
        "batch_size": cfg.batch_size,
        "max_conv_positions": cfg.max_conv_positions,
    }
    rows: list[dict] = []
    _, source_logits = features(model, source.x_test, **kwargs)
    source_acc = float(np.mean(source_logits.argmax(axis=1) == source.y_test))
    rows.append({"analysis": "source", "measure": "source_acc", "value": source_acc})

    taps = list(model.tap_names)
    last = taps[-1]
    t_train, _ = features(model, target.x_train, **kwargs)
    t_test, _ = features(model, target.x_test, **kwargs)
    finetune = finetune_rows(t_train[last], target.y_train, t_test[last], target.y_test, cfg)
    layer_of = {"layer": last, "layer_index": len(taps) - 1}
    rows += [{"analysis": "finetune", **layer_of, **row} for row in finetune]
    full = (
        next(
            r["value"]
            for r in finetune
            if r["measure"] == "target_acc" and r["examples"] == len(target.y_train)
        )
        if any(covers_all(target.y_train, s) for s in cfg.shots)
        else None
    )

    small = source.head(cfg.max_examples)
    s_train, _ = features(model, small.x_train, **kwargs)
    s_test, _ = features(model, small.x_test, **kwargs)
    small_target = target.head(cfg.max_examples)
    n_tr, n_te = len(small_target.y_train), len(small_target.y_test)
    for index, name in enumerate(taps):
        info = {"analysis": "information", "layer": name, "layer_index": index}
        for images, (h_tr, h_te, split) in {
            "source": (s_train[name], s_test[name], small),
            "target": (t_train[name][:n_tr], t_test[name][:n_te], small_target),
        }.items():
            recon = ridge_loo(
                h_tr, _flat(split.x_train), h_te, _flat(split.x_test), cfg.ridge_alphas, device
            )
            for measure in ("recon_r2", "recon_mse", "alpha"):
                measure_name = "recon_alpha" if measure == "alpha" else measure
                rows.append(
                    {**info, "images": images, "measure": measure_name, "value": recon[measure]}
                )
        y_tr, y_te = small_target.y_train, small_target.y_test
        h_tr, h_te = t_train[name][:n_tr], t_test[name][:n_te]
        rows.append(
            {
                **info,
                "images": "target",
                "measure": "knn_acc",
                "value": knn_accuracy(h_tr, y_tr, h_te, y_te, cfg.knn_k),
            }
        )
        if (
            name == last
            and full is not None
            and n_tr == len(target.y_train)
            and n_te == len(target.y_test)
        ):
            linear = full
        else:
            linear = linear_head(h_tr, y_tr, h_te, y_te, cfg.C, cfg.max_iter)[1]
        rows.append({**info, "images": "target", "measure": "linear_acc", "value": linear})
    return rows


def transfer_measurements(
    trained,
    spec: ModelSpec,
    source: Split,
    target: Split,
    cfg: TransferConfig,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """The per-model tidy table: model columns, then :data:`TABLE_COLUMNS` (module doc)."""
    backbones = {"trained": trained, "random": untrained_twin(trained, spec)}
    frames = []
    for backbone, model in backbones.items():
        rows = backbone_rows(model, source, target, cfg, device)
        frame = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS[1:])
        frame.insert(0, "backbone", backbone)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    return with_model_columns(table, spec)


def with_model_columns(table: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """``table`` with ``spec.columns()`` as its leading columns, and stable dtypes."""
    table = table.copy()
    for name in ("layer", "images", "shots"):
        if name in table:
            table[name] = table[name].astype("string")
    for name in ("layer_index", "examples", "draw"):
        if name in table:
            table[name] = table[name].astype("Int64")
    columns = spec.columns()
    for i, (key, value) in enumerate(columns.items()):
        table.insert(i, key, [value] * len(table))
    return table


def source_and_target(source_ds, target_ds) -> tuple[Split, Split]:
    """The two tasks as :class:`Split`, target images re-standardised into the source's space."""
    x_train, x_test = in_source_space(target_ds, source_ds)
    return (
        Split(source_ds.x_train, source_ds.y_train, source_ds.x_test, source_ds.y_test),
        Split(x_train, target_ds.y_train, x_test, target_ds.y_test),
    )


# ---------------------------------------------------------------------------------------- atlas


def atlas_activations(path: str, layer: str) -> tuple[str, np.ndarray]:
    """(layer name, probe activations) of one tap of a layers.npz of the activation stage
    (``last`` = its last tap). Reads the NPZ directly, without importing torch."""
    from widthlab.io import ArtifactError, load_npz

    arrays = load_npz(path, required=("tap_names",))
    name = resolve_layer([str(t) for t in arrays["tap_names"]], layer)
    if name not in arrays:
        raise ArtifactError(f"{path}: layers.npz lacks the tap {name!r} that tap_names lists")
    return name, arrays[name]


def target_atlas_inputs(model, source_ds, target_ds, layer: str, device="cpu", batch_size=1024):
    """(layer, activations, labels, images, class names) of the target test split through
    ``model`` (images re-standardised into the source's space), for ``atlas.images: target``."""
    _, target = source_and_target(source_ds, target_ds)
    name = resolve_layer(model.tap_names, layer)
    taps, _ = features(model, target.x_test, device=device, batch_size=batch_size)
    return name, taps[name], target.y_test, target.x_test, list(target_ds.class_names)


def resolve_layer(tap_names: Sequence[str], layer: str) -> str:
    """``layer`` (a tap name, or ``last`` = the last hidden layer); an error naming the key."""
    taps = list(tap_names)
    if layer == LAST:
        return taps[-1]
    if layer not in taps:
        raise TransferError(
            f"analyses.transfer.atlas.layer: {layer!r} is not a layer of this model; "
            f"its layers are {taps} (or 'last')"
        )
    return layer


def embedding_method(requested: str) -> str:
    """``tsne`` or ``umap``: ``auto`` picks UMAP when it is importable."""
    if requested == "auto":
        try:
            import umap  # noqa: F401
        except ImportError:
            return "tsne"
        return "umap"
    return requested


def embed_2d(
    h: np.ndarray, method: str = "tsne", seed: int = 0, perplexity: float = 30.0
) -> np.ndarray:
    """A 2-D embedding (n × 2) of the rows of ``h``."""
    h = _flat(np.asarray(h, dtype=np.float64))
    n = len(h)
    if n < 3:
        raise TransferError(f"an atlas needs at least 3 examples, got {n}")
    if method == "umap":
        import umap

        return np.asarray(
            umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, n - 1)).fit_transform(
                h
            )
        )
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        if h.shape[1] > 50:  # the usual t-SNE preprocessing: the top 50 principal components
            h = PCA(n_components=min(50, n), random_state=seed).fit_transform(h)
        tsne = TSNE(
            n_components=2,
            perplexity=min(float(perplexity), (n - 1) / 3.0),
            init="pca",
            random_state=seed,
        )
        return np.asarray(tsne.fit_transform(h))


def grid_cells(embedding: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(cell_x, cell_y) in 0..size-1 of every point: the bounding box cut into size × size
    equal cells, the upper edges belonging to the last cell (so every point has one cell)."""
    emb = np.asarray(embedding, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[1] != 2 or not np.isfinite(emb).all():
        raise TransferError(f"an embedding must be a finite n × 2 array, got shape {emb.shape}")
    low, high = emb.min(axis=0), emb.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    cells = np.floor((emb - low) / span * size).astype(np.int64)
    cells = np.clip(cells, 0, size - 1)
    return cells[:, 0], cells[:, 1]


def atlas_cells(
    embedding: np.ndarray,
    labels: np.ndarray,
    images: np.ndarray,
    size: int,
    activations: np.ndarray | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per non-empty cell (cell_x, cell_y, count, label, purity, image) and, if
    ``activations`` are given, the cells' mean activations (cells × units, same order)."""
    cx, cy = grid_cells(embedding, size)
    labels = np.asarray(labels)
    flat = _flat(np.asarray(images, dtype=np.float64))
    rows, means = [], []
    for cell in np.unique(cy * size + cx):
        members = np.flatnonzero(cy * size + cx == cell)
        counts = np.bincount(labels[members])
        rows.append(
            {
                "cell_x": int(cell % size),
                "cell_y": int(cell // size),
                "count": len(members),
                "label": int(counts.argmax()),
                "purity": float(counts.max() / len(members)),
                "image": flat[members].mean(axis=0).astype(np.float32).tolist(),
            }
        )
        if activations is not None:
            means.append(np.asarray(activations[members], dtype=np.float64).mean(axis=0))
    return pd.DataFrame(rows), (np.stack(means) if means else np.empty((0, 0)))


def feature_visualisation(
    model,
    layer: str,
    targets: np.ndarray,
    in_shape,
    steps: int = 200,
    lr: float = 0.05,
    l2: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Inputs x (one per row of ``targets``) that minimise ‖f(x) − a‖² / ‖a‖² + l2 · mean x²,
    f = the layer's activation, by Adam from small seeded noise; returns cells × prod(in_shape)."""
    import torch

    device = torch.device(device)
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    goal = torch.as_tensor(np.asarray(targets, dtype=np.float32), device=device).flatten(1)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = (0.01 * torch.randn(len(goal), *in_shape, generator=gen)).to(device).requires_grad_(True)
    optimiser = torch.optim.Adam([x], lr=lr)
    norm = (goal * goal).sum(dim=1).clamp(min=1e-12)
    for _ in range(steps):
        optimiser.zero_grad()
        _, taps = model(x, return_taps=True)
        act = taps[layer].flatten(1)
        loss = (((act - goal) ** 2).sum(dim=1) / norm).mean() + l2 * (x * x).mean()
        loss.backward()
        optimiser.step()
    return x.detach().cpu().numpy().reshape(len(goal), -1)


def image_dims(shape: Sequence[int]) -> tuple[int, int, int]:
    """(channels, height, width) of one example's shape: C×H×W, H×W, or a flat vector (1×1×n)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        return shape
    if len(shape) == 2:
        return (1, *shape)
    return (1, 1, math.prod(shape))


def atlas_table(
    spec: ModelSpec,
    activations: np.ndarray,
    labels: np.ndarray,
    images: np.ndarray,
    layer: str,
    cfg: AtlasConfig,
    class_names: Sequence[str] | None = None,
    model=None,
    device: str | torch.device = "cpu",
    backbone: str = "trained",
) -> pd.DataFrame:
    """The atlas of one model: one row per non-empty cell (module doc), model columns first."""
    method = embedding_method(cfg.embedding)
    emb = embed_2d(activations, method, cfg.seed, cfg.perplexity)
    cells, means = atlas_cells(emb, labels, images, cfg.grid, _flat(activations))
    image_shape = np.asarray(images).shape[1:]
    if cfg.feature_visualisation:
        if model is None:
            raise TransferError("feature_visualisation needs the model (model.pt) as input")
        optimised = feature_visualisation(
            model, layer, means, image_shape, cfg.steps, cfg.lr, seed=cfg.seed, device=device
        )
        cells["feature_image"] = [row.astype(np.float32).tolist() for row in optimised]
    names = list(class_names) if class_names is not None else None
    cells.insert(0, "backbone", backbone)
    cells.insert(1, "layer", layer)
    cells.insert(2, "images", cfg.images)
    cells.insert(3, "embedding", method)
    cells.insert(4, "grid", cfg.grid)
    cells["class_name"] = [names[i] if names else str(i) for i in cells["label"]]
    channels, height, width = image_dims(image_shape)
    cells["image_channels"], cells["image_height"], cells["image_width"] = channels, height, width
    cells["examples"] = len(labels)
    for i, (key, value) in enumerate(spec.columns().items()):
        cells.insert(i, key, [value] * len(cells))
    return cells


def atlas_tables(
    spec: ModelSpec,
    activations,
    labels,
    images,
    layer: str,
    cfg: AtlasConfig,
    *,
    class_names=None,
    model=None,
    device="cpu",
) -> pd.DataFrame:
    """The trained model's :func:`atlas_table` and, with ``random_control``, the same atlas of
    its untrained twin (:func:`untrained_twin`: the exact initialisation) on the same images,
    stacked (column ``backbone``)."""
    common = (labels, images, layer, cfg, class_names)
    tables = [atlas_table(spec, activations, *common, model, device)]
    if cfg.random_control:
        if model is None:
            raise TransferError("atlas.random_control needs the model (model.pt) as input")
        twin = untrained_twin(model, spec)
        taps, _ = features(twin, images, device=device)
        tables.append(atlas_table(spec, taps[layer], *common, twin, device, "random"))
    return pd.concat(tables, ignore_index=True)


# ------------------------------------------------------------------------------------ summary


MODEL_COLUMNS = tuple(ModelSpec(DataSpec("digits"), "mlp", 1, 1).columns())


def _group_columns(table: pd.DataFrame) -> list[str]:
    """The model columns (``ModelSpec.columns()``) present in ``table``."""
    return [c for c in MODEL_COLUMNS if c in table.columns]


def model_frame(table: pd.DataFrame) -> pd.DataFrame:
    """One row per model: its model columns (from the first row that names it)."""
    return table[_group_columns(table)].drop_duplicates("model").reset_index(drop=True)


def finetune_summary(tables: pd.DataFrame) -> pd.DataFrame:
    """One row per model × backbone × shots: target accuracy (mean and sd over draws), the
    number of draws and examples, and the backbone's source test accuracy beside it."""
    fine = tables[(tables["analysis"] == "finetune") & (tables["measure"] == "target_acc")]
    keys = ["model", "backbone", "shots"]
    summary = (
        fine.groupby(keys, sort=False)
        .agg(
            target_acc=("value", "mean"),
            target_acc_sd=("value", "std"),
            draws=("value", "size"),
            examples=("examples", "max"),
        )
        .reset_index()
    )
    source = tables[tables["measure"] == "source_acc"][["model", "backbone", "value"]]
    summary = summary.merge(source.rename(columns={"value": "source_acc"}), how="left")
    summary["shots"] = summary["shots"].astype(str)
    return model_frame(tables).merge(summary, on="model", how="right")


def gap_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Trained − random target accuracy per model and shots (with the trained source accuracy)."""
    wide = summary.pivot_table(
        index=["model", "shots"], columns="backbone", values="target_acc"
    ).reset_index()
    wide.columns.name = None
    for backbone in BACKBONES:
        if backbone not in wide:
            wide[backbone] = np.nan
    source = summary[summary["backbone"] == "trained"][["model", "shots", "source_acc"]]
    wide = wide.merge(source, on=["model", "shots"], how="left")
    wide["gap"] = wide["trained"] - wide["random"]
    wide = wide.rename(columns={"trained": "trained_acc", "random": "random_acc"})
    return model_frame(summary).merge(wide, on="model", how="right")


def information_summary(tables: pd.DataFrame) -> pd.DataFrame:
    """One row per model × backbone × layer × images × measure of the information analysis."""
    model_cols = _group_columns(tables)
    info = tables[tables["analysis"] == "information"]
    keep = model_cols + ["backbone", "layer", "layer_index", "images", "measure", "value"]
    out = info[keep].copy()
    layers = out.groupby("model")["layer_index"].transform("max").astype(float) + 1
    out["relative_depth"] = (out["layer_index"].astype(float) + 1) / layers
    return out.reset_index(drop=True)


def _is_last(info: pd.DataFrame) -> pd.Series:
    return info["layer_index"] == info.groupby("model")["layer_index"].transform("max")


def by_width(
    frame: pd.DataFrame, value: str, keys: Sequence[str], level: float = 0.95
) -> pd.DataFrame:
    """Mean of ``value`` over seeds with its t-interval per ``keys`` + depth + width."""
    from widthlab.headline import t_interval

    keys = [k for k in ("depth", *keys, "width") if k in frame.columns]
    rows = []
    for group, sub in frame.groupby(keys, dropna=False, sort=True):
        values = sub[value].to_numpy(dtype=float)
        low, high = t_interval(values, level)
        finite = values[np.isfinite(values)]
        rows.append(
            {
                **dict(zip(keys, group if isinstance(group, tuple) else (group,), strict=True)),
                "mean": float(finite.mean()) if len(finite) else math.nan,
                "ci_low": low,
                "ci_high": high,
                "n": int(len(finite)),
            }
        )
    return pd.DataFrame(rows)


def width_table(summary: pd.DataFrame, gaps: pd.DataFrame, info: pd.DataFrame) -> pd.DataFrame:
    """Every plotted quantity against width, mean over seeds with 95 % t-intervals (long)."""
    first_shots = summary["shots"].iloc[0] if len(summary) else None
    parts = [
        by_width(summary, "target_acc", ["backbone", "shots"]).assign(quantity="target_acc"),
        by_width(summary[summary["shots"] == first_shots], "source_acc", ["backbone"]).assign(
            quantity="source_acc"
        ),
        by_width(gaps, "gap", ["shots"]).assign(quantity="gap", backbone="trained − random"),
    ]
    for measure, sub in info.groupby("measure"):
        parts.append(
            by_width(sub, "value", ["backbone", "layer", "images"]).assign(quantity=measure)
        )
    table = pd.concat(parts, ignore_index=True)
    lead = ["quantity", "depth", "width", "backbone", "shots", "layer", "images"]
    return table[[c for c in lead if c in table] + [c for c in table if c not in lead]]


def slope(x: Sequence[float], y: Sequence[float]) -> float:
    """OLS slope of y on x (NaN with fewer than 2 distinct finite x)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(np.unique(x)) < 2:
        return math.nan
    return float(np.polyfit(x, y, 1)[0])


def seed_slopes(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """Slope of ``value`` per width doubling, one fit per seed × depth × weight decay."""
    keys = [k for k in ("depth", "weight_decay", "seed") if k in frame.columns]
    rows = []
    for group, sub in frame.groupby(keys, dropna=False, sort=True):
        rows.append(
            {
                **dict(zip(keys, group if isinstance(group, tuple) else (group,), strict=True)),
                "slope": slope(np.log2(sub["width"].astype(float)), sub[value]),
                "models": len(sub),
            }
        )
    return pd.DataFrame(rows, columns=[*keys, "slope", "models"])


def matched_slope(frame: pd.DataFrame, value: str, level: float = 0.95) -> dict:
    """OLS of ``value`` on log2 width and source accuracy (and depth when it varies):
    the width coefficient (per doubling at equal source accuracy) with its ``level`` interval."""
    from scipy import stats

    frame = frame[
        np.isfinite(frame[value].astype(float)) & np.isfinite(frame["source_acc"].astype(float))
    ]
    columns = [
        np.ones(len(frame)),
        np.log2(frame["width"].astype(float)),
        frame["source_acc"].astype(float),
    ]
    if "depth" in frame and frame["depth"].nunique() > 1:
        columns.append(frame["depth"].astype(float))
    design = np.column_stack(columns) if len(frame) else np.empty((0, 3))
    y = frame[value].to_numpy(dtype=float)
    n, p = design.shape
    out = {
        "coef": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "n": int(n),
        "source_coef": math.nan,
    }
    if n <= p or np.linalg.matrix_rank(design) < p:
        if n >= 2:
            out["coef"] = slope(design[:, 1], y)
        return out
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    sigma2 = float(resid @ resid) / (n - p)
    cov = sigma2 * np.linalg.inv(design.T @ design)
    half = stats.t.ppf(0.5 + level / 2, n - p) * math.sqrt(max(cov[1, 1], 0.0))
    out.update(
        coef=float(beta[1]),
        ci_low=float(beta[1] - half),
        ci_high=float(beta[1] + half),
        source_coef=float(beta[2]),
    )
    return out


def verdict(value: float, ci_low: float, ci_high: float) -> str:
    """The rule for a "rises / is positive" claim: ``yes`` if the estimate is > 0 and its 95 %
    interval excludes 0; ``partly`` if > 0 but the interval includes 0 or is undefined (one
    seed); ``no`` if ≤ 0; ``n/a`` if nothing was measured."""
    if not np.isfinite(value):
        return "n/a"
    if value <= 0:
        return "no"
    return "yes" if np.isfinite(ci_low) and ci_low > 0 else "partly"


def _fmt(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:+.4f}"


def _control(control: pd.DataFrame | None, value: str) -> str:
    """ "; random backbones: slope …" for a detail, from the same quantity of the random twins."""
    if control is None or not len(control):
        return ""
    slopes = seed_slopes(control, value)["slope"]
    return f"; random backbones: slope {_fmt(float(slopes.mean()))} per doubling"


def _slope_row(
    claim: str, quantity: str, frame: pd.DataFrame, value: str, control: pd.DataFrame | None = None
) -> dict:
    from widthlab.headline import headline_row, t_interval

    slopes = (
        seed_slopes(frame, value)["slope"].to_numpy(dtype=float) if len(frame) else np.array([])
    )
    low, high = t_interval(slopes)
    finite = slopes[np.isfinite(slopes)]
    mean = float(finite.mean()) if len(finite) else math.nan
    row = headline_row(
        PAPER,
        claim,
        quantity,
        "OLS slope on log2 width per seed (and depth), mean with 95 % t-interval over fits",
        slopes,
        verdict(mean, low, high),
        f"slope {_fmt(mean)} per width doubling (95 % CI {_fmt(low)} … {_fmt(high)}) over "
        f"{len(finite)} fit(s); widths {sorted(set(frame['width']))}{_control(control, value)}"
        if len(frame)
        else "no models",
    )
    return row


def atlas_purity(atlas: pd.DataFrame) -> pd.DataFrame:
    """Per model (and backbone): the example-weighted mean class purity of its atlas cells."""
    atlas = atlas if "backbone" in atlas else atlas.assign(backbone="trained")
    purity = (
        atlas.assign(weighted=atlas["purity"] * atlas["count"])
        .groupby(["model", "backbone"], sort=False)
        .agg(weighted=("weighted", "sum"), count=("count", "sum"))
        .reset_index()
    )
    purity["purity"] = purity["weighted"] / purity["count"]
    columns = ["model", "backbone", "purity", "count"]
    return model_frame(atlas).merge(purity[columns], on="model")


def _matched_row(
    claim: str, quantity: str, frame: pd.DataFrame, value: str, control: pd.DataFrame | None = None
) -> dict:
    """A headline row from :func:`matched_slope`; ``control`` (the same quantity of the random
    backbones) adds its mean per-seed slope to the detail, for comparison."""
    from widthlab.headline import headline_row

    matched = matched_slope(frame, value)
    compare = _control(control, value)
    accuracy = frame["source_acc"] if len(frame) else pd.Series([math.nan])
    row = headline_row(
        PAPER,
        claim,
        quantity,
        f"OLS {value} ~ log2 width + source_acc over trained models (+ depth when it varies), "
        "95 % interval from its standard error",
        [matched["coef"]],
        verdict(matched["coef"], matched["ci_low"], matched["ci_high"]),
        f"coefficient {_fmt(matched['coef'])} (95 % CI {_fmt(matched['ci_low'])} … "
        f"{_fmt(matched['ci_high'])}) over {matched['n']} models with source accuracy "
        f"{accuracy.min():.3f} … {accuracy.max():.3f}{compare}",
    )
    row.update(ci_low=matched["ci_low"], ci_high=matched["ci_high"], n=matched["n"])
    return row


def headline(
    summary: pd.DataFrame,
    gaps: pd.DataFrame,
    info: pd.DataFrame,
    atlas: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The stage's headline rows (see :func:`verdict` for ``holds``)."""
    from widthlab.headline import headline_row, headline_table, t_interval

    shots = list(dict.fromkeys(summary["shots"])) if len(summary) else [ALL]
    full = ALL if ALL in shots else shots[-1]
    fewest = min((s for s in shots if s != ALL), key=int, default=full)
    trained = summary[(summary["backbone"] == "trained") & (summary["shots"] == full)]
    random = summary[(summary["backbone"] == "random") & (summary["shots"] == full)]
    few = summary[(summary["backbone"] == "trained") & (summary["shots"] == fewest)]
    gap = gaps[gaps["shots"] == full]
    rows = [
        _slope_row(
            "Wider networks transfer better: last-layer fine-tuning accuracy on the target task "
            "rises with width",
            f"target test accuracy ({full} shots per class, trained backbone) per width doubling",
            trained,
            "target_acc",
        )
    ]
    rows.append(
        _matched_row(
            "Target accuracy rises with width at equal source test accuracy",
            "width coefficient of target accuracy with source test accuracy held fixed "
            "(per doubling)",
            trained,
            "target_acc",
            random,
        )
    )
    rows.append(
        _slope_row(
            f"The width advantage holds for few-shot transfer ({fewest} examples per class)",
            f"target test accuracy ({fewest} shots per class, mean over draws) per width doubling",
            few,
            "target_acc",
        )
    )
    per_seed_gap = (
        gap.groupby([c for c in ("depth", "weight_decay", "seed") if c in gap.columns])[
            "gap"
        ].mean()
        if len(gap)
        else pd.Series(dtype=float)
    )
    low, high = t_interval(per_seed_gap.to_numpy(dtype=float))
    mean_gap = float(per_seed_gap.mean()) if len(per_seed_gap) else math.nan
    rows.append(
        headline_row(
            PAPER,
            "Trained features transfer better than random features of the same width",
            f"trained − random target accuracy ({full} shots), mean over widths",
            "mean over widths per seed (and depth), 95 % t-interval over seeds",
            per_seed_gap.to_numpy(dtype=float),
            verdict(mean_gap, low, high),
            f"gap {_fmt(mean_gap)} (95 % CI {_fmt(low)} … {_fmt(high)}); per width "
            + ", ".join(f"w{w}: {_fmt(g)}" for w, g in gap.groupby("width")["gap"].mean().items()),
        )
    )
    rows.append(
        _slope_row(
            "The trained − random gap grows with width",
            f"trained − random target accuracy ({full} shots) per width doubling",
            gap,
            "gap",
        )
    )
    rows.append(
        _slope_row(
            "Control: random (untrained) features also improve with width",
            f"target test accuracy of the random backbone ({full} shots) per width doubling",
            random,
            "target_acc",
        )
    )
    last_all = info[_is_last(info)] if len(info) else info
    last, last_random = (last_all[last_all["backbone"] == b] for b in BACKBONES)
    source = trained[["model", "source_acc"]]
    recon = last[(last["measure"] == "recon_r2") & (last["images"] == "source")]
    recon_random = last_random[
        (last_random["measure"] == "recon_r2") & (last_random["images"] == "source")
    ].rename(columns={"value": "recon_r2"})
    knn_random = last_random[last_random["measure"] == "knn_acc"].rename(
        columns={"value": "knn_acc"}
    )
    rows.append(
        _matched_row(
            "At equal source accuracy, wider hidden states hold more information about the input",
            "held-out ridge R² reconstructing the source test images from the last hidden layer "
            "(trained), width coefficient at fixed source accuracy (per doubling)",
            recon.rename(columns={"value": "recon_r2"}).merge(source, on="model"),
            "recon_r2",
            recon_random,
        )
    )
    knn = last[last["measure"] == "knn_acc"]
    rows.append(
        _matched_row(
            "At equal source accuracy, wider hidden states hold more information about labels "
            "the model was not trained on",
            "kNN accuracy of the target labels from the last hidden layer (trained), width "
            "coefficient at fixed source accuracy (per doubling)",
            knn.rename(columns={"value": "knn_acc"}).merge(source, on="model"),
            "knn_acc",
            knn_random,
        )
    )
    if atlas is not None and len(atlas):
        purity = atlas_purity(atlas)
        images = atlas["images"].iloc[0] if "images" in atlas else "source"
        rows.append(
            _slope_row(
                "Activation atlases of wider networks separate the classes more cleanly",
                f"example-weighted class purity of the atlas cells ({images} images, trained) "
                "per width doubling",
                purity[purity["backbone"] == "trained"],
                "purity",
                purity[purity["backbone"] == "random"],
            )
        )
    return headline_table(rows)


def summarise(tables: Sequence[pd.DataFrame], atlases: Sequence[pd.DataFrame] = ()) -> dict:
    """Every summary table of the stage from the per-model and atlas tables (module doc)."""
    if not tables:
        raise TransferError("the transfer summary needs at least one per-model table")
    stacked = pd.concat(list(tables), ignore_index=True)
    missing = [c for c in ("model", "width", *TABLE_COLUMNS) if c not in stacked.columns]
    if missing:
        raise TransferError(f"per-model transfer tables lack the columns {missing}")
    summary = finetune_summary(stacked)
    gaps = gap_table(summary)
    info = information_summary(stacked)
    atlas = pd.concat(list(atlases), ignore_index=True) if len(atlases) else pd.DataFrame()
    return {
        "summary": summary,
        "gaps": gaps,
        "by_width": width_table(summary, gaps, info),
        "information": info,
        "atlas": atlas,
        "headline": headline(summary, gaps, info, atlas),
    }
