"""One model's similarity tables (the per-model and cross-model jobs): within-model CKA of every
layer pair, PC1 share and linear-probe accuracy per layer, and cross-model CKA of a pair. The
CKA itself is :mod:`widthlab.cka`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from widthlab.cka import ArrayLike, cka_matrix, cross_cka, flatten, pc1_share


def linear_probe_accuracy(
    x: ArrayLike,
    y: np.ndarray,
    seed: int = 0,
    test_fraction: float = 0.3,
    max_iter: int = 5000,
    c: float = 1.0,
) -> float:
    """Held-out accuracy of a logistic-regression probe on standardised features.

    Stratified split of the examples (``test_fraction`` held out, seeded); scikit-learn
    ``LogisticRegression`` (L2, ``C=c``, lbfgs) after ``StandardScaler`` fitted on the train part.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = flatten(x)
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    x = x.astype(np.float64)
    y = np.asarray(y)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
    probe.fit(x_train, y_train)
    return float(probe.score(x_test, y_test))


# ----------------------------------------------------------------------------------------------
# Tidy tables for the workflow stage
# ----------------------------------------------------------------------------------------------


def _long(matrix: np.ndarray, names_i, names_j, estimator: str, suffix=("i", "j")):
    li, lj = matrix.shape
    ii, jj = np.meshgrid(np.arange(li), np.arange(lj), indexing="ij")
    si, sj = suffix
    return pd.DataFrame(
        {
            f"layer_{si}": ii.ravel(),
            f"layer_{sj}": jj.ravel(),
            f"name_{si}": np.asarray(names_i, dtype=object)[ii.ravel()],
            f"name_{sj}": np.asarray(names_j, dtype=object)[jj.ravel()],
            "estimator": estimator,
            "cka": matrix.ravel(),
        }
    )


def within_model_table(
    tap_names: Sequence[str],
    layers: Sequence[ArrayLike],
    estimators: Sequence[str] = ("debiased", "linear"),
    **kwargs,
) -> pd.DataFrame:
    """Long table of CKA between every pair of a model's layers, one block per estimator:
    layer_i, layer_j, name_i, name_j, estimator, cka (``<est>_pc1_removed`` estimators allowed)."""
    tables = [
        _long(cka_matrix(layers, est, **kwargs), tap_names, tap_names, est) for est in estimators
    ]
    return pd.concat(tables, ignore_index=True)


def cross_model_table(
    tap_names_a: Sequence[str],
    layers_a: Sequence[ArrayLike],
    tap_names_b: Sequence[str],
    layers_b: Sequence[ArrayLike],
    estimators: Sequence[str] = ("debiased",),
    **kwargs,
) -> pd.DataFrame:
    """Long table of CKA between every layer of A and every layer of B:
    layer_a, layer_b, name_a, name_b, estimator, cka."""
    tables = [
        _long(
            cross_cka(layers_a, layers_b, est, **kwargs), tap_names_a, tap_names_b, est, ("a", "b")
        )
        for est in estimators
    ]
    return pd.concat(tables, ignore_index=True)


def layer_table(
    tap_names: Sequence[str],
    layers: Sequence[ArrayLike],
    labels: np.ndarray | None = None,
    seed: int = 0,
    test_fraction: float = 0.3,
    device: str | torch.device | None = None,
    c: float = 1.0,
    max_iter: int = 5000,
) -> pd.DataFrame:
    """One row per layer: layer, name, units, pc1_share, probe_accuracy (NaN without labels;
    probe settings as in :func:`linear_probe_accuracy`)."""
    rows = []
    for i, (name, x) in enumerate(zip(tap_names, layers, strict=True)):
        rows.append(
            {
                "layer": i,
                "name": name,
                "units": int(np.prod(x.shape[1:])),
                "pc1_share": pc1_share(x, device),
                "probe_accuracy": (
                    linear_probe_accuracy(x, labels, seed, test_fraction, max_iter, c)
                    if labels is not None
                    else float("nan")
                ),
            }
        )
    return pd.DataFrame(rows)


def limit_threads(threads: int) -> None:
    """Run torch and the BLAS / OpenMP pools on ``threads`` threads. The stage's matrices are
    small (n ≈ hundreds), and oversubscribed threads made them 10–50× slower on shared cores."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(max(1, int(threads)))
    threadpool_limits(max(1, int(threads)))


def with_model_columns(table: pd.DataFrame, columns: dict) -> pd.DataFrame:
    """``table`` with the model's columns (``ModelSpec.columns()``) in front."""
    front = pd.DataFrame({k: [v] * len(table) for k, v in columns.items()}, index=table.index)
    return pd.concat([front, table], axis=1)


def _cka_kwargs(settings: dict) -> dict:
    """Keywords of :func:`cka_matrix` / :func:`cross_cka` from the stage settings."""
    minibatch = settings.get("minibatch", {})
    return {
        "batch_size": minibatch.get("batch_size", 256),
        "passes": minibatch.get("passes", 10),
        "seed": minibatch.get("seed", 0),
        "rbf_threshold": settings.get("rbf_threshold", 1.0),
    }


def model_tables(
    columns: dict,
    tap_names: Sequence[str],
    layers: Sequence[ArrayLike],
    labels: np.ndarray,
    settings: dict,
    device: str | torch.device | None = "cpu",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two per-model tables of the stage, each led by the model's ``columns``:

    - within-model CKA: ``layer_i, layer_j, name_i, name_j, estimator, cka`` for every layer
      pair and every estimator of ``settings["estimators"]``;
    - per layer: ``layer, name, units, pc1_share, probe_accuracy`` (held-out logistic-regression
      accuracy on the probe set, ``settings["probe"]``).
    """
    probe = settings.get("probe", {})
    kwargs = _cka_kwargs(settings)
    cka = within_model_table(tap_names, layers, settings["estimators"], device=device, **kwargs)
    per_layer = layer_table(
        tap_names,
        layers,
        labels,
        seed=probe.get("seed", 0),
        test_fraction=probe.get("test_fraction", 0.3),
        device=device,
        c=probe.get("c", 1.0),
        max_iter=probe.get("max_iter", 5000),
    )
    return with_model_columns(cka, columns), with_model_columns(per_layer, columns)


def cross_pair_table(
    pair: Sequence[str],
    taps_a: Mapping[str, ArrayLike],
    taps_b: Mapping[str, ArrayLike],
    settings: dict,
    device: str | torch.device | None = "cpu",
) -> pd.DataFrame:
    """Cross-model CKA of one ``pair`` = (kind, model a, model b), from each model's taps in
    forward order, for every estimator of ``settings["cross_estimators"]``:
    ``kind, model_a, model_b, layer_a, layer_b, name_a, name_b, estimator, cka``."""
    kind, model_a, model_b = pair
    table = cross_model_table(
        list(taps_a),
        list(taps_a.values()),
        list(taps_b),
        list(taps_b.values()),
        settings["cross_estimators"],
        device=device,
        **_cka_kwargs(settings),
    )
    front = pd.DataFrame({"kind": kind, "model_a": model_a, "model_b": model_b}, index=table.index)
    return pd.concat([front, table], axis=1)
