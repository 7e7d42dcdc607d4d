"""Activation atlases: a 2-d embedding of hidden states, gridded into cells with their class
purity (and optionally a feature visualisation per cell)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from widthlab.grid import ModelSpec

if TYPE_CHECKING:  # torch is imported where it is used, so tables and figures never load it
    import torch

from widthlab.transfer.measure import _flat, features, source_and_target, untrained_twin
from widthlab.transfer.settings import LAST, AtlasConfig, TransferError

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
