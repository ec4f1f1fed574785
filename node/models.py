"""Models, and the flat-vector view of their parameters that gossip and merges use.

Every model takes images ``(batch, C, H, W)`` and returns logits ``(batch, classes)``.
None has buffers (no batch norm), so a model is fully described by its parameter
vector. The vector is ``torch.cat([p.reshape(-1) for p in module.parameters()])`` in
``named_parameters()`` order; :func:`param_layout` says where each tensor lives.

- ``mlp``: flatten, then Linear+ReLU per hidden width, then Linear. For digits
  (1x8x8) with the default ``hidden=(32,)``: 64-32-10, 2,410 parameters.
- ``lenet5``: LeCun et al. 1998 with ReLU and max pooling: conv 6@5x5 (padding 2),
  pool 2, conv 16@5x5, pool 2, fc 120, fc 84, fc classes. On 28x28 the second conv
  has no padding (14 -> 10 -> pool 5, 400 features, 61,706 parameters); on inputs
  whose first pooled map is smaller than 10x10 (e.g. digits 8x8 -> 4x4) it pads by 2
  so that the map does not vanish (4 -> 4 -> pool 2, 64 features).
- ``cnn``: a small CNN: conv 16@3x3 pad 1, ReLU, pool 2, conv 32@3x3 pad 1, ReLU,
  pool 2, fc 64, ReLU, fc classes.
- ``bristle-head``: transfer learning (Bristle): a frozen feature extractor phi
  (rumor.node.transfer: pre-trained on a seeded public slice, h = 64) followed by a
  trainable Linear(h, classes). Only the head is a parameter: (classes, h + 1) numbers,
  650 on digits. The extractor is a plain tensor attribute (neither parameter nor
  buffer), attached when the model is built with ``dataset=`` (the trainers do); built
  without one (``init_params``) phi is zero, which does not change the head's vector.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from rumor.aggregation.layout import LayerSlice, Layout
from rumor.protocols.errors import ConfigError

MODEL_NAMES: tuple[str, ...] = ("mlp", "lenet5", "cnn", "bristle-head")

if TYPE_CHECKING:
    from rumor.node.data.datasets import Dataset
    from rumor.node.transfer import Extractor


def _check_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"input_shape must be (C, H, W) with positive sizes, got {shape}")
    return shape[0], shape[1], shape[2]


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU] * len(hidden) -> Linear."""

    def __init__(
        self, input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (32,)
    ) -> None:
        super().__init__()
        width = math.prod(int(s) for s in input_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class LeNet5(nn.Module):
    """LeNet-5 with ReLU and max pooling (see the module docstring for the sizes)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, h, w = _check_shape(input_shape)
        if min(h, w) < 2:
            raise ConfigError(f"lenet5 needs inputs of at least 2x2, got {h}x{w}")
        h1, w1 = h // 2, w // 2  # conv1 keeps the size (pad 2), pool halves it
        pad2 = 0 if min(h1, w1) >= 10 else 2
        h2, w2 = h1 + 2 * pad2 - 4, w1 + 2 * pad2 - 4
        h3, w3 = max(h2 // 2, 1), max(w2 // 2, 1)
        pool2: nn.Module = nn.MaxPool2d(2) if min(h2, w2) >= 2 else nn.Identity()
        self.features = nn.Sequential(
            nn.Conv2d(c, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=pad2), nn.ReLU(), pool2,
        )
        flat = 16 * (h3 * w3 if min(h2, w2) >= 2 else h2 * w2)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(x))
        return out


class SmallCNN(nn.Module):
    """conv 16@3x3 -> pool -> conv 32@3x3 -> pool -> fc 64 -> fc classes (ReLU)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c, h, w = _check_shape(input_shape)
        if min(h, w) < 4:
            raise ConfigError(f"cnn needs inputs of at least 4x4, got {h}x{w}")
        self.features = nn.Sequential(
            nn.Conv2d(c, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        flat = 32 * (h // 4) * (w // 4)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 64), nn.ReLU(), nn.Linear(64, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(x))
        return out


class BristleHead(nn.Module):
    """Frozen phi (see rumor.node.transfer) -> Linear(h, classes); only the head trains."""

    def __init__(self, input_shape: Sequence[int], num_classes: int,
                 extractor: Extractor | None = None) -> None:
        super().__init__()
        from rumor.node.transfer import HIDDEN

        hidden = extractor.hidden if extractor is not None else HIDDEN
        self.head = nn.Linear(hidden, num_classes)
        width = math.prod(int(s) for s in input_shape)
        if extractor is not None:
            w1, b1 = extractor.w1, extractor.b1
            if w1.shape[1] != width:
                raise ConfigError(f"the extractor takes {w1.shape[1]} inputs, got {width}")
        else:
            w1, b1 = torch.zeros(hidden, width), torch.zeros(hidden)
        # plain attributes: not parameters (never trained or sent), not buffers
        self.phi_w = w1
        self.phi_b = b1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x), (batch, h): the frozen extractor's output."""
        return torch.relu(torch.addmm(self.phi_b, x.reshape(x.shape[0], -1), self.phi_w.T))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


def build_model(name: str, input_shape: Sequence[int], num_classes: int,
                dataset: Dataset | None = None) -> nn.Module:
    """A freshly initialised model (torch's default init, global RNG); see init_params.

    ``dataset`` is needed only by ``bristle-head`` (its frozen extractor is pre-trained
    on the dataset's public slice, once per process). Raises ConfigError for an unknown
    name (listing the choices) or unusable shapes.
    """
    _check_shape(input_shape)
    if num_classes < 2:
        raise ConfigError(f"num_classes must be >= 2, got {num_classes}")
    if name == "mlp":
        return MLP(input_shape, num_classes)
    if name == "lenet5":
        return LeNet5(input_shape, num_classes)
    if name == "cnn":
        return SmallCNN(input_shape, num_classes)
    if name == "bristle-head":
        extractor = None
        if dataset is not None:
            from rumor.node.transfer import frozen_extractor

            extractor = frozen_extractor(dataset)
        return BristleHead(input_shape, num_classes, extractor)
    raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")


def num_params(module: nn.Module) -> int:
    """d, the length of the module's parameter vector."""
    return sum(p.numel() for p in module.parameters())


def flatten_params(module: nn.Module) -> torch.Tensor:
    """A new 1-D float32 tensor of all parameters, in named_parameters() order."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).to(torch.float32)


def unflatten_into(module: nn.Module, vec: torch.Tensor) -> nn.Module:
    """Copy ``vec`` (length d) into the module's parameters, in place; returns module."""
    d = num_params(module)
    if vec.dim() != 1 or vec.numel() != d:
        raise ValueError(f"expected a vector of {d} parameters, got shape {tuple(vec.shape)}")
    start = 0
    with torch.no_grad():
        for p in module.parameters():
            n = p.numel()
            p.copy_(vec[start:start + n].view_as(p))
            start += n
    return module


def param_layout(module: nn.Module) -> Layout:
    """One LayerSlice per parameter tensor, in vector order, covering [0, d).

    ``is_weight`` is True for tensors of 2 or more dimensions (linear and conv
    weights) and False for 1-D ones (biases, normalisation scales/shifts).
    """
    out: list[LayerSlice] = []
    start = 0
    for name, p in module.named_parameters():
        n = p.numel()
        out.append(LayerSlice(name, start, start + n, tuple(p.shape), p.dim() > 1))
        start += n
    return tuple(out)


def init_params(name: str, input_shape: Sequence[int], num_classes: int, seed: int
                ) -> torch.Tensor:
    """The parameter vector of ``build_model(...)`` initialised under ``torch.manual_seed
    (seed)``, without disturbing the caller's global RNG state. Same seed, same vector.
    Seeds the CPU generator only (what ``torch.manual_seed`` does on a CPU build, less
    its CUDA bookkeeping, which captures a traceback per call: 5x the whole init)."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        module = build_model(name, input_shape, num_classes)
    return flatten_params(module)


def init_params_stack(
    name: str, input_shape: Sequence[int], num_classes: int, seeds: Sequence[int]
) -> torch.Tensor:
    """``(len(seeds), d)``: row i is ``init_params(name, ..., seeds[i])``."""
    return torch.stack([init_params(name, input_shape, num_classes, s) for s in seeds])
