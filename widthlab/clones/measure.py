"""Per-model science of the clones stage: the last hidden layer of one trained model, its chunks
measured against the full layer, and the model's test logits.

All measurements use the last hidden representation H (the input of ``model.head``), n×W, on
the train split (the examples the model was trained on: the caller cuts it, see
:meth:`~widthlab.data.npz.DatasetFiles.trained_on`) and the test split without augmentation,
and the head's weights (C×W) and bias (C):
chunk accuracy (:mod:`.accuracy`), ridge R² and residual correlation (:mod:`.regression`) and
the information imbalance (:mod:`.imbalance`), for chunks drawn by :mod:`.chunks`. With
``readout_stop`` no readouts are fitted above the first size at which every fitted chunk
reaches zero training error (a superset of a linearly separable chunk is separable; the full
layer is always fitted); the clone rule carries the last fitted size's value forward.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from widthlab.clones.accuracy import head_accuracies, readout_accuracy
from widthlab.clones.chunks import chunk_sizes, ii_subsample, sample_chunks
from widthlab.clones.imbalance import chunk_information_imbalance
from widthlab.clones.regression import chunk_regression
from widthlab.clones.settings import MeasureSettings
from widthlab.clones.tensors import ArrayLike, as_float64, as_numpy64
from widthlab.device import resolve_device

METRICS = ("accuracy", "r2", "residual_corr", "ii_chunk_to_full", "ii_full_to_chunk")
TABLE_COLUMNS = ["chunk_size", "metric", "method", "split", "mean", "std", "n_chunks"]


def head_parameters(head: torch.nn.Linear) -> tuple[np.ndarray, np.ndarray]:
    """(weight C×W, bias C) as float64 numpy: the *effective* ones for an NTK-parameterised head
    (``effective_weight`` / ``effective_bias``), else ``weight`` / ``bias`` (zeros if none)."""
    weight = getattr(head, "effective_weight", head.weight)
    bias = getattr(head, "effective_bias", head.bias)
    if bias is None:
        bias = torch.zeros(weight.shape[0])
    return (
        weight.detach().cpu().double().numpy(),
        bias.detach().cpu().double().numpy(),
    )


@torch.no_grad()
def last_hidden(
    model: torch.nn.Module, x: ArrayLike, batch_size: int = 512, device=None
) -> tuple[np.ndarray, np.ndarray]:
    """The last tap (the input of ``model.head``, flattened to n×W) and the logits, float32
    numpy, in eval mode (no augmentation, BN running statistics). The head applied to the
    returned representation reproduces the returned logits (checked)."""
    dev = resolve_device(device)
    was_training = model.training
    model.eval().to(dev)
    last = model.tap_names[-1]
    reps, logits = [], []
    try:
        for start in range(0, len(x), batch_size):
            batch = torch.as_tensor(np.asarray(x[start : start + batch_size]), device=dev)
            out, taps = model(batch.float(), return_taps=True)
            h = taps[last].reshape(len(batch), -1)
            if not torch.allclose(model.head(h), out, rtol=1e-4, atol=1e-4):
                raise RuntimeError(f"head({last}) does not reproduce the logits")
            reps.append(h.float().cpu().numpy())
            logits.append(out.float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(reps), np.concatenate(logits)


@dataclass(frozen=True)
class LastLayer:
    """A model's last hidden representation on both splits (n × W), the labels, and its head's
    weight (C × W) and bias (C)."""

    h_train: ArrayLike
    y_train: ArrayLike
    h_test: ArrayLike
    y_test: ArrayLike
    weight: ArrayLike
    bias: ArrayLike


def chunk_measurements(
    layer: LastLayer, config: MeasureSettings | None = None, log=None
) -> pd.DataFrame:
    """One row per (chunk_size, chunk, metric, method, split): the raw per-chunk values."""
    cfg = config or MeasureSettings()
    y_train, y_test, weight, bias = layer.y_train, layer.y_test, layer.weight, layer.bias
    h_train = as_float64(layer.h_train, cfg.device)
    h_test = as_float64(layer.h_test, cfg.device)
    width = h_train.shape[1]
    if h_test.shape[1] != width or as_float64(weight, "cpu").shape[1] != width:
        raise ValueError(
            f"width mismatch: train {width}, test {h_test.shape[1]}, head {tuple(weight.shape)}"
        )
    sizes = list(cfg.chunk_sizes) if cfg.chunk_sizes else chunk_sizes(width)
    n_max = max(cfg.n_accuracy_chunks, cfg.n_readout_chunks, cfg.n_r2_chunks, cfg.n_ii_chunks)
    ii_idx = torch.as_tensor(ii_subsample(h_test.shape[0], cfg.ii_points, cfg.seed))
    h_ii = h_test[ii_idx.to(h_test.device)]
    r2_fit = h_train if cfg.r2_fit_split == "train" else h_test
    rows: list[dict] = []
    readouts_done = False

    def add(size, values, metric, method, split):
        for k, value in enumerate(values):
            rows.append(
                {
                    "chunk_size": size,
                    "chunk": k,
                    "metric": metric,
                    "method": method,
                    "split": split,
                    "value": float(value),
                }
            )

    drawn = {size: sample_chunks(width, size, n_max, cfg.seed) for size in dict.fromkeys(sizes)}
    for size, chunks in drawn.items():
        acc = chunks[: cfg.n_accuracy_chunks]
        for split, h, y in (("train", h_train, y_train), ("test", h_test, y_test)):
            plain, rescaled = head_accuracies(h, y, weight, bias, acc, cfg.device)
            add(size, plain, "accuracy", "head", split)
            add(size, rescaled, "accuracy", "head_rescaled", split)
        if cfg.n_readout_chunks > 0 and (not readouts_done or size == width):
            tr, te = readout_accuracy(
                h_train,
                y_train,
                h_test,
                y_test,
                chunks[: cfg.n_readout_chunks],
                cfg.readout_c,
                cfg.readout_max_iter,
            )
            add(size, tr, "accuracy", "readout", "train")
            add(size, te, "accuracy", "readout", "test")
            readouts_done = cfg.readout_stop and bool(np.all(tr == 1.0))
        if log is not None:
            log(f"clones: chunk accuracy of size {size}/{width} done ({len(chunks)} chunks)")
    # the ridge and the information imbalance take every size at once: the full layer's
    # cross products, distances and ranks are then computed once per model, not once per size
    if cfg.n_r2_chunks > 0:
        chunks, spans = _every_size(drawn, cfg.n_r2_chunks)
        r2, corr = chunk_regression(
            r2_fit, h_test, chunks, cfg.ridge_alpha, cfg.device, n_corr=cfg.n_corr_chunks
        )
        for size, part in spans:
            add(size, r2[part], "r2", "ridge", "test")
            add(size, corr[part][: cfg.n_corr_chunks], "residual_corr", "ridge", "test")
    if cfg.n_ii_chunks > 0:
        chunks, spans = _every_size(drawn, cfg.n_ii_chunks)
        to_full, from_full = chunk_information_imbalance(h_ii, chunks, cfg.ii_ties, cfg.device)
        for size, part in spans:
            add(size, to_full[part], "ii_chunk_to_full", "euclidean", "test")
            add(size, from_full[part], "ii_full_to_chunk", "euclidean", "test")
    if log is not None:
        log(f"clones: ridge and information imbalance of {len(sizes)} sizes done")
    return pd.DataFrame(rows)


def _every_size(drawn: dict[int, np.ndarray], n: int) -> tuple[list, list[tuple[int, slice]]]:
    """The first ``n`` chunks of every size in one list, and (size, its slice of the list)."""
    chunks, spans = [], []
    for size, sized in drawn.items():
        spans.append((size, slice(len(chunks), len(chunks) + len(sized[:n]))))
        chunks += list(sized[:n])
    return chunks, spans


def average_chunks(raw: pd.DataFrame) -> pd.DataFrame:
    """Per-chunk rows → one row per (chunk_size, metric, method, split): mean, std (ddof 0; 0
    for a single chunk), n_chunks. NaN values (e.g. an undefined residual correlation) are
    skipped; n_chunks counts the finite ones."""
    grouped = raw.groupby(["chunk_size", "metric", "method", "split"], sort=True)["value"]
    table = grouped.agg(
        mean="mean", std=lambda v: float(np.nanstd(v)) if v.notna().any() else np.nan
    )
    table["n_chunks"] = grouped.count()
    return table.reset_index()[TABLE_COLUMNS]


def per_model_table(
    layer: LastLayer,
    config: MeasureSettings | None = None,
    columns: Mapping | None = None,
    log=None,
) -> pd.DataFrame:
    """The tidy per-model clone table: ``columns`` (the model's, e.g. ``ModelSpec.columns()``)
    first, then ``chunk_size, metric, method, split, mean, std, n_chunks``; plus
    ``layer_width`` (W) and ``chunk_fraction`` (w / W)."""
    table = average_chunks(chunk_measurements(layer, config, log))
    width = int(as_float64(layer.weight, "cpu").shape[1])
    table["layer_width"] = width
    table["chunk_fraction"] = table["chunk_size"] / width
    return _with_columns(table, columns)


def _with_columns(table: pd.DataFrame, columns: Mapping | None) -> pd.DataFrame:
    if not columns:
        return table
    front = pd.DataFrame({k: [v] * len(table) for k, v in columns.items()}, index=table.index)
    return pd.concat([front, table], axis=1)


def analyse_model(
    model: torch.nn.Module,
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_test: ArrayLike,
    y_test: ArrayLike,
    config: MeasureSettings | Mapping | None = None,
    columns: Mapping | None = None,
    log=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-model clone table, test logits table) of one trained model: its last hidden layer
    on the train and test splits (eval mode, no augmentation) and its head."""
    cfg = config if isinstance(config, MeasureSettings) else MeasureSettings.from_config(config)
    h_train, _ = last_hidden(model, x_train, device=cfg.device)
    h_test, logits = last_hidden(model, x_test, device=cfg.device)
    weight, bias = head_parameters(model.head)
    layer = LastLayer(h_train, y_train, h_test, y_test, weight, bias)
    table = per_model_table(layer, cfg, columns=columns, log=log)
    return table, logits_table(logits, y_test, columns)


def logits_table(logits: ArrayLike, labels: ArrayLike, columns: Mapping | None = None):
    """One row per test example: ``example`` (position in the test split), ``label``,
    ``logit_0 … logit_{C-1}`` (the model's columns first)."""
    logits = as_numpy64(logits)
    table = pd.DataFrame({"example": np.arange(len(logits)), "label": np.asarray(labels)})
    names = [f"logit_{c}" for c in range(logits.shape[1])]
    table = pd.concat([table, pd.DataFrame(logits, columns=names)], axis=1)
    return _with_columns(table, columns)
