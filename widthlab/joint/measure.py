"""The one per-model measurement of the joint analysis (torch): kept subsets of the last hidden
layer, each scored for prediction agreement (Casper) and reconstruction R² (Doimo)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from widthlab.clones.chunks import sample_chunks
from widthlab.clones.measure import last_hidden
from widthlab.clones.regression import chunk_regression
from widthlab.data.npz import DatasetFiles
from widthlab.units.ablation import masked_agreement, tap_sizes

DEFAULT_KEPT_FRACTIONS = (0.125, 0.25, 0.5, 0.75)
SUBSET_COLUMNS = ["kept_fraction", "kept_units", "subset", "agreement", "r2"]


def kept_subsets(
    width: int, fractions: Sequence[float], subsets: int, seed: int = 0
) -> list[tuple[float, np.ndarray]]:
    """(fraction, subsets × kept-units index array) for every fraction that keeps 1 … W−1 units."""
    out = []
    for i, fraction in enumerate(sorted(set(fractions))):
        kept = int(round(fraction * width))
        if 1 <= kept < width:
            out.append((fraction, sample_chunks(width, kept, subsets, seed=seed + i)))
    return out


@torch.no_grad()
def subset_measurements(
    model: torch.nn.Module,
    x_fit: np.ndarray,
    x_eval: np.ndarray,
    chunk_sets: Sequence[np.ndarray],
    alpha: float = 1e-8,
    batch_size: int = 32768,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per set of kept subsets of last-hidden units (each a subsets × kept array), the
    (agreement, R²) of every subset: agreement with the intact model on ``x_eval`` when every
    other unit of that layer is zeroed, and ridge R² kept → full layer fitted on ``x_fit`` and
    scored on ``x_eval``. The layer is read once and one batched ablation serves every set."""
    model.eval()
    last = model.tap_names[-1]
    sizes = tap_sizes(model, x_eval)
    chunk_sets = [np.asarray(chunks, dtype=np.int64) for chunks in chunk_sets]
    keep = np.zeros((sum(len(c) for c in chunk_sets), sizes[last]), dtype=np.float32)
    row = 0
    for chunks in chunk_sets:
        np.put_along_axis(keep[row : row + len(chunks)], chunks, 1.0, axis=1)
        row += len(chunks)
    masks = {tap: np.ones((len(keep), n), np.float32) for tap, n in sizes.items()}
    masks[last] = keep
    agreement = np.split(
        masked_agreement(model, x_eval, masks, batch_size),
        np.cumsum([len(c) for c in chunk_sets])[:-1],
    )
    h_fit, _ = last_hidden(model, x_fit)
    h_eval, _ = last_hidden(model, x_eval)
    return [
        (agree, chunk_regression(h_fit, h_eval, chunks, alpha, n_corr=0)[0])
        for agree, chunks in zip(agreement, chunk_sets, strict=True)
    ]


def prune_vs_clone_table(
    model: torch.nn.Module,
    x_fit: np.ndarray,
    x_eval: np.ndarray,
    fractions: Sequence[float] = DEFAULT_KEPT_FRACTIONS,
    subsets: int = 20,
    seed: int = 0,
    alpha: float = 1e-8,
    batch_size: int = 32768,
) -> pd.DataFrame:
    """One row per random kept subset of the last hidden layer: its agreement and R² (above)."""
    width = tap_sizes(model, x_eval)[model.tap_names[-1]]
    drawn = kept_subsets(width, fractions, subsets, seed)
    if not drawn:
        return pd.DataFrame(columns=SUBSET_COLUMNS)
    measured = subset_measurements(
        model, x_fit, x_eval, [chunks for _, chunks in drawn], alpha, batch_size
    )
    parts = [
        pd.DataFrame(
            {
                "kept_fraction": fraction,
                "kept_units": chunks.shape[1],
                "subset": np.arange(len(chunks)),
                "agreement": agreement,
                "r2": r2,
            }
        )
        for (fraction, chunks), (agreement, r2) in zip(drawn, measured, strict=True)
    ]
    return pd.concat(parts, ignore_index=True)[SUBSET_COLUMNS]


def prune_vs_clone_models(
    model_paths: Sequence[str],
    datasets: DatasetFiles,
    settings: dict,
    device: str = "cpu",
    log=None,
) -> pd.DataFrame:
    """:func:`prune_vs_clone_table` for every model file, fitted on the training examples the
    model saw (:meth:`DatasetFiles.trained_on`) and scored on the test split, with the model's
    id columns in front."""
    from widthlab.device import resolve_device
    from widthlab.model_files import load_model

    dev = resolve_device(device)
    parts = []
    for path in model_paths:
        model, spec = load_model(path)
        _, data = datasets.trained_on(spec)
        table = prune_vs_clone_table(
            model.to(dev),
            data.x_train,
            data.x_test,
            settings["kept_fractions"],
            settings["subsets"],
            settings["seed"],
        )
        if log:
            log("%s: %d kept subsets", spec.id, len(table))
        parts.append(table.assign(**spec.columns()))
    table = pd.concat(parts, ignore_index=True)
    leading = list(parts[0].columns[len(SUBSET_COLUMNS) :])
    return table[leading + SUBSET_COLUMNS]
