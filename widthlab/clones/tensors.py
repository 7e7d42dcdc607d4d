"""Conversions shared by the per-model estimators: everything is computed in float64."""

from __future__ import annotations

import numpy as np
import torch

from widthlab.device import resolve_device

ArrayLike = np.ndarray | torch.Tensor


def as_float64(x: ArrayLike, device=None, dtype=torch.float64) -> torch.Tensor:
    """``x`` as a tensor on ``device`` (resolved), float64 unless ``dtype`` says otherwise."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return x.to(device=resolve_device(device), dtype=dtype)


def as_labels(y: ArrayLike, device=None) -> torch.Tensor:
    """Class labels as a flat int64 tensor."""
    return as_float64(y, device, dtype=torch.int64).reshape(-1)


def as_numpy64(x: ArrayLike) -> np.ndarray:
    """``x`` as a float64 numpy array (tensors are detached and moved to the CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)
