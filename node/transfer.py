"""Transfer learning for Bristle: a frozen feature extractor pre-trained on a public slice.

A seeded slice of the training set (``PUBLIC_FRACTION`` = 15 %, drawn with
``EXTRACTOR_SEED``) is treated as public data. An MLP (flatten -> Linear(h) -> ReLU ->
Linear(C), h = ``HIDDEN`` = 64) is trained on it centrally (Adam, lr 3e-3, batch 32,
``EPOCHS`` = 60, all seeded), and its hidden layer is kept, frozen, as the extractor
phi(x) = ReLU(W1 x + b1). The ``bristle-head`` model (rumor.node.models) is that frozen
phi followed by a trainable Linear(h, C): only the head, (C, h + 1) numbers (650 on
digits), is a peer's parameter vector, so only the head is trained, gossiped and merged.

Every peer computes the extractor itself, once per process (cached), from the same
public slice and seed: no download, no coordination, the same weights everywhere on
one machine (pre-training runs on one thread, so CPU torch gives the same bits whatever
the process's thread count; across machines the features may differ in the last bits,
which the heads tolerate).

What the public slice is *not*: it is not anybody's validation data. A peer validates
only on its own local data (rumor.node.engine.evaluator), so it has no labelled sample
of a class it does not hold. A peer's training data may overlap the public slice (the
simulator and the mesh split the whole training set); the extractor is pre-trained,
public knowledge, and a peer's labels are still only those of its own classes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from rumor.node.data.datasets import Dataset
from rumor.protocols.errors import ConfigError

EXTRACTOR_SEED = 1
PUBLIC_FRACTION = 0.15
HIDDEN = 64
EPOCHS = 60


@dataclass(frozen=True, eq=False)
class Extractor:
    """phi(x) = ReLU(w1 @ flatten(x) + b1), frozen; ``public`` are the indices into
    the training set it was trained on; ``test_acc`` is the pre-trained MLP's own test
    accuracy (a reference, not a peer's)."""

    w1: torch.Tensor  # (h, input size)
    b1: torch.Tensor  # (h,)
    public: npt.NDArray[np.int64]
    test_acc: float

    @property
    def hidden(self) -> int:
        return int(self.w1.shape[0])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x.reshape(x.shape[0], -1) @ self.w1.T + self.b1)


def public_slice(dataset: Dataset, *, seed: int = EXTRACTOR_SEED,
                 fraction: float = PUBLIC_FRACTION) -> npt.NDArray[np.int64]:
    """The seeded public slice: sorted indices into ``dataset.x_train``."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"public fraction must be in (0, 1), got {fraction}")
    n = dataset.num_train
    rng = np.random.default_rng(seed + 101)
    pick = rng.choice(n, size=max(1, round(fraction * n)), replace=False)
    return np.sort(pick).astype(np.int64)


def pretrain_extractor(
    dataset: Dataset,
    *,
    seed: int = EXTRACTOR_SEED,
    fraction: float = PUBLIC_FRACTION,
    hidden: int = HIDDEN,
    epochs: int = EPOCHS,
    classes: tuple[int, ...] | None = None,
) -> Extractor:
    """Train the MLP on the public slice (only on ``classes`` if given) and freeze its
    hidden layer. Deterministic from the arguments; the global RNG is not touched."""
    public = public_slice(dataset, seed=seed, fraction=fraction)
    fit = public
    if classes is not None:
        fit = public[np.isin(dataset.y_train.numpy()[public], np.asarray(classes))]
        if len(fit) == 0:
            raise ConfigError("the extractor's classes leave no public samples")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same float results whatever the process's thread count
    try:
        return _fit(dataset, fit, public, seed=seed, hidden=hidden, epochs=epochs)
    finally:
        torch.set_num_threads(threads)


def _fit(dataset: Dataset, fit: npt.NDArray[np.int64], public: npt.NDArray[np.int64], *,
         seed: int, hidden: int, epochs: int) -> Extractor:
    from rumor.node.models import MLP

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLP(dataset.input_shape, dataset.num_classes, hidden=(hidden,))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        sel = torch.from_numpy(fit)
        x, y = dataset.x_train[sel], dataset.y_train[sel]
        gen = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            perm = torch.randperm(len(y), generator=gen)
            for k in range(0, len(y), 32):
                b = perm[k:k + 32]
                params = list(model.parameters())
                grads = torch.autograd.grad(F.cross_entropy(model(x[b]), y[b]), params)
                for prm, g in zip(params, grads, strict=True):
                    prm.grad = g
                opt.step()
    with torch.no_grad():
        acc = float((model(dataset.x_test).argmax(1) == dataset.y_test).float().mean())
        first = model.net[1]
        assert isinstance(first, torch.nn.Linear)
        return Extractor(first.weight.detach().clone(), first.bias.detach().clone(),
                         public, acc)


_CACHE: dict[str, Extractor] = {}


def _fingerprint(dataset: Dataset) -> str:
    h = hashlib.sha256()
    h.update(f"{dataset.name}/{dataset.num_train}/{dataset.num_classes}/"
             f"{dataset.input_shape}".encode())
    h.update(dataset.y_train.numpy().tobytes())
    h.update(dataset.x_train[: min(64, dataset.num_train)].numpy().tobytes())
    return h.hexdigest()


def frozen_extractor(dataset: Dataset) -> Extractor:
    """The default extractor of ``dataset`` (module constants), computed once per
    process and dataset content."""
    key = _fingerprint(dataset)
    if key not in _CACHE:
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = pretrain_extractor(dataset)
    return _CACHE[key]
