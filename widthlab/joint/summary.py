"""Tables of the joint analysis, torch-free: ρ per model and kept fraction, one row per layer
with its block membership, position-matched contrasts, and one row per transfer model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from widthlab.grid import parse_model_id
from widthlab.stats import rank_correlation

MODEL_KEYS = ["model", "width", "depth", "train_size", "weight_decay", "seed"]
LAYER_QUANTITIES = ("pc1_share", "prunability", "compressibility")
POSITION = ["depth", "layer"]  # a layer's place in its network: the same place in another model


def prune_vs_clone_summary(subsets: pd.DataFrame, by: Sequence[str] = ("model",)) -> pd.DataFrame:
    """Per ``by`` group (and kept fraction): Spearman ρ(agreement, R²) within the fraction, and
    the mean agreement and R²; plus a ``kept_fraction = NaN`` row with the mean ρ over fractions."""
    by = list(by)
    rows = []
    for key, group in subsets.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        rhos = []
        for fraction, part in group.groupby("kept_fraction", sort=True):
            rho = rank_correlation(part["agreement"], part["r2"])
            rhos.append(rho)
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "kept_fraction": fraction,
                    "rho": rho,
                    "agreement": part["agreement"].mean(),
                    "r2": part["r2"].mean(),
                    "subsets": len(part),
                }
            )
        finite = [r for r in rhos if np.isfinite(r)]
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "kept_fraction": np.nan,
                "rho": float(np.mean(finite)) if finite else np.nan,
                "agreement": group["agreement"].mean(),
                "r2": group["r2"].mean(),
                "subsets": len(group),
            }
        )
    return pd.DataFrame(rows)


def block_layers(blocks: pd.DataFrame, estimator: str) -> set[tuple[str, int]]:
    """(model, layer index) of every layer inside a detected block of ``estimator``."""
    rows = blocks[blocks["estimator"] == estimator]
    return {
        (model, layer)
        for model, start, end in zip(rows["model"], rows["start"], rows["end"], strict=True)
        for layer in range(int(start), int(end) + 1)
    }


def layer_table(
    blocks: pd.DataFrame, layers: pd.DataFrame, units: pd.DataFrame, estimator: str
) -> pd.DataFrame:
    """One row per (model, hidden layer) of models in both stages: ``in_block`` (inside a block of
    ``estimator``), ``pc1_share`` (similarity) and the layer's ``prunability`` and
    ``compressibility`` (units, per-layer ablation curve)."""
    inside = block_layers(blocks, estimator)
    per_layer = units[units["scope"] == "layer"][
        ["model", "layer", "prunability", "compressibility"]
    ].rename(columns={"layer": "name"})
    table = layers[[*MODEL_KEYS, "layer", "name", "pc1_share"]].merge(
        per_layer, on=["model", "name"], how="inner", validate="one_to_one"
    )
    table.insert(table.columns.get_loc("name") + 1, "in_block", False)
    table["in_block"] = [
        (m, int(i)) in inside for m, i in zip(table["model"], table["layer"], strict=True)
    ]
    return table


def position_centred(table: pd.DataFrame, quantity: str) -> pd.Series:
    """``quantity`` minus its mean over every model's layer at the same :data:`POSITION`."""
    return table[quantity] - table.groupby(POSITION)[quantity].transform("mean")


def layer_contrasts(table: pd.DataFrame) -> pd.DataFrame:
    """Per model with layers both inside and outside blocks: for each of
    :data:`LAYER_QUANTITIES`, the raw means inside (``_in``) and outside (``_out``), and
    ``_diff`` = mean position-centred value inside − outside (module docstring: a late layer is
    compared with late layers, so "blocks are late" is not read as "blocks are prunable")."""
    table = table.assign(
        **{f"{q}_centred": position_centred(table, q) for q in LAYER_QUANTITIES if q in table}
    )
    rows = []
    for _, group in table.groupby("model", sort=True):
        inside, outside = group[group["in_block"]], group[~group["in_block"]]
        if inside.empty or outside.empty:
            continue
        row = group.iloc[0][MODEL_KEYS].to_dict()
        row.update(layers_in_block=len(inside), layers_outside=len(outside))
        for quantity in LAYER_QUANTITIES:
            row[f"{quantity}_in"] = inside[quantity].mean()
            row[f"{quantity}_out"] = outside[quantity].mean()
            centred = f"{quantity}_centred"
            row[f"{quantity}_diff"] = inside[centred].mean() - outside[centred].mean()
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# Models: transfer and clones (Gilboa × Doimo)
# ----------------------------------------------------------------------------------------------


def transfer_clone_table(
    gaps: pd.DataFrame, clone_tables: dict[str, pd.DataFrame], thresholds, shots: str = "all"
) -> pd.DataFrame:
    """Per transfer model (with its ``architecture``): target accuracy of its trained backbone
    (``shots`` per class), the trained − random gap, source accuracy, and its clone count
    (Doimo's rule, ``thresholds``) on the source task."""
    from widthlab.clones.summary import clone_count

    rows = gaps[gaps["shots"].astype(str) == str(shots)]
    counts = pd.DataFrame(
        [
            {"model": model, **clone_count(table, thresholds)}
            for model, table in clone_tables.items()
        ]
    )
    keep = [*MODEL_KEYS, "trained_acc", "random_acc", "gap", "source_acc"]
    table = rows[keep].merge(
        counts[["model", "clone_size", "n_clones"]], on="model", how="inner", validate="one_to_one"
    )
    table.insert(1, "architecture", [architecture(m) for m in table["model"]])
    return table


def architecture(model_id: str) -> str:
    """The model id with its seed set to 0: models of one architecture differ only in seed."""
    return parse_model_id(model_id).with_(seed=0).id
