"""Training packs: the plan, and stacked training checked against training each model alone."""

import signal
from dataclasses import replace

import numpy as np
import pytest
import torch

from widthlab.grid import DataSpec, ModelSpec
from widthlab.models import seeded_model
from widthlab.training.checkpoint import Preempted
from widthlab.training.learners import Data, StackedMLPs
from widthlab.training.packs import Pack, pack_key, packable, plan_packs, step_macs
from widthlab.training.settings import TrainConfig
from widthlab.training.state import NonFiniteLossError
from widthlab.training.train import train, train_pack

from .test_train import QUIET, _interrupt_at, _one_thread, assert_same_weights, digits, mlp

__all__ = ["_one_thread"]  # the autouse fixture: one torch thread, as in test_train

CFG = TrainConfig(lr=0.05, batch_size=32, max_epochs=3, until_zero_train_error=False, device="cpu")


def assert_close_to_alone(results, specs, data, cfg, atol=2e-5):
    """Each packed model against the same model trained by itself."""
    for result, spec in zip(results, specs, strict=True):
        alone = train(spec, data, cfg, **QUIET)
        assert result.metrics["model"] == spec.id
        assert result.metrics["epochs"] == alone.metrics["epochs"], spec.id
        ours, theirs = result.model.state_dict(), alone.model.state_dict()
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert ours[key].shape == theirs[key].shape, (spec.id, key)
            torch.testing.assert_close(ours[key], theirs[key], atol=atol, rtol=1e-4)
        columns = ["train_acc", "test_acc", "train_loss", "batch_loss"]
        np.testing.assert_allclose(
            result.history[columns].to_numpy(), alone.history[columns].to_numpy(), atol=1e-4
        )


# ------------------------------------------------------------------------------------ plan


def test_plan_groups_the_seeds_of_one_width_and_recipe():
    settings = {"lr": 0.05}
    widths = (8, 16, 32, 64, 128, 512)
    specs = [mlp(w, 2, seed=s) for w in widths for s in (0, 1, 2)]
    specs += [mlp(16, 4, seed=0), mlp(16, 4, seed=1)]  # another depth: another pack
    specs += [mlp(16, 2, seed=0, weight_decay=5e-4)]  # alone in its recipe: no pack
    specs += [mlp(16, 2, seed=5, dropout=0.1), ModelSpec(DataSpec("digits"), "cnn", 16, 2)]
    pairs = [(s, settings) for s in specs]
    packs = plan_packs(pairs)
    assert [p.ids for p in packs] == [
        *(tuple(mlp(w, 2, seed=s).id for s in (0, 1, 2)) for w in widths),
        (mlp(16, 4, seed=0).id, mlp(16, 4, seed=1).id),
    ]  # the dropout, cnn and lone-recipe models train alone
    assert plan_packs(pairs) == packs  # the config alone decides
    # a new width adds a pack and leaves the others; a new seed re-forms its width's pack only
    grown = plan_packs([*pairs, (mlp(256, 2, seed=0), settings), (mlp(256, 2, seed=1), settings)])
    assert set(packs) < set(grown) and len(grown) == len(packs) + 1
    seeded = plan_packs([*pairs, (mlp(64, 2, seed=3), settings)])
    assert len(set(packs) - set(seeded)) == 1
    # another training recipe is another pack; max_models splits in seed order
    other = [(s, {"lr": 0.1} if s.seed == 2 else settings) for s in specs[:6]]
    assert [len(p.ids) for p in plan_packs(other)] == [2, 2]  # the seed-2 models alone
    assert [p.ids for p in plan_packs(pairs[:3], max_models=2)] == [tuple(s.id for s in specs[:2])]
    assert plan_packs(pairs, max_models=1) == []
    small = plan_packs(pairs, max_macs=step_macs(mlp(128, 2)))  # the width-512 ones train alone
    assert len(small) == len(packs) - 1


def test_mixed_widths_pack_by_cost_band():
    settings = {"lr": 0.05}
    widths = (8, 16, 32, 64, 128, 512)
    pairs = [(mlp(w, 2, seed=s), settings) for w in widths for s in (0, 1)]
    # digits MLPs up to width 128 cost < 2^16 MACs per example: launch-bound, one band
    assert step_macs(mlp(128, 2)) == 64 * 128 + 128 * 128 + 128 * 10 < 65536
    packs = plan_packs(pairs, max_padding=2, launch_bound_macs=65536, mix_widths=True)
    assert [set(p.ids) for p in packs] == [
        {mlp(w, 2, seed=s).id for w in widths[:5] for s in (0, 1)},
        {mlp(512, 2, seed=s).id for s in (0, 1)},
    ]
    # without the launch-bound floor every width of a ×2 series is its own band
    exact = plan_packs(pairs, max_padding=2, launch_bound_macs=1, mix_widths=True)
    assert [len(p.ids) for p in exact] == [2] * 6
    split = plan_packs(pairs, max_models=4, mix_widths=True)
    assert [len(p.ids) for p in split] == [4, 4, 2, 2]


@pytest.mark.parametrize("seed", range(5))
def test_a_pack_computes_at_most_max_padding_times_its_models(seed):
    """Padded to its widest model, a pack's cost stays within max_padding of each member's."""
    rng = np.random.default_rng(seed)
    widths = rng.integers(4, 3000, size=40)
    depths = rng.integers(1, 4, size=40)
    specs = [
        mlp(int(w), int(d), seed=i) for i, (w, d) in enumerate(zip(widths, depths, strict=True))
    ]
    data = DataSpec("mnist")
    specs = [replace(s, data=data) for s in specs]
    for max_padding, floor in ((2.0, 65536), (1.3, 1), (4.0, 10**6)):
        packs = plan_packs(
            [(s, {}) for s in specs],
            mix_widths=True,
            max_models=64,
            max_padding=max_padding,
            launch_bound_macs=floor,
        )
        assert packs and sum(len(p.ids) for p in packs) <= len(specs)
        by_id = {s.id: s for s in specs}
        for pack in packs:
            members = [by_id[m] for m in pack.ids]
            padded = step_macs(max(members, key=lambda s: s.width))
            assert all(padded <= max_padding * max(step_macs(m), floor) for m in members)


def test_plan_rules_and_names():
    assert packable(mlp(8, 2), {})
    assert packable(ModelSpec(DataSpec("digits"), "bmlp", 64, 3, bottleneck=4), {})
    assert not packable(mlp(8, 2), {"arch_kwargs": {"parameterization": "ntk"}})
    assert not packable(mlp(8, 2, dropout=0.5), {})
    assert pack_key(mlp(8, 2, seed=0), {"device": "cpu"}) == pack_key(mlp(64, 2, seed=3), {})
    assert pack_key(mlp(8, 2), {}) != pack_key(mlp(8, 2, train_size=100), {})
    pack = Pack(("a", "b"))
    assert pack.name == Pack(("a", "b")).name != Pack(("a", "c")).name
    assert pack.name.startswith("pack2-")
    with pytest.raises(ValueError, match="max_models"):
        plan_packs([], max_models=0)
    with pytest.raises(ValueError, match="max_padding"):
        plan_packs([], max_padding=1)


# -------------------------------------------------------------------------------- training


def test_pack_equals_training_each_model_alone():
    """Different widths, seeds and inits in one pack: the padding must be invisible."""
    specs = [mlp(8, 2, seed=0), mlp(32, 2, seed=1), mlp(16, 2, seed=2, init="xavier")]
    data = digits(200)
    results = train_pack(specs, data, CFG, **QUIET)
    assert [r.metrics["pack_size"] for r in results] == [3, 3, 3]
    assert results[1].metrics["parameters"] == 64 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10
    assert_close_to_alone(results, specs, data, CFG)


def test_pack_with_adam_weight_decay_augmentation_and_label_smoothing():
    specs = [mlp(8, 1, seed=0, weight_decay=1e-2), mlp(24, 1, seed=3, weight_decay=1e-2)]
    data = digits(96, 40, size=28)
    cfg = replace(
        CFG, optimizer="adam", lr=1e-3, augment="crop_flip", label_smoothing=0.1, max_epochs=2
    )
    assert_close_to_alone(train_pack(specs, data, cfg, **QUIET), specs, data, cfg)


# a narrow and a wide model that trains to zero error first (then leaves the pack)
UNTIL_ZERO = TrainConfig(
    optimizer="adam",
    lr=3e-3,
    batch_size=25,
    max_epochs=20,
    until_zero_train_error=True,
    device="cpu",
)
NARROW_AND_WIDE = [mlp(16, 1, seed=0, train_size=100), mlp(128, 1, seed=0, train_size=100)]


def test_models_stop_at_their_own_epoch_and_the_pack_shrinks():
    cfg, specs, data = UNTIL_ZERO, NARROW_AND_WIDE, digits(300)
    lines = []
    results = train_pack(specs, data, cfg, log=lines.append, name="p")
    epochs = [r.metrics["epochs"] for r in results]
    assert epochs[1] < epochs[0]  # the wide model interpolates first and leaves the pack
    assert results[1].metrics["reached_zero_train_error"]
    assert epochs[0] == 20 or results[0].metrics["reached_zero_train_error"]
    assert lines[0].startswith("p: training 2 models together on cpu")
    assert_close_to_alone(results, specs, data, cfg, atol=1e-4)


def test_padding_stays_exactly_zero():
    specs = [mlp(4, 3, seed=0), mlp(16, 3, seed=1)]
    torch.manual_seed(0)

    models = [seeded_model(s, (1, 8, 8), 10) for s in specs]
    data = digits(64)
    tensors = Data(
        *(torch.as_tensor(a) for a in (data.x_train, data.y_train, data.x_test, data.y_test))
    )
    learner = StackedMLPs(models, 1e-3, tensors, CFG, torch.device("cpu"))
    generators = [torch.Generator().manual_seed(0)] * 2
    for _ in range(5):
        learner.step(torch.randint(0, 64, (2, 16)), generators)
    hidden = learner.params[2]  # layer 2: 16 × 16 for the wide model, 4 × 4 for the narrow one
    assert hidden.shape == (2, 16, 16)
    assert torch.count_nonzero(hidden[0, 4:, :]) == 0 and torch.count_nonzero(hidden[0, :, 4:]) == 0
    assert (
        torch.count_nonzero(hidden[0, :4, :4]) > 0
        and torch.count_nonzero(learner.params[3][0, 4:]) == 0
    )
    learner.keep([0])  # the wide model leaves: the padding goes with it
    assert learner.params[2].shape == (1, 4, 4)
    assert learner.optimizer.state[learner.params[2]]["momentum_buffer"].shape == (1, 4, 4)


def test_pack_resume_is_bit_identical(tmp_path):
    """Stopped before and after the wide model leaves the pack, resumed twice."""
    cfg = replace(UNTIL_ZERO, checkpoint_every_steps=0)
    specs, data = NARROW_AND_WIDE, digits(300)
    plain = train_pack(specs, data, cfg, **QUIET)
    wide_leaves = plain[1].metrics["steps"]
    checkpoint = tmp_path / "pack.pt"
    for stop_step in (2, wide_leaves + 3):
        with pytest.raises(Preempted) as stopped:
            train_pack(specs, data, cfg, checkpoint, on_step=_interrupt_at({stop_step}), **QUIET)
        assert stopped.value.code == 128 + signal.SIGUSR1
        assert torch.load(checkpoint, weights_only=True)["global_step"] == stop_step
    resumed = train_pack(specs, data, cfg, checkpoint, **QUIET)
    assert not checkpoint.exists()
    for a, b in zip(resumed, plain, strict=True):
        assert a.metrics["resumes"] == 2 and a.metrics["epochs"] == b.metrics["epochs"]
        assert_same_weights(a.model, b.model)
        assert a.history.drop(columns="seconds").equals(b.history.drop(columns="seconds"))
    # a checkpoint of another pack is not resumed
    with pytest.raises(Preempted):
        train_pack(specs, data, cfg, checkpoint, on_step=_interrupt_at({2}), **QUIET)
    lines = []
    train_pack(
        specs[:1] + [mlp(8, 1, seed=0, train_size=100)], data, cfg, checkpoint, log=lines.append
    )
    assert any("not resuming" in line and specs[1].id in line for line in lines)


def test_pack_errors_name_the_model():
    data = digits(100)
    data.x_train = np.full_like(data.x_train, np.nan)
    specs = [mlp(8, 1, seed=0), mlp(16, 1, seed=1)]
    with pytest.raises(
        NonFiniteLossError, match=rf"model {specs[0].id}: .* at epoch 1, step 1 \(in p;"
    ):
        train_pack(specs, data, CFG, name="p", **QUIET)
    with pytest.raises(ValueError, match="cannot be packed"):
        train_pack([mlp(8, 1), mlp(8, 1, seed=1, dropout=0.2)], digits(50), CFG, **QUIET)
    with pytest.raises(ValueError, match="differ in more than width"):
        train_pack([mlp(8, 1), mlp(8, 2, seed=1)], digits(50), CFG, **QUIET)
    with pytest.raises(ValueError, match="distinct models"):
        train_pack([mlp(8, 1), mlp(8, 1)], digits(50), CFG, **QUIET)
