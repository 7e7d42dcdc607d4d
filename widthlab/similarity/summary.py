"""The similarity stage across models (torch-free): blocks per model and estimator, the
block summary with PC1 shares and cross-seed CKA, prediction agreement and per-class
differences of the compared pairs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from widthlab.similarity.blocks import block_summary, find_blocks, matrix_from_table
from widthlab.similarity.errors import per_class_difference, prediction_agreement
from widthlab.similarity.settings import PC1_REMOVED_SUFFIX


def blocks_table(cka_tables: pd.DataFrame, estimators: Sequence[str], threshold, min_size):
    """One row per detected block (:func:`find_blocks`) per model and estimator: the model
    columns, ``estimator, block, start, end, size, mean_cka, start_name, end_name, n_layers``."""
    rows = []
    model_cols = _model_columns(cka_tables)
    for (_, est), sub in cka_tables[cka_tables["estimator"].isin(estimators)].groupby(
        ["model", "estimator"], sort=True
    ):
        matrix = matrix_from_table(sub, est)
        names = sub.drop_duplicates("layer_i").sort_values("layer_i")["name_i"].tolist()
        front = sub.iloc[0][model_cols].to_dict()
        for k, block in enumerate(find_blocks(matrix, threshold, min_size)):
            rows.append(
                {
                    **front,
                    "estimator": est,
                    "block": k,
                    "start": block.start,
                    "end": block.end,
                    "size": block.size,
                    "mean_cka": block.mean_cka,
                    "start_name": names[block.start],
                    "end_name": names[block.end],
                    "n_layers": len(names),
                }
            )
    columns = [*model_cols, "estimator", "block", "start", "end", "size", "mean_cka"]
    columns += ["start_name", "end_name", "n_layers"]
    return pd.DataFrame(rows, columns=columns)


def _model_columns(table: pd.DataFrame) -> list[str]:
    """The leading model columns of a per-model table (everything before its first own column)."""
    own = {"layer", "layer_i", "estimator", "kind"}
    cols = list(table.columns)
    for i, col in enumerate(cols):
        if col in own:
            return cols[:i]
    return cols


def cross_seed_diagonal(cross: pd.DataFrame, estimator: str) -> pd.DataFrame:
    """Per layer of the seed pairs: CKA between layer ℓ of one seed and layer ℓ of the other
    (``model_a, model_b, layer, cka``); both orientations are listed so each model gets a value."""
    sub = cross[
        (cross["kind"] == "seeds")
        & (cross["estimator"] == estimator)
        & (cross["layer_a"] == cross["layer_b"])
    ]
    one = sub[["model_a", "model_b", "layer_a", "cka"]].rename(columns={"layer_a": "layer"})
    two = one.rename(columns={"model_a": "model_b", "model_b": "model_a"})
    return pd.concat([one, two], ignore_index=True)


def block_summary_table(
    cka_tables: pd.DataFrame,
    layer_tables: pd.DataFrame,
    cross: pd.DataFrame | None,
    estimators: Sequence[str],
    threshold: float,
    min_size: int,
    accuracy: dict[str, float] | None = None,
) -> pd.DataFrame:
    """One row per model and estimator: the model columns, ``estimator``, the
    :func:`block_summary` columns (largest block, coverage, PC1 share inside / outside the
    blocks), ``probe_set_accuracy`` (the model's own accuracy on the probe set) and the
    cross-seed CKA (same layer, other seeds, same estimator) inside / outside the blocks."""
    model_cols = _model_columns(cka_tables)
    shares = {
        mid: sub.sort_values("layer")["pc1_share"].to_numpy()
        for mid, sub in layer_tables.groupby("model")
    }
    rows = []
    for est in estimators:
        base = est.removesuffix(PC1_REMOVED_SUFFIX)
        diagonal = cross_seed_diagonal(cross, base) if cross is not None else None
        for mid, sub in cka_tables[cka_tables["estimator"] == est].groupby("model", sort=True):
            matrix = matrix_from_table(sub, est)
            row = {**sub.iloc[0][model_cols].to_dict(), "estimator": est}
            row.update(block_summary(matrix, threshold, min_size, shares.get(mid)))
            row["probe_set_accuracy"] = (accuracy or {}).get(mid, float("nan"))
            inside = np.zeros(matrix.shape[0], dtype=bool)
            for b in find_blocks(matrix, threshold, min_size):
                inside[b.start : b.end + 1] = True
            row["cross_seed_cka_in_blocks"] = float("nan")
            row["cross_seed_cka_outside"] = float("nan")
            if diagonal is not None:
                mine = diagonal[diagonal["model_a"] == mid].groupby("layer")["cka"].mean()
                values = np.full(matrix.shape[0], np.nan)
                values[mine.index.to_numpy(dtype=int)] = mine.to_numpy()
                if inside.any() and np.isfinite(values[inside]).any():
                    row["cross_seed_cka_in_blocks"] = float(np.nanmean(values[inside]))
                if (~inside).any() and np.isfinite(values[~inside]).any():
                    row["cross_seed_cka_outside"] = float(np.nanmean(values[~inside]))
            rows.append(row)
    return pd.DataFrame(rows)


# --- error patterns ---------------------------------------------------------------------------


def _aligned(predictions: dict[str, pd.DataFrame], mid: str) -> pd.DataFrame:
    table = predictions[mid].sort_values("example")
    return table.reset_index(drop=True)


def _check_same_examples(a: pd.DataFrame, b: pd.DataFrame, ma: str, mb: str) -> None:
    if len(a) != len(b) or not np.array_equal(a["index"].to_numpy(), b["index"].to_numpy()):
        raise ValueError(f"{ma} and {mb} were not probed on the same examples in the same order")


def agreement_table(predictions: dict[str, pd.DataFrame], pairs) -> pd.DataFrame:
    """Per pair (``kind, model_a, model_b``): ``agreement`` (fraction of probe examples with the
    same predicted class), ``both_wrong`` (fraction both get wrong), ``error_overlap`` (both
    wrong / either wrong: Jaccard of the error sets), ``acc_a``, ``acc_b``, ``n``."""
    rows = []
    for pair in pairs:
        a, b = _aligned(predictions, pair.a), _aligned(predictions, pair.b)
        _check_same_examples(a, b, pair.a, pair.b)
        wrong_a, wrong_b = ~a["correct"].to_numpy(bool), ~b["correct"].to_numpy(bool)
        either = (wrong_a | wrong_b).sum()
        rows.append(
            {
                "kind": pair.kind,
                "model_a": pair.a,
                "model_b": pair.b,
                "agreement": float(prediction_agreement(a["predicted"], b["predicted"]).mean()),
                "both_wrong": float((wrong_a & wrong_b).mean()),
                "error_overlap": float((wrong_a & wrong_b).sum() / either) if either else np.nan,
                "acc_a": float(a["correct"].mean()),
                "acc_b": float(b["correct"].mean()),
                "n": len(a),
            }
        )
    columns = ["kind", "model_a", "model_b", "agreement", "both_wrong", "error_overlap"]
    return pd.DataFrame(rows, columns=[*columns, "acc_a", "acc_b", "n"])


def _family(mid: str) -> str:
    """The model id without its seed (``…-s0`` → ``…``): the architecture a seed belongs to."""
    import re

    return re.sub(r"-s\d+(?=(-v[a-z0-9]+)?$)", "", mid)


def class_difference_table(
    predictions: dict[str, pd.DataFrame],
    pairs,
    method: str = "permutation",
    n_permutations: int = 10_000,
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-class accuracy difference wide − deep for each wide-vs-deep architecture pair, the
    seeds of each side stacked (per-example correctness averaged over seeds), with a paired
    sign-flip permutation test per class and Benjamini–Hochberg over the classes of a comparison
    (:func:`per_class_difference`). ``comparison`` = ``<wide family> vs <deep family>``."""
    groups: dict[tuple[str, str], list] = {}
    for pair in pairs:
        if pair.kind == "wide_vs_deep":
            groups.setdefault((_family(pair.a), _family(pair.b)), []).append(pair)
    tables = []
    for (wide, deep), members in groups.items():
        a = [_aligned(predictions, p.a) for p in members]
        b = [_aligned(predictions, p.b) for p in members]
        for x, y, p in zip(a, b, members, strict=True):
            _check_same_examples(x, y, p.a, p.b)
        labels = a[0]["label"].to_numpy()
        correct_a = np.stack([x["correct"].to_numpy(float) for x in a])
        correct_b = np.stack([x["correct"].to_numpy(float) for x in b])
        # McNemar compares two single models; with several seeds per side, the sign-flip test
        use = method if method != "mcnemar" or len(members) == 1 else "permutation"
        if use == "mcnemar":
            correct_a, correct_b = correct_a[0], correct_b[0]
        table = per_class_difference(
            correct_a,
            correct_b,
            labels,
            method=use,
            n_permutations=n_permutations,
            seed=seed,
            alpha=alpha,
        )
        table.insert(0, "comparison", f"{wide} vs {deep}")
        table.insert(1, "model_a", wide)
        table.insert(2, "model_b", deep)
        table.insert(3, "seeds", len(members))
        tables.append(table)
    if not tables:
        columns = ["comparison", "model_a", "model_b", "seeds", "class", "n", "acc_a", "acc_b"]
        columns += ["diff", "p_value", "q_value", "significant", "test"]
        return pd.DataFrame(columns=columns)
    return pd.concat(tables, ignore_index=True)


def summarise(
    cka_tables: pd.DataFrame,
    layer_tables: pd.DataFrame,
    cross: pd.DataFrame,
    predictions: dict[str, pd.DataFrame],
    pairs,
    settings: dict,
) -> dict[str, pd.DataFrame]:
    """Every summary table of the stage from the per-model tables, the cross-model table and the
    models' predictions: ``summary`` (:func:`block_summary_table`, one row per model and
    within-model estimator), ``blocks`` (:func:`blocks_table`), ``agreement``, ``classes``, and
    ``alternatives``: {block threshold: the width estimator's block summary} at the primary
    threshold first, then each declared alternative (``blocks.threshold_alternatives``), for
    the claims' robustness. ``settings``: ``width_estimator, estimators, blocks, errors``."""
    blocks = settings.get("blocks", {})
    threshold, min_size = blocks.get("threshold", 0.9), blocks.get("min_size", 3)
    errors = settings.get("errors", {})
    estimators = list(settings["estimators"])
    accuracy = {mid: float(table["correct"].mean()) for mid, table in predictions.items()}
    summary = block_summary_table(
        cka_tables, layer_tables, cross, estimators, threshold, min_size, accuracy
    )
    width = settings["width_estimator"]
    compared = [e for e in (width, width + PC1_REMOVED_SUFFIX) if e in estimators]
    alternatives = {threshold: summary}
    for other in blocks.get("threshold_alternatives", []):
        if float(other) != threshold:
            alternatives[float(other)] = block_summary_table(
                cka_tables, layer_tables, cross, compared, float(other), min_size, accuracy
            )
    return {
        "summary": summary,
        "blocks": blocks_table(cka_tables, estimators, threshold, min_size),
        "agreement": agreement_table(predictions, pairs),
        "classes": class_difference_table(
            predictions,
            pairs,
            method=errors.get("test", "permutation"),
            n_permutations=errors.get("permutations", 10_000),
            alpha=errors.get("alpha", 0.05),
            seed=errors.get("seed", 0),
        ),
        "alternatives": alternatives,
    }
