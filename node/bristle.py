"""Bristle, node side: the frozen feature extractor and a round-based experiment.

Transfer learning. A slice of the training set (``public_fraction``, seeded) is
treated as public data: an MLP (flatten -> Linear(h) -> ReLU -> Linear(C)) is trained
on it centrally (Adam, ``pretrain_epochs``), optionally on a subset of the classes
only (``pretrain_classes``: then the extractor never saw the other classes, a harder
and more honest transfer), and its hidden layer is frozen as the feature extractor
phi(x) = ReLU(W1 x + b1). The public slice is removed from the peers' data; every
peer draws its small IID validation set (``val_size`` samples, all classes) from it.
A peer's model is then only the output layer, a ``(C, h + 1)`` matrix over [phi(x), 1]
(2 % of the 64-32-10 MLP's parameters with h=32; 650 numbers with h=64), and that is
what is trained and exchanged.

The experiment (:class:`BristleSim`) runs synchronous rounds on a partial view (a
random ``view``-regular graph): every peer trains its layer for ``local_steps`` SGD
steps, Byzantine peers replace what they send by an attack from rumor.node.attacks
(label flipping trains on flipped labels), every honest peer receives its neighbours'
layers and merges them:

- ``mean``: plain averaging of own + everything received;
- ``bristle``: prioritizer (20 nearest + 5 random of what it received), per-class F1 of
  own and each chosen layer on its validation set, then the integrator of
  rumor.aggregation.bristle (scores, weights, per-class merge);
- ``local``: no merging (what a peer learns alone).

Metrics (honest peers, test set): accuracy on all classes, on the classes the peer has
local training data of ("seen"), and on those it has none of ("unseen": recall over the
test samples of those classes). Timing and messages are not modelled: Bristle's
question here is what is learned, not how fast it travels, so a synchronous loop is
enough and the generic sans-IO Simulation (which exchanges whole models and has no
per-candidate evaluation hook) is not used.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from rumor.aggregation.bristle import (
    K_CLOSE,
    K_RANDOM,
    BristleState,
    bristle_round,
    per_class_f1,
    prioritize,
)
from rumor.node.attacks import AttackContext, craft, label_map, parse_attack
from rumor.node.data import load_dataset, split_indices
from rumor.node.data.datasets import Dataset
from rumor.node.models import MLP
from rumor.node.trainer import confusion_matrices
from rumor.protocols.errors import ConfigError
from rumor.topology import build_topology

METHODS = ("bristle", "mean", "local")


@dataclass(frozen=True)
class BristleConfig:
    """Everything that determines one Bristle experiment run."""

    method: str = "bristle"
    peers: int = 40
    byzantine: int = 8
    attack: str | None = "label-flip"
    rounds: int = 30
    view: int = 30
    alpha: float = 0.1
    dataset: str = "digits"
    hidden: int = 64
    public_fraction: float = 0.15
    pretrain_classes: tuple[int, ...] | None = None
    pretrain_epochs: int = 60
    val_size: int = 100
    lr: float = 0.1
    batch_size: int = 16
    local_steps: int = 10
    k_close: int = K_CLOSE
    k_random: int = K_RANDOM
    score_clip: float = 1000.0
    seed: int = 1
    data_dir: str | None = None

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of: "
                              f"{', '.join(METHODS)}")
        if self.peers < 2 or not 0 <= self.byzantine < self.peers:
            raise ConfigError("need peers >= 2 and 0 <= byzantine < peers")
        if self.byzantine and self.attack is None:
            raise ConfigError("--byzantine needs --attack")
        if self.attack is not None:
            parse_attack(self.attack)
        if not 1 <= self.view < self.peers:
            raise ConfigError("view must be in [1, peers)")
        if not 0.0 < self.public_fraction < 1.0 or self.alpha <= 0:
            raise ConfigError("public_fraction must be in (0, 1) and alpha > 0")
        if min(self.rounds, self.hidden, self.pretrain_epochs, self.val_size,
               self.batch_size, self.local_steps) < 1 or self.lr <= 0:
            raise ConfigError("rounds, hidden, epochs, sizes, steps and lr must be positive")


@dataclass(frozen=True)
class Features:
    """Frozen-extractor features [phi(x), 1] of the training and test sets."""

    train: torch.Tensor  # (N, h + 1)
    test: torch.Tensor
    y_train: torch.Tensor
    y_test: torch.Tensor
    public: npt.NDArray[np.int64]  # indices into train: the public slice
    extractor_test_acc: float  # the pretrained MLP's own test accuracy (reference)


def pretrain_extractor(ds: Dataset, cfg: BristleConfig) -> Features:
    """Train the MLP on the public slice (seeded) and return frozen features."""
    rng = np.random.default_rng(cfg.seed + 101)
    n = ds.num_train
    public = np.sort(rng.choice(n, size=max(1, round(cfg.public_fraction * n)),
                                replace=False)).astype(np.int64)
    fit = public
    if cfg.pretrain_classes is not None:
        keep = np.isin(ds.y_train.numpy()[public], np.asarray(cfg.pretrain_classes))
        fit = public[keep]
        if len(fit) == 0:
            raise ConfigError("pretrain_classes leaves no public samples")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = MLP(ds.input_shape, ds.num_classes, hidden=(cfg.hidden,))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        x, y = ds.x_train[torch.from_numpy(fit)], ds.y_train[torch.from_numpy(fit)]
        gen = torch.Generator().manual_seed(cfg.seed)
        for _ in range(cfg.pretrain_epochs):
            perm = torch.randperm(len(y), generator=gen)
            for k in range(0, len(y), 32):
                b = perm[k:k + 32]
                params = list(model.parameters())
                grads = torch.autograd.grad(F.cross_entropy(model(x[b]), y[b]), params)
                for prm, g in zip(params, grads, strict=True):
                    prm.grad = g
                opt.step()
    body = model.net[:-1]  # flatten, linear, relu: frozen from here on
    with torch.no_grad():
        acc = float((model(ds.x_test).argmax(1) == ds.y_test).float().mean())

        def phi(xs: torch.Tensor) -> torch.Tensor:
            h = body(xs)
            return torch.cat([h, torch.ones(h.shape[0], 1)], 1)

        return Features(phi(ds.x_train), phi(ds.x_test), ds.y_train, ds.y_test, public, acc)


@dataclass(frozen=True)
class BristleRound:
    round: int
    acc: float
    acc_seen: float
    acc_unseen: float


class BristleSim:
    """See the module docstring. ``run()`` returns one BristleRound per round."""

    def __init__(self, config: BristleConfig, *, features: Features | None = None,
                 dataset: Dataset | None = None) -> None:
        config.validate()
        self.config = cfg = config
        ds = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_dir)
        self.num_classes = c = ds.num_classes
        self.feat = features if features is not None else pretrain_extractor(ds, cfg)
        h1 = self.feat.train.shape[1]
        private = np.setdiff1d(np.arange(len(self.feat.y_train)), self.feat.public)
        labels = self.feat.y_train.numpy()
        parts = split_indices(labels[private], cfg.peers, f"dirichlet:{cfg.alpha}", cfg.seed)
        self.indices = [private[p] for p in parts]
        self.familiar = np.zeros((cfg.peers, c), dtype=bool)
        for i, ix in enumerate(self.indices):
            self.familiar[i, np.unique(labels[ix])] = True
        rng = np.random.default_rng(cfg.seed + 7)
        self.byzantine = sorted(int(x) for x in rng.choice(cfg.peers, size=cfg.byzantine,
                                                           replace=False))
        self.honest = [i for i in range(cfg.peers) if i not in set(self.byzantine)]
        self.attack = parse_attack(cfg.attack) if cfg.attack else None
        self.maps = torch.arange(c).repeat(cfg.peers, 1)
        if self.attack is not None and self.attack.name == "label-flip":
            lm = label_map(self.attack, c)
            for b in self.byzantine:
                for src, dst in lm.items():
                    self.maps[b, src] = dst
        vsize = min(cfg.val_size, len(self.feat.public))
        self.val = [np.sort(np.random.default_rng([cfg.seed, 11, i]).choice(
            self.feat.public, size=vsize, replace=False)) for i in range(cfg.peers)]
        graph = build_topology(f"regular:{cfg.view}", cfg.peers, cfg.seed)
        self.neighbours = [sorted(int(j) for j in graph.neighbors(i)) for i in range(cfg.peers)]
        gen = torch.Generator().manual_seed(cfg.seed)
        self.layers = 0.01 * torch.randn((cfg.peers, c, h1), generator=gen)
        self.states = [BristleState(score_clip=cfg.score_clip) for _ in range(cfg.peers)]
        self.ids = [f"peer-{i}" for i in range(cfg.peers)]
        self.history: list[BristleRound] = []

    # ------------------------------------------------------------------ training
    def _train(self, round_: int) -> torch.Tensor:
        cfg = self.config
        w = self.layers.clone().requires_grad_(True)
        xs, ys = self.feat.train, self.feat.y_train
        sched = np.stack([
            np.random.default_rng([cfg.seed, round_, i]).choice(
                ix, size=(cfg.local_steps, cfg.batch_size), replace=True)
            for i, ix in enumerate(self.indices)])  # (P, steps, B)
        for s in range(cfg.local_steps):
            idx = torch.from_numpy(sched[:, s])
            xb, yb = xs[idx], torch.gather(self.maps, 1, ys[idx])
            logits = torch.einsum("pbh,pch->pbc", xb, w)
            loss = F.cross_entropy(logits.reshape(-1, self.num_classes), yb.reshape(-1),
                                   reduction="sum") / cfg.batch_size
            (g,) = torch.autograd.grad(loss, w)
            with torch.no_grad():
                w -= cfg.lr * g
        return w.detach()

    def _predict(self, layers: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nh,pch->pnc", x, layers).argmax(-1)

    def _f1(self, layers: torch.Tensor, peer: int) -> npt.NDArray[np.float64]:
        ix = torch.from_numpy(self.val[peer])
        pred = self._predict(layers, self.feat.train[ix])
        return per_class_f1(confusion_matrices(pred, self.feat.y_train[ix], self.num_classes))

    # ------------------------------------------------------------------ rounds
    def step(self, round_: int) -> BristleRound:
        cfg = self.config
        base = self.layers
        trained = self._train(round_)
        sent = trained.clone()
        if self.attack is not None and self.byzantine:
            honest = trained[self.honest].reshape(len(self.honest), -1)
            gen = torch.Generator().manual_seed(cfg.seed * 7_777 + round_)
            for b in self.byzantine:
                ctx = AttackContext(base[b].reshape(-1), trained[b].reshape(-1), honest,
                                    n=cfg.view + 1, f=max(1, cfg.byzantine), generator=gen)
                sent[b] = craft(self.attack, ctx).reshape(trained[b].shape)
        new = trained.clone()
        if cfg.method != "local":
            for i in self.honest:
                nb = self.neighbours[i]
                if cfg.method == "mean":
                    new[i] = torch.cat([trained[i:i + 1], sent[nb]]).mean(0)
                    continue
                prng = np.random.default_rng([cfg.seed, round_, i, 3])
                flat = sent[nb].reshape(len(nb), -1)
                chosen = [nb[k] for k in prioritize(trained[i].reshape(-1), flat,
                                                    k_close=cfg.k_close,
                                                    k_random=cfg.k_random, generator=prng)]
                f1 = self._f1(torch.cat([trained[i:i + 1], sent[chosen]]), i)
                new[i], _ = bristle_round(self.states[i], trained[i], sent[chosen],
                                          [self.ids[j] for j in chosen], f1[0], f1[1:],
                                          self.familiar[i])
        self.layers = new
        row = self.evaluate(round_ + 1)
        self.history.append(row)
        return row

    def evaluate(self, round_: int) -> BristleRound:
        """Mean over honest peers of test accuracy: all, seen and unseen classes."""
        pred = self._predict(self.layers[self.honest], self.feat.test)
        y = self.feat.y_test
        correct = (pred == y.reshape(1, -1)).numpy()
        acc, seen, unseen = [], [], []
        yn = y.numpy()
        for k, i in enumerate(self.honest):
            fam = self.familiar[i][yn]
            acc.append(correct[k].mean())
            if fam.any():
                seen.append(correct[k][fam].mean())
            if (~fam).any():
                unseen.append(correct[k][~fam].mean())
        return BristleRound(round_, float(np.mean(acc)), float(np.mean(seen)) if seen else
                            float("nan"), float(np.mean(unseen)) if unseen else float("nan"))

    def run(self, on_round: Callable[[BristleRound], None] | None = None
            ) -> list[BristleRound]:
        for r in range(self.config.rounds):
            row = self.step(r)
            if on_round is not None:
                on_round(row)
        return self.history

    def unseen_stats(self) -> dict[str, float]:
        """How non-IID the split is: mean number of unseen classes per honest peer."""
        fam = self.familiar[self.honest]
        return {"unseen_classes_mean": float((~fam).sum(1).mean()),
                "peers_with_unseen": int((~fam).any(1).sum())}


def compare(base: BristleConfig, attacks: Sequence[str | None], methods: Sequence[str],
            on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run every (attack, method) pair on the same data, extractor and split; rows of
    final figures (plus the config) for a table. The extractor is trained once."""
    ds = load_dataset(base.dataset, base.data_dir)
    feats = pretrain_extractor(ds, base)
    rows: list[dict[str, Any]] = []
    for attack in attacks:
        for method in methods:
            byz = base.byzantine if attack is not None else 0
            cfg = BristleConfig(**{**asdict(base), "attack": attack, "method": method,
                                   "byzantine": byz})
            t0 = _time.perf_counter()
            sim = BristleSim(cfg, features=feats, dataset=ds)
            hist = sim.run()
            last = hist[-1]
            row = {"attack": attack or "none", "byzantine": byz, "method": method,
                   "acc": last.acc, "acc_seen": last.acc_seen, "acc_unseen": last.acc_unseen,
                   "extractor_acc": feats.extractor_test_acc,
                   "wall_s": _time.perf_counter() - t0, **sim.unseen_stats()}
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows
