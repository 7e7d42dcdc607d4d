"""The similarity stage around the CKA code: pair rules, job split, per-model tables, blocks and
cross-seed CKA from hand-made tables, error patterns, and the headline's verdict rules."""

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from widthlab import cka as ck
from widthlab.grid import DataSpec, ModelSpec
from widthlab.model_jobs import job_of, split_into_jobs
from widthlab.similarity import blocks as B
from widthlab.similarity import measure as M
from widthlab.similarity import summary as S
from widthlab.similarity.jobs import Pair, choose_pairs, seed_pairs, wide_vs_deep_pairs

DIGITS = DataSpec("digits")


def mid(width, depth, seed=0, n=None, wd=0.0):
    return ModelSpec(DIGITS, "mlp", width, depth, train_size=n, weight_decay=wd, seed=seed).id


# --- pairs ------------------------------------------------------------------------------------


def test_seed_pairs_are_every_two_seeds_of_one_architecture():
    ids = [mid(16, 2, s) for s in (0, 1, 2)] + [mid(32, 2, 0), mid(16, 2, 0, n=200)]
    pairs = choose_pairs(ids, {"seeds": True, "wide_vs_deep": False})
    assert pairs == [
        Pair("seeds", mid(16, 2, 0), mid(16, 2, 1)),
        Pair("seeds", mid(16, 2, 0), mid(16, 2, 2)),
        Pair("seeds", mid(16, 2, 1), mid(16, 2, 2)),
    ]


def test_wide_vs_deep_matches_a_brute_force_search_over_parameter_counts():
    widths, depths = [16, 32, 64, 128, 256, 512], [2, 4]
    specs = [ModelSpec(DIGITS, "mlp", w, d) for w in widths for d in depths]

    def weights(width, depth):  # digits: 64 inputs; hidden-to-hidden matrices; no head, no bias
        return 64 * width + (depth - 1) * width**2

    expected = []
    for w in widths:  # every deep (d4) model: the wider d2 model closest on a log scale
        best = min(
            (v for v in widths if v > w),
            key=lambda v: abs(np.log(weights(v, 2) / weights(w, 4))),
            default=None,
        )
        if best is None:
            continue
        ratio = max(weights(best, 2), weights(w, 4)) / min(weights(best, 2), weights(w, 4))
        if ratio <= 2.0:
            expected.append(Pair("wide_vs_deep", mid(best, 2), mid(w, 4)))
    assert wide_vs_deep_pairs(specs, 2.0) == expected
    # by hand: d4 w16 (1792 weights) ↔ d2 w32 (3072); d4 w128 (57344) ↔ d2 w256 (81920)
    assert Pair("wide_vs_deep", mid(32, 2), mid(16, 4)) in expected
    assert Pair("wide_vs_deep", mid(256, 2), mid(128, 4)) in expected
    assert all(p.b != mid(512, 4) for p in expected)  # nothing wider to pair with
    assert wide_vs_deep_pairs(specs, 1.0) == []  # no exact matches


def test_wide_vs_deep_never_mixes_seeds_data_sizes_or_weight_decay():
    specs = [ModelSpec(DIGITS, "mlp", 16, 4, seed=1), ModelSpec(DIGITS, "mlp", 32, 2, seed=0)]
    specs.append(ModelSpec(DIGITS, "mlp", 32, 2, seed=1, train_size=200))
    specs.append(ModelSpec(DIGITS, "mlp", 32, 2, seed=1, weight_decay=5e-4))
    assert wide_vs_deep_pairs(specs, 10.0) == []
    assert seed_pairs(specs) == []


def test_explicit_pairs_are_checked_against_the_grid():
    ids = [mid(16, 1), mid(32, 1)]
    assert choose_pairs(ids, {"explicit": [[ids[0], ids[1]]]}) == [Pair("explicit", ids[0], ids[1])]
    with pytest.raises(ValueError, match=r"pairs\.explicit: .*w64.* not a model of the grids"):
        choose_pairs(ids, {"explicit": [[ids[0], mid(64, 1)]]})
    with pytest.raises(ValueError, match="not a model id"):
        choose_pairs(ids, {"explicit": [[ids[0], "resnet-ish"]]})


def test_adding_a_model_moves_no_other_model_to_another_job():
    ids = [mid(w, d, s) for w in (16, 32, 64) for d in (2, 4) for s in (0, 1)]
    before = split_into_jobs(ids, 4)
    after = split_into_jobs([*ids, mid(128, 2)], 4)
    changed = [k for k in after if after[k] != before.get(k)]
    assert changed == [job_of(mid(128, 2), 4)]
    assert sorted(m for ms in before.values() for m in ms) == sorted(ids)
    with pytest.raises(ValueError, match="config key analyses.units.jobs: must be an integer ≥ 1"):
        split_into_jobs(ids, 0, "analyses.units.jobs")


# --- per-model tables -------------------------------------------------------------------------


def test_model_tables_lead_with_the_model_columns_and_cover_every_pair():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    base = rng.normal(size=(120, 6)) + labels[:, None]
    layers = [np.maximum(base @ rng.normal(size=(6, w)), 0) for w in (8, 16, 4)]
    spec = ModelSpec(DIGITS, "mlp", 16, 3, seed=3)
    settings = {"estimators": ["debiased", "linear"], "minibatch": {}, "probe": {}}
    cka, per_layer = M.model_tables(spec.columns(), ["h1", "h2", "h3"], layers, labels, settings)
    leading = list(spec.columns())
    assert list(cka.columns[: len(leading)]) == leading
    assert list(per_layer.columns[: len(leading)]) == leading
    assert (cka["model"] == spec.id).all() and (cka["seed"] == 3).all()
    assert len(cka) == 2 * 3 * 3
    pairs = set(zip(cka["layer_i"], cka["layer_j"], cka["estimator"], strict=True))
    assert pairs == set(itertools.product(range(3), range(3), ["debiased", "linear"]))
    np.testing.assert_allclose(
        B.matrix_from_table(cka, "debiased"), ck.cka_matrix(layers), atol=1e-12
    )
    assert per_layer["probe_accuracy"].between(0, 1).all() and len(per_layer) == 3


def test_limit_threads_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        M.limit_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# --- blocks and cross-seed CKA from hand-made tables -----------------------------------------


def long_table(spec: ModelSpec, matrix: np.ndarray, estimator: str) -> pd.DataFrame:
    n = matrix.shape[0]
    rows = [
        {
            **spec.columns(),
            "layer_i": i,
            "layer_j": j,
            "name_i": f"h{i + 1}",
            "name_j": f"h{j + 1}",
            "estimator": estimator,
            "cka": matrix[i, j],
        }
        for i in range(n)
        for j in range(n)
    ]
    return pd.DataFrame(rows)


def block_matrix(n, start, end, inside=0.95, outside=0.4):
    m = np.full((n, n), outside)
    m[start : end + 1, start : end + 1] = inside
    np.fill_diagonal(m, 1.0)
    return m


def test_block_tables_and_cross_seed_cka_on_hand_made_models():
    s0 = ModelSpec(DIGITS, "mlp", 64, 6, seed=0)
    s1 = s0.with_(seed=1)
    cka = pd.concat(
        [
            long_table(s0, block_matrix(6, 2, 5), "debiased"),
            long_table(s1, block_matrix(6, 1, 3), "debiased"),
            long_table(s0, block_matrix(6, 2, 5, inside=0.5), "debiased_pc1_removed"),
            long_table(s1, block_matrix(6, 1, 3, inside=0.5), "debiased_pc1_removed"),
        ]
    )
    shares = [0.1, 0.2, 0.7, 0.8, 0.9, 0.6]
    layers = pd.DataFrame(
        [{**s.columns(), "layer": k, "pc1_share": shares[k]} for s in (s0, s1) for k in range(6)]
    )
    diagonal = [0.9, 0.8, 0.2, 0.1, 0.3, 0.4]  # same layer, seed 0 vs seed 1
    cross = pd.DataFrame(
        [
            {"kind": "seeds", "model_a": s0.id, "model_b": s1.id, "layer_a": i, "layer_b": j}
            | {"estimator": "debiased", "cka": diagonal[i] if i == j else 0.0}
            for i in range(6)
            for j in range(6)
        ]
    )
    blocks = S.blocks_table(cka, ["debiased"], 0.9, 3)
    assert blocks[["model", "start", "end", "size"]].values.tolist() == [
        [s0.id, 2, 5, 4],
        [s1.id, 1, 3, 3],
    ]
    assert blocks["mean_cka"].tolist() == pytest.approx([0.95, 0.95])
    assert blocks["start_name"].tolist() == ["h3", "h2"]

    summary = S.block_summary_table(
        cka, layers, cross, ["debiased", "debiased_pc1_removed"], 0.9, 3, {s0.id: 0.5}
    )
    row = summary[(summary["model"] == s0.id) & (summary["estimator"] == "debiased")].iloc[0]
    assert row["block_size"] == 4 and row["block_fraction"] == pytest.approx(4 / 6)
    assert row["pc1_share_in_blocks"] == pytest.approx(np.mean(shares[2:6]))
    assert row["pc1_share_outside"] == pytest.approx(np.mean(shares[:2]))
    assert row["cross_seed_cka_in_blocks"] == pytest.approx(np.mean(diagonal[2:6]))
    assert row["cross_seed_cka_outside"] == pytest.approx(np.mean(diagonal[:2]))
    assert row["probe_set_accuracy"] == 0.5
    other = summary[(summary["model"] == s1.id) & (summary["estimator"] == "debiased")].iloc[0]
    assert other["cross_seed_cka_in_blocks"] == pytest.approx(np.mean(diagonal[1:4]))
    assert np.isnan(other["probe_set_accuracy"])
    removed = summary[summary["estimator"] == "debiased_pc1_removed"]
    assert (removed["block_size"] == 0).all()
    # the estimator of every number is named in its row
    assert set(summary["estimator"]) == {"debiased", "debiased_pc1_removed"}


# --- error patterns ---------------------------------------------------------------------------


def predictions(labels, predicted):
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    return pd.DataFrame(
        {
            "example": np.arange(len(labels)),
            "index": np.arange(len(labels)) + 100,
            "label": labels,
            "predicted": predicted,
            "correct": labels == predicted,
        }
    )


def test_agreement_counts_by_hand():
    labels = [0, 1, 2, 3, 0, 1, 2, 3]
    a = predictions(labels, [0, 1, 2, 3, 1, 1, 0, 0])  # wrong at 4, 6, 7
    b = predictions(labels, [0, 1, 2, 0, 1, 2, 0, 3])  # wrong at 3, 4, 5, 6
    table = S.agreement_table({"a": a, "b": b}, [Pair("seeds", "a", "b")])
    row = table.iloc[0]
    assert row["agreement"] == pytest.approx(5 / 8)  # same prediction at 0, 1, 2, 4, 6
    assert row["both_wrong"] == pytest.approx(2 / 8)  # 4 and 6
    assert row["error_overlap"] == pytest.approx(2 / 5)  # either wrong: 3, 4, 5, 6, 7
    assert (row["acc_a"], row["acc_b"], row["n"]) == (5 / 8, 4 / 8, 8)
    shuffled = b.copy()
    shuffled["index"] = shuffled["index"][::-1].to_numpy()
    with pytest.raises(ValueError, match="a and b were not probed on the same examples"):
        S.agreement_table({"a": a, "b": shuffled}, [Pair("seeds", "a", "b")])


def test_class_differences_stack_seeds_and_find_the_one_different_class():
    labels = np.repeat([0, 1, 2], 40)
    preds, pairs = {}, []
    for seed in (0, 1):
        wide, deep = mid(64, 2, seed), mid(16, 4, seed)
        preds[wide] = predictions(labels, labels)  # always right
        wrong = labels.copy()
        wrong[labels == 0] = 1  # deep is always wrong on class 0
        preds[deep] = predictions(labels, wrong)
        pairs.append(Pair("wide_vs_deep", wide, deep))
    table = S.class_difference_table(preds, [*pairs, Pair("seeds", *list(preds)[:2])], seed=0)
    assert table["comparison"].nunique() == 1 and (table["seeds"] == 2).all()
    assert table["model_a"].iloc[0] == mid(64, 2).removesuffix("-s0")
    cls0 = table[table["class"] == 0].iloc[0]
    assert cls0["diff"] == 1.0 and cls0["significant"] and cls0["p_value"] < 1e-3
    assert (table.loc[table["class"] != 0, "p_value"] == 1).all()
    assert not table.loc[table["class"] != 0, "significant"].any()
    empty = S.class_difference_table(preds, [Pair("seeds", *list(preds)[:2])])
    assert empty.empty and "q_value" in empty.columns


# --- headline ---------------------------------------------------------------------------------


def test_settings_errors_name_the_key():
    from widthlab.similarity.settings import SimilaritySettings

    settings = {"width_estimator": "minibatch", "estimators": ["debiased"]}
    with pytest.raises(ValueError, match=r"analyses\.similarity\.estimators: must include"):
        SimilaritySettings.from_config({**settings, "cross_estimators": ["minibatch"]})
    SimilaritySettings.from_config(
        {**settings, "estimators": ["minibatch"], "cross_estimators": ["minibatch"]}
    )


def test_settings_hold_every_schema_key_with_the_schema_default():
    from widthlab.config import load_schema
    from widthlab.similarity.settings import SimilaritySettings

    section = load_schema()["properties"]["analyses"]["properties"]["similarity"]["properties"]

    def default(spec):
        if "properties" in spec:  # a nested section: its keys' defaults
            return {k: default(v) for k, v in spec["properties"].items()}
        return spec["default"]

    made = SimilaritySettings()
    fields = {f.name for f in dataclasses.fields(SimilaritySettings)}
    assert {"grids" if k == "grid" else k for k in section} == fields
    for key, spec in section.items():
        value = made.grids if key == "grid" else getattr(made, key)
        expected = (default(spec),) if key == "grid" else default(spec)
        if isinstance(value, tuple) and isinstance(expected, list):
            expected = tuple(expected)
        assert value == expected, key
    # the validated section (every default filled) gives the same settings
    assert SimilaritySettings.from_config({k: default(v) for k, v in section.items()}) == made
