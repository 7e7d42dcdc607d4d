"""Probe-set forward passes: every tap of a model, and its predictions.

Storage choice: every analysis of the default study needs per-example features of every layer
(CKA Grams, PCA, chunk regressions), so each tap is kept in full for the probe set. Conv maps
with more than ``max_conv_positions`` spatial positions are average-pooled down to that many
positions first: unit-level analyses work on channels, and CKA on pooled maps keeps the layer
ordering of full maps while bounding the disk cost per model to
``n_probe × Σ_layers channels × max_conv_positions × bytes`` (e.g. ResNet-20 ×1 on 10k CIFAR
probes at 64 positions, float16: 10k × 19 taps × ≈40 ch × 64 × 2 B ≈ 1 GB). Taps are written
into per-layer memory maps while streaming the probe set in batches, so no more than one batch of
activations is held in memory at once.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from widthlab.device import resolve_device
from widthlab.io import ArtifactError, load_npz


def pool_positions(tensor: torch.Tensor, max_positions: int) -> torch.Tensor:
    """Average-pool a conv map (B, C, H, W) to at most ``max_positions`` positions."""
    if tensor.dim() != 4 or tensor.shape[2] * tensor.shape[3] <= max_positions:
        return tensor
    side = max(1, math.isqrt(max_positions))
    return F.adaptive_avg_pool2d(tensor, side)


@torch.no_grad()
def extract(
    model: torch.nn.Module,
    x: np.ndarray,
    *,
    batch_size: int = 512,
    device: str = "cpu",
    dtype: str = "float32",
    max_conv_positions: int = 64,
    workdir: str | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return ({tap: array n×…} in tap order, logits n×C) for inputs ``x``.

    With a ``workdir`` the arrays are memory maps under it, so that large probe sets stream
    through (valid while the folder exists); without one they are held in memory.
    """
    torch_device = resolve_device(device)
    model = model.to(torch_device).eval()
    taps: dict[str, np.ndarray] = {}
    logits_out = None
    for start in range(0, len(x), batch_size):
        batch = torch.as_tensor(x[start : start + batch_size], device=torch_device)
        logits, batch_taps = model(batch, return_taps=True)
        if logits_out is None:
            logits_out = np.empty((len(x), logits.shape[1]), dtype=np.float32)
            for name in model.tap_names:
                shape = (len(x), *pool_positions(batch_taps[name], max_conv_positions).shape[1:])
                if workdir is None:
                    taps[name] = np.empty(shape, dtype=np.dtype(dtype))
                else:
                    path = os.path.join(workdir, f"{len(taps):03d}.npy")
                    taps[name] = np.lib.format.open_memmap(path, "w+", np.dtype(dtype), shape)
        logits_out[start : start + len(batch)] = logits.float().cpu().numpy()
        for name in model.tap_names:
            tap = pool_positions(batch_taps[name], max_conv_positions)
            taps[name][start : start + len(batch)] = tap.float().cpu().numpy()
    return taps, logits_out


def predictions_table(logits: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> pd.DataFrame:
    """One row per probe example: its position, test-split index, label, prediction, logits."""
    predicted = logits.argmax(axis=1)
    table = pd.DataFrame(
        {
            "example": np.arange(len(labels)),
            "index": indices,
            "label": labels,
            "predicted": predicted,
            "correct": predicted == labels,
        }
    )
    logit_columns = pd.DataFrame(logits, columns=[f"logit_{c}" for c in range(logits.shape[1])])
    return pd.concat([table, logit_columns], axis=1)


def save_arrays(taps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The NPZ entries for a model's taps: one array per tap and their order."""
    return {**taps, "tap_names": np.array(list(taps))}


def load_layers(path: str) -> dict[str, np.ndarray]:
    """{tap: array} in tap order, from a layers.npz written by the activation stage."""
    arrays = load_npz(path, required=("tap_names",))
    names = [str(name) for name in arrays["tap_names"]]
    missing = [name for name in names if name not in arrays]
    if missing:
        raise ArtifactError(f"{path}: layers.npz lacks the taps {missing} that tap_names lists")
    return {name: arrays[name] for name in names}
