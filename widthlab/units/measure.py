"""One model's units analysis (the per-model job): ablation curves, redundancy and the
per-model table on the test split (torch, imported when called)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # torch is imported where it is used, so tables and figures never load it
    import torch

from widthlab.units.ablation import _as_tensor, _no_grad, ablation_curves, model_device, predict
from widthlab.units.counts import per_model_table
from widthlab.units.redundancy import redundancy_table
from widthlab.units.settings import DEFAULT_MAX_ROWS, MODEL_SETTINGS


@_no_grad
def layer_activations(model: torch.nn.Module, x, batch_size: int = 1024) -> dict[str, np.ndarray]:
    """{tap: float32 array} of the intact model on ``x`` (when no activation file is at hand)."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    parts: dict[str, list] = {tap: [] for tap in model.tap_names}
    try:
        for start in range(0, len(x), batch_size):
            _, taps = model(_as_tensor(x[start : start + batch_size], device), return_taps=True)
            for tap in model.tap_names:
                parts[tap].append(taps[tap].float().cpu().numpy())
    finally:
        model.train(was_training)
    return {tap: np.concatenate(v) for tap, v in parts.items()}


# batch_size None: as many rows per forward pass as keep the largest tap's activations within
# this many bytes (CPU: cache-sized; 2048 rows of a 512-unit layer ran in half the time of 32768
# on the digits MLPs), at most AUTO_BATCH_MAX_ROWS
AUTO_BATCH_BYTES = {"cpu": 4 << 20, "cuda": 1 << 30}
AUTO_BATCH_MAX_ROWS = 1 << 16


@_no_grad
def auto_batch_size(model: torch.nn.Module, x, batch_size: int | None = None) -> int:
    """``batch_size``, or when None the rows per pass that keep the largest tap of one example
    times the rows within :data:`AUTO_BATCH_BYTES` of the model's device type (float32), between
    1 and :data:`AUTO_BATCH_MAX_ROWS`."""
    if batch_size is not None:
        return int(batch_size)
    device = model_device(model)
    _, taps = model(_as_tensor(x[:1], device), return_taps=True)
    largest = max(int(tap[0].numel()) for tap in taps.values()) * 4
    budget = AUTO_BATCH_BYTES.get(device.type, AUTO_BATCH_BYTES["cpu"])
    return int(min(AUTO_BATCH_MAX_ROWS, max(1, budget // largest)))


def fraction_grid(fractions: int | Sequence[float]) -> list[float]:
    """Ablation fractions: an integer ``n`` is ``linspace(0, 1, n)``, a list is used sorted."""
    if isinstance(fractions, bool):
        raise ValueError(f"ablation fractions: a count or a list, got {fractions!r}")
    if isinstance(fractions, int | np.integer):
        if fractions < 2:
            raise ValueError(f"need at least 2 ablation fractions, got {fractions}")
        return [float(f) for f in np.linspace(0.0, 1.0, int(fractions))]
    values = sorted({float(f) for f in fractions})
    if len(values) < 2 or values[0] < 0.0 or values[-1] > 1.0:
        raise ValueError(f"ablation fractions: at least 2 distinct values in [0, 1], got {values}")
    return values


def model_seed(base: int, seed: int) -> int:
    """The seed of one model's ablation orders and row subsampling, from the stage's ``seed`` and
    the model's training seed (models of different seeds get independent orders)."""
    return int(np.random.SeedSequence([int(base), int(seed)]).generate_state(1)[0])


@_no_grad
def unit_sample_sets(
    model: torch.nn.Module,
    x,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
    batch_size: int = 1024,
) -> dict[str, np.ndarray]:
    """Per tap, the intact model's activations on ``x`` as a float32 (samples × units) matrix.

    Dense taps: one row per example. Conv maps (``n × C × H × W``): every spatial position is a
    sample, but only ``ceil(max_rows / n)`` positions per example are kept (drawn without
    replacement with a CPU generator seeded by ``seed``, so the draw does not depend on the
    device), which keeps about ``max_rows`` rows without ever holding every position of the test
    set; :func:`unit_samples` then subsamples to ``max_rows`` exactly.
    """
    import torch

    was_training = model.training
    model.eval()
    device = model_device(model)
    per_example = max(1, math.ceil(max_rows / max(len(x), 1)))
    generator = torch.Generator().manual_seed(int(seed))
    parts: dict[str, list] = {tap: [] for tap in model.tap_names}
    try:
        for start in range(0, len(x), batch_size):
            _, taps = model(_as_tensor(x[start : start + batch_size], device), return_taps=True)
            for tap in model.tap_names:
                h = taps[tap].float()
                if h.dim() > 2:
                    flat = h.flatten(2)  # b × C × positions
                    b, c, p = flat.shape
                    if per_example < p:
                        pick = torch.rand(b, p, generator=generator).argsort(dim=1)
                        pick = pick[:, :per_example].to(flat.device)
                        flat = torch.gather(flat, 2, pick.unsqueeze(1).expand(b, c, per_example))
                    h = flat.transpose(1, 2).reshape(-1, c)
                parts[tap].append(h.cpu().numpy())
    finally:
        model.train(was_training)
    return {tap: np.concatenate(v) for tap, v in parts.items()}


def analyse_model(
    model: torch.nn.Module,
    x,
    y=None,
    settings: Mapping | None = None,
    columns: Mapping[str, object] | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prunability and redundancy of one model on ``x`` (the test split): ``(units table,
    ablation curves)``, both led by ``columns`` (``ModelSpec.columns()``).

    ``settings`` overrides :data:`MODEL_SETTINGS` (``batch_size`` None: :func:`auto_batch_size`);
    ``seed`` draws the ablation orders and the
    PCA row subsample (see :func:`model_seed`). The model runs where it is (move it to the GPU
    first to use one). With labels ``y`` the intact model's accuracy on ``x`` is kept as
    ``intact_accuracy``; ``examples`` is the number of examples the agreement is measured on.
    """
    s = {**MODEL_SETTINGS, **(settings or {})}
    unknown = sorted(set(s) - set(MODEL_SETTINGS))
    if unknown:
        raise ValueError(f"unknown units settings {unknown}; known: {sorted(MODEL_SETTINGS)}")
    if len(x) < 2:
        raise ValueError(f"the units analysis needs at least 2 examples, got {len(x)}")
    batch_size = auto_batch_size(model, x, s["batch_size"])
    curves = ablation_curves(
        model, x, fraction_grid(s["fractions"]), s["orders"], seed, batch_size, True
    )
    samples = unit_sample_sets(model, x, s["max_rows"], seed, batch_size)
    redundancy = redundancy_table(samples, s["energy"], s["corr_threshold"], s["max_rows"], seed)
    table = per_model_table(curves, redundancy, s["threshold"], s["redundancy_rule"], columns)
    table["examples"] = len(x)
    table["pca_rows"] = [*redundancy["pca_rows"].astype(int), int(redundancy["pca_rows"].sum())]
    if y is not None:
        predicted = predict(model, x, batch_size).cpu().numpy()
        table["intact_accuracy"] = float((predicted == np.asarray(y)).mean())
    if columns:
        for i, (name, value) in enumerate(columns.items()):
            curves.insert(i, name, [value] * len(curves))
    return table, curves
