"""Learners: what the training loop steps, K ≥ 1 models as rows of one object.

:class:`OneModel` is any architecture (K = 1); :class:`StackedMLPs` is a pack of MLPs of one
depth stepped as one stacked network (one ``baddbmm`` per layer for all of them), each row on
its own permutation and augmentation stream. Both hold the (subsampled) dataset on the device
as :class:`Data` and return per-row losses and correct counts as device tensors, so nothing
crosses between host and device per step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from widthlab.models import TappedModel
from widthlab.training.pieces import crop_flip, loss_function
from widthlab.training.settings import TrainConfig


def to_device(array, device, dtype) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array)).to(device=device, dtype=dtype)


def _optimizer(params, cfg: TrainConfig, weight_decay: float, device) -> torch.optim.Optimizer:
    fused = device.type == "cuda" or None
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=weight_decay,
            fused=fused,
        )
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=weight_decay, fused=fused)


def _compiled(function, cfg: TrainConfig):
    if not cfg.compile:
        return function
    return torch.compile(function, mode=None if cfg.compile is True else cfg.compile)


class Data(NamedTuple):
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


class Learner:
    """K ≥ 1 models stepped together, row k on the batches of its own permutation.

    ``step`` and ``evaluate`` return per-row tensors on the device (nothing is read back).
    """

    optimizer: torch.optim.Optimizer

    def __init__(self, data: Data, cfg: TrainConfig, device: torch.device):
        self.data, self.cfg, self.device = data, cfg, device
        self.loss_fn = loss_function(cfg)
        self.bf16 = cfg.bf16 and device.type == "cuda"

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _step(self, logits: torch.Tensor, yb: torch.Tensor):
        losses = self.loss_fn(logits.float(), yb)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # rows share no parameters: each gets its own mean's gradient
        self.optimizer.step()
        return losses.detach().reshape(-1), (logits.argmax(-1) == yb).sum(-1).reshape(-1)

    def _totals(self, logits: torch.Tensor, yb: torch.Tensor, totals: torch.Tensor) -> None:
        logits = logits.float()
        totals[:, 0] += self.loss_fn(logits, yb).double().reshape(-1) * yb.shape[-1]
        totals[:, 1] += (logits.argmax(-1) == yb).sum(-1).reshape(-1)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, rows: int) -> torch.Tensor:
        """rows × [summed loss, correct] on the device."""
        totals = torch.zeros(rows, 2, dtype=torch.float64, device=self.device)
        size = self.cfg.eval_batch_size
        for start in range(0, len(y), size):
            xb, yb = x[start : start + size], y[start : start + size]
            with self.autocast():
                logits = self.eval_forward(xb)
            self._totals(logits, yb.expand(rows, -1) if rows > 1 else yb, totals)
        return totals


class OneModel(Learner):
    """Any architecture, one model: channels-last for convnets on CUDA, optional compile."""

    def __init__(self, model: TappedModel, weight_decay: float, data, cfg, device):
        super().__init__(data, cfg, device)
        self.model = model.to(device)
        self.channels_last = device.type == "cuda" and model.is_convolutional
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = _compiled(self.model, cfg)
        self.optimizer = _optimizer(self.model.parameters(), cfg, weight_decay, device)

    def _layout(self, xb: torch.Tensor) -> torch.Tensor:
        return xb.contiguous(memory_format=torch.channels_last) if self.channels_last else xb

    def train_mode(self, mode: bool) -> None:
        self.model.train(mode)

    def step(self, index: torch.Tensor, generators: list[torch.Generator]):
        xb, yb = self.data.x_train[index[0]], self.data.y_train[index[0]]
        if self.cfg.augment == "crop_flip":
            xb = crop_flip(xb, generators[0])
        with self.autocast():
            logits = self.forward(self._layout(xb))
        return self._step(logits, yb)

    def eval_forward(self, xb: torch.Tensor) -> torch.Tensor:
        return self.forward(self._layout(xb))

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def export(self, row: int, into: TappedModel) -> None:
        if into is not self.model:
            into.load_state_dict(self.model.state_dict())

    def keep(self, rows: list[int]) -> None:
        raise AssertionError("a single model is never compacted")


def _linears(model: TappedModel) -> list[nn.Linear]:
    """The hidden layers' and the head's linear maps of an MLP, in forward order."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


class StackedMLPs(Learner):
    """K MLPs of one depth as one batched matmul per layer (``baddbmm``), each layer padded
    with zeros to the widest model's width.

    Padding is exact: a padded unit has zero weights in and out and a zero bias, so its
    pre-activation is 0, ReLU and its gradient there are 0, and every gradient, weight-decay
    and momentum / Adam term that could move its weights is 0. Each model starts from the
    weights of its own seeded build (its own width's init scale). When models finish,
    :meth:`keep` drops their rows and shrinks the padding to the widest model left.
    """

    def __init__(self, models: list[TappedModel], weight_decay: float, data, cfg, device):
        super().__init__(data, cfg, device)
        self.weight_decay = weight_decay
        layers = [_linears(m) for m in models]
        dims = [[layer[0].in_features, *(lin.out_features for lin in layer)] for layer in layers]
        self.dims = dims  # per row: input size, then every layer's output size
        padded = self._padded(dims)
        self.params = []
        with torch.no_grad():
            for index in range(len(layers[0])):
                weight = torch.zeros(len(models), padded[index + 1], padded[index])
                bias = torch.zeros(len(models), padded[index + 1])
                for row, layer in enumerate(layers):
                    out_features, in_features = layer[index].weight.shape
                    weight[row, :out_features, :in_features] = layer[index].weight
                    bias[row, :out_features] = layer[index].bias
                self.params += [weight.to(device), bias.to(device)]
        for p in self.params:
            p.requires_grad_(True)
        self.optimizer = _optimizer(self.params, cfg, weight_decay, device)
        self.forward = _compiled(self._forward, cfg)

    @staticmethod
    def _padded(dims: list[list[int]]) -> list[int]:
        return [max(column) for column in zip(*dims, strict=True)]

    def _forward(self, h: torch.Tensor) -> torch.Tensor:
        weights, biases = self.params[0::2], self.params[1::2]
        for index, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
            h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            if index < len(weights) - 1:
                h = F.relu(h)
        return h

    def train_mode(self, mode: bool) -> None:
        pass  # no dropout or normalisation in a pack

    def step(self, index: torch.Tensor, generators: list[torch.Generator]):
        xb, yb = self.data.x_train[index], self.data.y_train[index]  # K × B × …
        if self.cfg.augment == "crop_flip":
            xb = torch.stack([crop_flip(x, g) for x, g in zip(xb, generators, strict=True)])
        with self.autocast():
            logits = self.forward(xb.flatten(2))
        return self._step(logits, yb)

    def eval_forward(self, xb: torch.Tensor) -> torch.Tensor:
        return self.forward(xb.flatten(1).expand(len(self.dims), -1, -1))

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": [p.detach().cpu() for p in self.params],
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            for p, saved in zip(self.params, state["params"], strict=True):
                p.copy_(saved)
        self.optimizer.load_state_dict(state["optimizer"])

    def export(self, row: int, into: TappedModel) -> None:
        with torch.no_grad():
            for index, linear in enumerate(_linears(into)):
                out_features, in_features = linear.weight.shape
                linear.weight.copy_(self.params[2 * index][row, :out_features, :in_features])
                linear.bias.copy_(self.params[2 * index + 1][row, :out_features])

    def keep(self, rows: list[int]) -> None:
        self.dims = [self.dims[r] for r in rows]
        padded = self._padded(self.dims)
        selected = torch.as_tensor(rows, device=self.device)
        new_params = []
        states = []
        for index, p in enumerate(self.params):
            out_features = padded[index // 2 + 1]
            in_features = padded[index // 2]

            def narrow(t, shape=p.shape, out_features=out_features, in_features=in_features):
                if not torch.is_tensor(t) or t.shape != shape:
                    return t  # Adam's step count: the same for every row
                t = t.index_select(0, selected)[:, :out_features]
                return (t[:, :, :in_features] if t.dim() == 3 else t).clone()

            new_params.append(narrow(p.detach()).requires_grad_(True))
            states.append({k: narrow(v) for k, v in self.optimizer.state.get(p, {}).items()})
        self.params = new_params
        self.optimizer = _optimizer(self.params, self.cfg, self.weight_decay, self.device)
        for p, state in zip(self.params, states, strict=True):
            if state:
                self.optimizer.state[p] = state
