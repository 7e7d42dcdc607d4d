"""Representation similarity (Nguyen, Raghu & Kornblith 2021): probes, blocks, errors and the
stage's tables. The CKA itself (every estimator, all layer pairs at once) is :mod:`widthlab.cka`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from widthlab.cka import (
    PC1_REMOVED_SUFFIX,
    ArrayLike,
    cka_matrix,
    cross_cka,
    flatten,
    pc1_share,
)


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
# Block structure
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    start: int  # first layer (index into the taps)
    end: int  # last layer, inclusive
    size: int
    mean_cka: float  # mean CKA over the distinct layer pairs inside the block


def find_blocks(cka: np.ndarray, threshold: float = 0.9, min_size: int = 3) -> list[Block]:
    """Contiguous runs of layers whose CKA is ≥ ``threshold`` for **every pair** inside the run.

    Rule (a definition; Nguyen et al. identify blocks by eye): take the longest contiguous run
    [s, e] in which all pairwise CKA values are ≥ ``threshold`` (ties: the earliest), record it,
    and repeat on the layers left of s and right of e, so blocks never overlap. Runs shorter than
    ``min_size`` are not blocks. The all-pairs rule (rather than a chain of adjacent pairs) makes
    a block a square of high similarity: in ordinary networks adjacent layers are similar, but
    layers far apart inside one run are not. Largest block first.
    """
    cka = np.asarray(cka, dtype=np.float64)
    if cka.ndim != 2 or cka.shape[0] != cka.shape[1]:
        raise ValueError(f"find_blocks needs a square CKA matrix, got shape {cka.shape}")
    high = np.nan_to_num(np.minimum(cka, cka.T), nan=-np.inf) >= threshold
    blocks: list[Block] = []

    def longest(lo: int, hi: int) -> tuple[int, int]:
        best = (lo, lo)
        end = lo
        for start in range(lo, hi):
            end = max(end, start)
            while end + 1 < hi and high[end + 1, start : end + 2].all():
                end += 1
            if end - start > best[1] - best[0]:
                best = (start, end)
        return best

    pending = [(0, cka.shape[0])]
    while pending:
        lo, hi = pending.pop()
        if hi - lo < max(min_size, 1):
            continue
        start, end = longest(lo, hi)
        size = end - start + 1
        if size < min_size:
            continue
        inner = cka[start : end + 1, start : end + 1]
        mean = float(inner[~np.eye(size, dtype=bool)].mean()) if size > 1 else float("nan")
        blocks.append(Block(start, end, size, mean))
        pending += [(lo, start), (end + 1, hi)]
    return sorted(blocks, key=lambda b: (-b.size, b.start))


def block_summary(
    cka: np.ndarray,
    threshold: float = 0.9,
    min_size: int = 3,
    pc1_shares: Sequence[float] | None = None,
) -> dict:
    """One row describing a model's block structure (largest block, coverage, PC1 inside/out)."""
    blocks = find_blocks(cka, threshold, min_size)
    n_layers = int(np.asarray(cka).shape[0])
    inside = np.zeros(n_layers, dtype=bool)
    for b in blocks:
        inside[b.start : b.end + 1] = True
    largest = blocks[0] if blocks else None
    row = {
        "n_layers": n_layers,
        "threshold": threshold,
        "min_size": min_size,
        "n_blocks": len(blocks),
        "block_size": largest.size if largest else 0,
        "block_start": largest.start if largest else -1,
        "block_end": largest.end if largest else -1,
        "block_mean_cka": largest.mean_cka if largest else float("nan"),
        "block_fraction": float(inside.mean()),
    }
    if pc1_shares is not None:
        shares = np.asarray(pc1_shares, dtype=np.float64)
        row["pc1_share_in_blocks"] = float(shares[inside].mean()) if inside.any() else np.nan
        row["pc1_share_outside"] = float(shares[~inside].mean()) if (~inside).any() else np.nan
    return row


# ----------------------------------------------------------------------------------------------
# Error patterns
# ----------------------------------------------------------------------------------------------


def prediction_agreement(pred_a: np.ndarray, pred_b: np.ndarray) -> np.ndarray:
    """Per example: do the two models predict the same class? (bool array)."""
    pred_a, pred_b = np.asarray(pred_a), np.asarray(pred_b)
    if pred_a.shape != pred_b.shape:
        raise ValueError(f"prediction arrays differ in shape: {pred_a.shape} vs {pred_b.shape}")
    return pred_a == pred_b


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values); NaNs pass through."""
    from scipy.stats import false_discovery_control

    p = np.asarray(p_values, dtype=np.float64)
    q = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        q[ok] = false_discovery_control(p[ok], method="bh")
    return q


def _sign_flip_p(d: np.ndarray, n_permutations: int, rng: np.random.Generator) -> float:
    """Two-sided paired permutation p-value of mean(d) = 0, flipping each example's sign."""
    observed = abs(d.mean())
    exceed, done, chunk = 0, 0, max(1, 2_000_000 // max(len(d), 1))
    while done < n_permutations:
        k = min(chunk, n_permutations - done)
        signs = rng.integers(0, 2, size=(k, len(d)), dtype=np.int8) * 2 - 1
        null = np.abs(signs @ d) / len(d)
        exceed += int((null >= observed - 1e-12).sum())
        done += k
    return (1 + exceed) / (1 + n_permutations)


def per_class_difference(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    labels: np.ndarray,
    method: str = "permutation",
    n_permutations: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Per-class accuracy difference of model (group) A minus B, tested and FDR-corrected.

    ``correct_a`` / ``correct_b``: per-example correctness, shape (n,) or (k, n) for k seeds
    (averaged over seeds per example). Null: A and B are exchangeable per example. ``method``:
    ``permutation`` (paired sign-flip test of the mean per-example difference, two-sided,
    p = (1 + #{|null| ≥ |obs|}) / (1 + n_permutations)) or ``mcnemar`` (exact two-sided binomial
    test on the discordant pairs; needs 1-D boolean inputs). Benjamini–Hochberg across classes.
    """
    from scipy.stats import binomtest

    a = np.atleast_2d(np.asarray(correct_a, dtype=np.float64)).mean(axis=0)
    b = np.atleast_2d(np.asarray(correct_b, dtype=np.float64)).mean(axis=0)
    labels = np.asarray(labels)
    if not (a.shape == b.shape == labels.shape):
        raise ValueError("correct_a, correct_b and labels must describe the same examples")
    rng = np.random.default_rng(seed)
    rows = []
    for cls in np.unique(labels):
        mask = labels == cls
        d = a[mask] - b[mask]
        if method == "permutation":
            p = _sign_flip_p(d, n_permutations, rng) if np.any(d != 0) else 1.0
        elif method == "mcnemar":
            if np.asarray(correct_a).ndim != 1 or np.asarray(correct_b).ndim != 1:
                raise ValueError("mcnemar needs one model per side (1-D correctness)")
            wins, losses = int((d > 0).sum()), int((d < 0).sum())
            p = binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else 1.0
        else:
            raise ValueError(f"unknown test {method!r}; choose 'permutation' or 'mcnemar'")
        rows.append(
            {
                "class": cls.item() if hasattr(cls, "item") else cls,
                "n": int(mask.sum()),
                "acc_a": float(a[mask].mean()),
                "acc_b": float(b[mask].mean()),
                "diff": float(d.mean()),
                "p_value": float(p),
            }
        )
    table = pd.DataFrame(rows)
    table["q_value"] = benjamini_hochberg(table["p_value"])
    table["significant"] = table["q_value"] < alpha
    table["test"] = method
    return table


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


def matrix_from_table(table: pd.DataFrame, estimator: str, suffix=("i", "j")) -> np.ndarray:
    """The square (or La×Lb) CKA matrix of one estimator back from a long table."""
    sub = table[table["estimator"] == estimator]
    si, sj = suffix
    return sub.pivot(index=f"layer_{si}", columns=f"layer_{sj}", values="cka").to_numpy()


# ----------------------------------------------------------------------------------------------
# The workflow stage: per-model tables, cross-model tables, error patterns, summary, headline
# ----------------------------------------------------------------------------------------------

PAPER = "Nguyen, Raghu & Kornblith 2021"
ESTIMATOR_NAMES = {
    "linear": "linear CKA, biased HSIC (rises with width on its own)",
    "debiased": "linear CKA, unbiased HSIC₁ on all probe examples",
    "minibatch": "linear CKA, minibatch-accumulated unbiased HSIC₁",
    "rbf": "RBF CKA, biased HSIC",
}


def estimator_name(estimator: str) -> str:
    """A readable description of an estimator code (``<est>_pc1_removed`` included)."""
    base = estimator.removesuffix(PC1_REMOVED_SUFFIX)
    name = ESTIMATOR_NAMES.get(base, base)
    return f"{name}, PC1 removed from every layer" if estimator != base else name


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
    kind: str,
    model_a: str,
    model_b: str,
    tap_names_a: Sequence[str],
    layers_a: Sequence[ArrayLike],
    tap_names_b: Sequence[str],
    layers_b: Sequence[ArrayLike],
    settings: dict,
    device: str | torch.device | None = "cpu",
) -> pd.DataFrame:
    """Cross-model CKA of one pair for every estimator of ``settings["cross_estimators"]``:
    ``kind, model_a, model_b, layer_a, layer_b, name_a, name_b, estimator, cka``."""
    estimators = settings["cross_estimators"]
    table = cross_model_table(
        tap_names_a,
        layers_a,
        tap_names_b,
        layers_b,
        estimators,
        device=device,
        **_cka_kwargs(settings),
    )
    front = pd.DataFrame({"kind": kind, "model_a": model_a, "model_b": model_b}, index=table.index)
    return pd.concat([front, table], axis=1)


# --- block structure --------------------------------------------------------------------------


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


# --- summary and headline ---------------------------------------------------------------------

AXES = ("width", "depth", "train_size")


def _group_key(table: pd.DataFrame, vary: Sequence[str]) -> list[str]:
    """Model columns that define a comparison group: all axes except ``vary``, the id and seed."""
    skip = {"model", "seed", *vary}
    return [c for c in _summary_model_columns(table) if c not in skip]


def _summary_model_columns(table: pd.DataFrame) -> list[str]:
    cols = list(table.columns)
    return cols[: cols.index("estimator")] if "estimator" in cols else cols


def _size_rank(value) -> float:
    """Training-set size as a number (None / NaN = all = ∞)."""
    return float("inf") if value is None or pd.isna(value) else float(value)


def _slopes(table: pd.DataFrame, x: str, y: str, transform=np.log2) -> pd.DataFrame:
    """Per comparison group (everything but ``x`` and the seed equal) and seed: the OLS slope of
    ``y`` on ``transform(x)``; groups with fewer than two distinct ``x`` are dropped."""
    key = _group_key(table, [x])
    rows = []
    for _, sub in table.groupby([*key, "seed"], dropna=False):
        xs = transform(sub[x].to_numpy(dtype=float))
        if len(np.unique(xs)) < 2:
            continue
        ys = sub[y].to_numpy(dtype=float)
        rows.append({"seed": sub["seed"].iloc[0], "slope": float(np.polyfit(xs, ys, 1)[0])})
    return pd.DataFrame(rows, columns=["seed", "slope"])


def _values(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame[column].to_numpy(dtype=float) if len(frame) else np.array([])


def _verdict(values, positive: bool = True) -> str:
    """yes: the mean has the expected sign and its 95 % t-interval excludes 0; partly: the sign
    is right but the interval includes 0 (or is unknown: one seed); no: the wrong sign (or 0)."""
    from widthlab.headline import t_interval

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return "n/a"
    mean = values.mean() if positive else -values.mean()
    low, high = t_interval(values)
    if not positive:
        low, high = -high, -low
    if mean <= 0:
        return "no"
    return "yes" if np.isfinite(low) and low > 0 else "partly"


def _fmt(values) -> str:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return ", ".join(f"{v:+.3f}" for v in values) if len(values) else "none"


def headline(
    summary: pd.DataFrame,
    agreement: pd.DataFrame,
    classes: pd.DataFrame,
    estimator: str,
    threshold: float,
    min_size: int,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """The stage's claims (one row each, :mod:`widthlab.headline` contract). Every value comes
    from independently trained networks: one per series (models of one seed that differ only in
    the varied axis), per matched pair or per model, so ``n`` counts those and the CI is a
    t-interval over them; :func:`_verdict` decides ``holds`` unless a row says otherwise."""
    from widthlab.headline import headline_row, headline_table

    est_name = estimator_name(estimator)
    main = summary[summary["estimator"] == estimator]
    deep = main[main["n_layers"] >= min_size]
    rows = []

    slopes = _slopes(deep, "width", "block_fraction")
    values = _values(slopes, "slope")
    rows.append(
        headline_row(
            PAPER,
            "Wider networks develop a block structure: a larger share of their layers forms "
            "blocks of highly similar representations.",
            "slope of the fraction of layers inside blocks per doubling of width",
            f"{est_name}; blocks = runs of ≥ {min_size} layers with all-pairs CKA ≥ {threshold}; "
            "OLS per series (one seed, all else equal), t-interval over series",
            values,
            _verdict(values),
            f"slopes {_fmt(values)} of {len(slopes)} width series of models with "
            f"≥ {min_size} layers.",
        )
    )

    slopes = _slopes(deep, "depth", "block_fraction")
    values = _values(slopes, "slope")
    rows.append(
        headline_row(
            PAPER,
            "Deeper networks develop a block structure as well.",
            "slope of the fraction of layers inside blocks per doubling of depth",
            f"{est_name}; OLS per series (one seed, equal width, all else equal), "
            "t-interval over series",
            values,
            _verdict(values),
            f"slopes {_fmt(values)} of {len(slopes)} depth series "
            f"(depths {sorted(deep['depth'].unique().tolist())}).",
        )
    )

    diffs = []
    for _, sub in deep.groupby(_group_key(deep, ["train_size"]) + ["seed"], dropna=False):
        sizes = sub["train_size"].map(_size_rank).to_numpy()
        if len(np.unique(sizes)) < 2:
            continue
        fractions = sub["block_fraction"].to_numpy(dtype=float)
        small, large = fractions[np.argmin(sizes)], fractions[np.argmax(sizes)]
        diffs.append({"seed": sub["seed"].iloc[0], "diff": float(small - large)})
    diffs = pd.DataFrame(diffs, columns=["seed", "diff"])
    values = _values(diffs, "diff")
    rows.append(
        headline_row(
            PAPER,
            "Block structure appears when capacity is large relative to the training set: "
            "less training data gives more block structure at the same width and depth.",
            "fraction of layers inside blocks, smallest training set minus largest",
            f"{est_name}; pairs of models equal in all else, t-interval over pairs",
            values,
            _verdict(values),
            f"mean difference {np.mean(values) if len(values) else np.nan:+.3f} over "
            f"{len(diffs)} matched pairs; "
            f"{int((values > 0).sum()) if len(values) else 0} positive.",
        )
    )

    has = main.dropna(subset=["pc1_share_in_blocks", "pc1_share_outside"])
    has = has.assign(diff=has["pc1_share_in_blocks"] - has["pc1_share_outside"])
    values = _values(has, "diff")
    rows.append(
        headline_row(
            PAPER,
            "Inside the block the first principal component explains a larger share of the "
            "variance than in the other layers.",
            "PC1 variance share, block layers minus other layers",
            f"PCA of each layer's centred probe-set features; blocks from {est_name}; "
            "t-interval over models with a block",
            values,
            _verdict(values),
            f"{len(has)} models with a block, {int((values > 0).sum())} of them higher "
            f"inside; mean PC1 share in blocks {has['pc1_share_in_blocks'].mean():.2f}, outside "
            f"{has['pc1_share_outside'].mean():.2f}."
            if len(has)
            else "no model has both block layers and other layers.",
        )
    )

    removed = summary[summary["estimator"] == estimator + PC1_REMOVED_SUFFIX]
    if len(removed):
        both = deep[deep["n_blocks"] > 0].merge(
            removed[["model", "block_fraction"]], on="model", suffixes=("", "_removed")
        )
        both = both.assign(diff=both["block_fraction_removed"] - both["block_fraction"])
        values = _values(both, "diff")
        before, after = both["block_fraction"].mean(), both["block_fraction_removed"].mean()
        verdict = _verdict(values, positive=False)
        if verdict == "yes" and not after < before / 2:
            verdict = "partly"  # falls, but the block does not go away
        detail = (
            f"block fraction {before:.2f} → {after:.2f} after removing PC1 "
            f"({len(both)} models with a block; {int((values < 0).sum())} shrink)."
        )
    else:
        values, verdict = [], "n/a"
        detail = f"{estimator + PC1_REMOVED_SUFFIX} is not among the configured estimators."
    rows.append(
        headline_row(
            PAPER,
            "Removing the first principal component from every layer removes the block.",
            "change in the fraction of layers inside blocks when PC1 is removed",
            f"{estimator_name(estimator + PC1_REMOVED_SUFFIX)} vs {est_name}; "
            "t-interval over models with a block; yes = falls (CI < 0) to less than half",
            values,
            verdict,
            detail,
        )
    )

    has = main.dropna(subset=["cross_seed_cka_in_blocks", "cross_seed_cka_outside"])
    has = has.assign(diff=has["cross_seed_cka_outside"] - has["cross_seed_cka_in_blocks"])
    values = _values(has, "diff")
    rows.append(
        headline_row(
            PAPER,
            "Block layers are dissimilar across seeds, while the other layers are similar.",
            "cross-seed CKA of the same layer, other layers minus block layers",
            f"{est_name} between seeds of one architecture; t-interval over models with a "
            "block (the two models of a seed pair share their cross-seed values)",
            values,
            _verdict(values),
            f"{len(has)} models, {int((values > 0).sum())} with lower CKA inside; "
            "cross-seed CKA in "
            f"blocks {has['cross_seed_cka_in_blocks'].mean():.2f}, outside "
            f"{has['cross_seed_cka_outside'].mean():.2f}."
            if len(has)
            else "needs ≥ 2 seeds and models with block and non-block layers.",
        )
    )

    gaps = []
    seeds = agreement[agreement["kind"] == "seeds"]
    baseline = {}
    for _, row in seeds.iterrows():
        for mid in (row["model_a"], row["model_b"]):
            baseline.setdefault(_family(mid), []).append(row["agreement"])
    for _, row in agreement[agreement["kind"] == "wide_vs_deep"].iterrows():
        base = baseline.get(_family(row["model_a"]), []) + baseline.get(_family(row["model_b"]), [])
        if base:
            gaps.append(
                {
                    "baseline": float(np.mean(base)),
                    "agreement": float(row["agreement"]),
                    "gap": float(np.mean(base) - row["agreement"]),
                }
            )
    gaps = pd.DataFrame(gaps, columns=["baseline", "agreement", "gap"])
    values = _values(gaps, "gap")
    rows.append(
        headline_row(
            PAPER,
            "Wide and deep models make different errors: their predictions agree less often "
            "than two seeds of the same architecture.",
            "prediction agreement, seed pairs minus wide-vs-deep pairs",
            "fraction of probe examples with the same predicted class; per wide-vs-deep pair "
            "against the mean seed-pair agreement of its two architectures; t-interval over "
            "pairs",
            values,
            _verdict(values),
            f"agreement between seeds {gaps['baseline'].mean():.3f}, between wide and deep "
            f"{gaps['agreement'].mean():.3f} ({len(gaps)} wide-vs-deep pairs, each against "
            "the seed pairs of its two architectures)."
            if len(gaps)
            else "needs ≥ 2 seeds and wide-vs-deep pairs.",
        )
    )

    if len(classes):
        frac = classes.groupby("comparison")["significant"].mean()
        values = frac.to_numpy(dtype=float)
        hits = int((frac > 0).sum())
        verdict = "yes" if hits and hits >= len(frac) / 2 else ("partly" if hits else "no")
        detail = (
            f"{int(classes['significant'].sum())} of {len(classes)} class comparisons "
            f"significant (BH q < {alpha}); {hits} of {len(frac)} wide-vs-deep comparisons "
            f"have at least one; largest |difference| {classes['diff'].abs().max():.3f}."
        )
    else:
        values, verdict, detail = [], "n/a", "no wide-vs-deep pairs in the analysed grids."
    rows.append(
        headline_row(
            PAPER,
            "Wide and deep models differ in per-class accuracy beyond seed noise.",
            "fraction of classes with a significant accuracy difference, per comparison",
            f"{classes['test'].iloc[0] if len(classes) else 'permutation'} test per class on "
            "seed-averaged per-example correctness, Benjamini–Hochberg over classes; "
            "yes = a significant class in at least half of the comparisons",
            values,
            verdict,
            detail,
        )
    )
    return headline_table(rows)


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
    within-model estimator), ``blocks`` (:func:`blocks_table`), ``agreement``, ``classes`` and
    ``headline``. ``settings``: ``width_estimator, estimators, blocks, errors``."""
    blocks = settings.get("blocks", {})
    threshold, min_size = blocks.get("threshold", 0.9), blocks.get("min_size", 3)
    errors = settings.get("errors", {})
    estimators = list(settings["estimators"])
    accuracy = {mid: float(table["correct"].mean()) for mid, table in predictions.items()}
    summary = block_summary_table(
        cka_tables, layer_tables, cross, estimators, threshold, min_size, accuracy
    )
    agreement = agreement_table(predictions, pairs)
    classes = class_difference_table(
        predictions,
        pairs,
        method=errors.get("test", "permutation"),
        n_permutations=errors.get("permutations", 10_000),
        alpha=errors.get("alpha", 0.05),
        seed=errors.get("seed", 0),
    )
    return {
        "summary": summary,
        "blocks": blocks_table(cka_tables, estimators, threshold, min_size),
        "agreement": agreement,
        "classes": classes,
        "headline": headline(
            summary,
            agreement,
            classes,
            settings["width_estimator"],
            threshold,
            min_size,
            errors.get("alpha", 0.05),
        ),
    }
