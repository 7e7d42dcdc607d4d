"""Across papers, on the same models: questions none of the five papers asked.

Prunable units vs clones (Casper × Doimo), per model, last hidden layer
    Casper et al. call a network's units prunable when zeroing a random subset leaves its
    predictions unchanged; Doimo et al. call a layer redundant when a random chunk of its units
    reconstructs the whole layer (ridge R² → 1: the chunk holds a copy of every "clone").
    If the two describe one phenomenon, then among kept subsets of the *same size* the ones that
    reconstruct the full layer better must also keep the predictions better. For each kept
    fraction (default 1/8, 1/4, 1/2, 3/4) ``subsets`` random kept sets of the last hidden layer are
    drawn (seeded; :func:`widthlab.clones.sample_chunks`); for each the agreement with the intact
    model when every other unit is zeroed (test split; :func:`widthlab.units.masked_agreement`)
    and the variance-weighted ridge R² kept → full (fit on train, scored on test;
    :func:`widthlab.clones.chunk_regression`). The statistic is Spearman's ρ between agreement
    and R² *within* a fraction (both fall as fewer units are kept, so pooling over fractions would
    correlate them trivially); ``rho`` per model is the mean over fractions with a defined ρ.

Layers: blocks, PC1 and prunability (Nguyen × Casper)
    Per model and hidden layer: whether the layer lies in a detected CKA block, its PC1 variance
    share, and its per-layer prunability; the summary compares layers in blocks with the others.

Models: transfer and clones (Gilboa × Doimo)
    Per (depth, width): mean target accuracy of last-layer transfer and mean number of clones,
    and Spearman's ρ between them over widths. The transfer grid and the clone grid are
    different models of the same architectures, so this is a correlation of width trends.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats

from widthlab.clones.chunks import sample_chunks
from widthlab.clones.measure import last_hidden
from widthlab.clones.regression import chunk_regression
from widthlab.headline import headline_row, headline_table, verdict
from widthlab.units.ablation import masked_agreement, tap_sizes

DEFAULT_KEPT_FRACTIONS = (0.125, 0.25, 0.5, 0.75)
SUBSET_COLUMNS = ["kept_fraction", "kept_units", "subset", "agreement", "r2"]


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's ρ, NaN when either side is constant or fewer than 3 pairs are finite."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


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


def prune_vs_clone_summary(subsets: pd.DataFrame, by: Sequence[str] = ("model",)) -> pd.DataFrame:
    """Per ``by`` group (and kept fraction): Spearman ρ(agreement, R²) within the fraction, and
    the mean agreement and R²; plus a ``kept_fraction = NaN`` row with the mean ρ over fractions."""
    by = list(by)
    rows = []
    for key, group in subsets.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        rhos = []
        for fraction, part in group.groupby("kept_fraction", sort=True):
            rho = spearman(part["agreement"], part["r2"])
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


def prune_vs_clone_models(
    model_paths: Sequence[str],
    datasets: dict,
    settings: dict,
    device: str = "cpu",
    log=None,
) -> pd.DataFrame:
    """:func:`prune_vs_clone_table` for every model file, fitted on its dataset's train split
    and scored on the test split, with the model's id columns in front."""
    from widthlab.device import resolve_device
    from widthlab.models import load_model

    dev = resolve_device(device)
    parts = []
    for path in model_paths:
        model, spec = load_model(path)
        data = datasets[spec.data.id]
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


# ----------------------------------------------------------------------------------------------
# Layers: blocks, PC1 and prunability (Nguyen × Casper)
# ----------------------------------------------------------------------------------------------

MODEL_KEYS = ["model", "width", "depth", "train_size", "weight_decay", "seed"]


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


def layer_contrasts(table: pd.DataFrame) -> pd.DataFrame:
    """Per model with layers both inside and outside blocks: the mean of each quantity inside
    minus outside (``pc1_share``, ``prunability``, ``compressibility``)."""
    rows = []
    for _, group in table.groupby("model", sort=True):
        inside, outside = group[group["in_block"]], group[~group["in_block"]]
        if inside.empty or outside.empty:
            continue
        row = group.iloc[0][MODEL_KEYS].to_dict()
        row.update(layers_in_block=len(inside), layers_outside=len(outside))
        for quantity in ("pc1_share", "prunability", "compressibility"):
            row[f"{quantity}_in"] = inside[quantity].mean()
            row[f"{quantity}_out"] = outside[quantity].mean()
            row[f"{quantity}_diff"] = row[f"{quantity}_in"] - row[f"{quantity}_out"]
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# Models: transfer and clones (Gilboa × Doimo)
# ----------------------------------------------------------------------------------------------


def transfer_clone_table(
    gaps: pd.DataFrame, clone_tables: dict[str, pd.DataFrame], thresholds, shots: str = "all"
) -> pd.DataFrame:
    """Per transfer model: target accuracy of its trained backbone (``shots`` per class), the
    trained − random gap, source accuracy, and its clone count (Doimo's rule, ``thresholds``) on
    the source task."""
    from widthlab.clones.summary import clone_count

    rows = gaps[gaps["shots"].astype(str) == str(shots)]
    counts = pd.DataFrame(
        [
            {"model": model, **clone_count(table, thresholds)}
            for model, table in clone_tables.items()
        ]
    )
    keep = [*MODEL_KEYS, "trained_acc", "random_acc", "gap", "source_acc"]
    return rows[keep].merge(
        counts[["model", "clone_size", "n_clones"]], on="model", how="inner", validate="one_to_one"
    )


# ----------------------------------------------------------------------------------------------
# The three answers, in the headline contract
# ----------------------------------------------------------------------------------------------

PAPER = "Across papers (this run)"


def joint_headline(
    prune_clone: pd.DataFrame | None,
    layers: pd.DataFrame | None,
    transfer_clones: pd.DataFrame | None,
) -> pd.DataFrame:
    """One headline row per joint question that this run has the tables for."""
    rows = []
    if prune_clone is not None and len(prune_clone):
        per_model = prune_vs_clone_summary(prune_clone)
        rho = per_model[per_model["kept_fraction"].isna()]["rho"].to_numpy()
        rows.append(
            headline_row(
                PAPER,
                "Casper's prunable units are Doimo's redundant ones: a kept subset of the last "
                "layer that reconstructs the whole layer (clones) also keeps the predictions.",
                "Spearman ρ(agreement, ridge R²) over kept subsets of equal size",
                "mean over kept fractions per model; t-interval over models",
                rho,
                verdict(rho, 0.0),
                f"ρ = {np.nanmean(rho):+.2f} over {np.isfinite(rho).sum()} models "
                f"(range {np.nanmin(rho):+.2f} … {np.nanmax(rho):+.2f}).",
            )
        )
    if layers is not None and len(layers):
        contrasts = layer_contrasts(layers)
        for quantity, claim in (
            ("pc1_share", "CKA blocks coincide with the layers where PC1 dominates."),
            ("prunability", "CKA blocks coincide with the layers whose units are most prunable."),
        ):
            diff = contrasts[f"{quantity}_diff"].to_numpy() if len(contrasts) else np.array([])
            detail = (
                f"in-block minus other layers {np.mean(diff):+.3f} over {len(diff)} models with "
                f"a block (in {contrasts[f'{quantity}_in'].mean():.3f}, "
                f"out {contrasts[f'{quantity}_out'].mean():.3f})."
                if len(diff)
                else "no model has layers both inside and outside a block."
            )
            rows.append(
                headline_row(
                    PAPER,
                    claim,
                    f"{quantity} inside − outside blocks",
                    "per model with a block; t-interval over models",
                    diff,
                    verdict(diff, 0.0),
                    detail,
                )
            )
    if transfer_clones is not None and len(transfer_clones) >= 3:
        rho = spearman(transfer_clones["trained_acc"], transfer_clones["n_clones"])
        by_width = transfer_clones.groupby("width")[["trained_acc", "n_clones"]].mean()
        rows.append(
            headline_row(
                PAPER,
                "Transfer accuracy tracks the number of clones in the source model.",
                "Spearman ρ(target accuracy, #clones) over transfer models",
                "one ρ over models (width is a common cause: see the figure)",
                [rho],
                "n/a"
                if not np.isfinite(rho)
                else ("yes" if rho > 0.5 else "partly" if rho > 0 else "no"),
                f"ρ = {rho:+.2f} over {len(transfer_clones)} models; over width means "
                f"ρ = {spearman(by_width['trained_acc'], by_width['n_clones']):+.2f}.",
            )
        )
    return headline_table(rows)
