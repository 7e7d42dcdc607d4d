"""Model files: a trained :class:`~widthlab.models.TappedModel` on disk (``model.pt``), written
atomically with what rebuilds it, and read back only after its bytes match the hash its
provenance sidecar records, so a corrupt, truncated, foreign or swapped file is refused with
its name and the command that rebuilds it."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import torch

from widthlab.grid import MODEL_ID_PATTERN, ModelSpec, parse_model_id
from widthlab.io import ArtifactError, atomic_path, check_bytes, rebuild_hint
from widthlab.models import TappedModel, build_model

MODEL_FORMAT = "widthlab-model-1"


def save_model(
    model: TappedModel, spec: ModelSpec, path: str | os.PathLike, extra: dict | None = None
) -> None:
    """Write ``model`` (CPU tensors) with what :func:`load_model` needs to rebuild it, atomically.

    The file holds ``{"format", "spec": id, "in_shape", "num_classes", "arch_kwargs",
    "state_dict", "extra"}``.
    """
    payload = {
        "format": MODEL_FORMAT,
        "spec": spec.id,
        "in_shape": list(model.in_shape),
        "num_classes": model.num_classes,
        "arch_kwargs": dict(model.arch_kwargs),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model(path: str | os.PathLike, map_location="cpu") -> tuple[TappedModel, ModelSpec]:
    """``(model in eval mode, spec)`` from a file written by :func:`save_model`.

    Raises :class:`widthlab.io.ArtifactError` naming the file if it is missing or corrupt.
    """
    what = "a widthlab model file (torch.save of spec, in_shape, num_classes, state_dict)"
    hint = rebuild_hint(path)
    if not Path(path).is_file():
        raise ArtifactError(f"{path}: missing (expected {what}): {hint}")
    data = Path(path).read_bytes()
    check_bytes(path, data)  # against the hash its sidecar records
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # torch.load raises many kinds on truncated or foreign files
        raise ArtifactError(
            f"{path}: not readable as {what} ({type(e).__name__}: {e}): {hint}"
        ) from None
    missing = [
        key
        for key in ("spec", "in_shape", "num_classes", "state_dict")
        if not isinstance(payload, dict) or key not in payload
    ]
    if missing:
        raise ArtifactError(f"{path}: lacks {missing}; expected {what}: {hint}")
    folder = Path(path).parent.name
    if payload["spec"] != folder and re.fullmatch(MODEL_ID_PATTERN, folder):
        raise ArtifactError(
            f"{path}: holds model {payload['spec']}, not the {folder} its folder names "
            f"(copied from another model?): {hint}"
        )
    try:
        spec = parse_model_id(payload["spec"])
        model = build_model(
            spec,
            tuple(payload["in_shape"]),
            payload["num_classes"],
            **payload.get("arch_kwargs", {}),
        )
        model.load_state_dict(payload["state_dict"])
    except (ValueError, TypeError, RuntimeError, KeyError) as error:
        raise ArtifactError(f"{path}: does not rebuild its model ({error})") from None
    if isinstance(map_location, str | torch.device):
        model = model.to(map_location)
    return model.eval(), spec
