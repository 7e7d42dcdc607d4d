"""One model's transfer measurements: backbones, last-layer fine-tuning on the target task,
and the information the hidden states hold (torch, imported where used)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from widthlab.grid import ModelSpec

if TYPE_CHECKING:  # torch is imported where it is used, so tables and figures never load it
    import torch

from widthlab.transfer.settings import ALL, TABLE_COLUMNS, TransferConfig, TransferError

# ----------------------------------------------------------------------------------- backbones


def initial_model(spec: ModelSpec, in_shape, num_classes: int, **arch_kwargs):
    """The untrained network the training run of ``spec`` started from
    (:func:`widthlab.models.seeded_model`, as :func:`widthlab.training.train.train` builds it),
    inside ``torch.random.fork_rng`` so the caller's random state is left alone."""
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
