"""The one device resolver: what ``device: auto | cpu | cuda[:i]`` in the config means."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) → the GPU when torch sees one, else the CPU; ``cuda`` without a GPU is
    an error naming the setting, never a silent fall-back to the CPU."""
    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for, but torch sees no CUDA device")
    return torch.device(device)
