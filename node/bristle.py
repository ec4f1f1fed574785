"""Bristle as a preset of the one engine: scenarios and the per-class measurements.

Bristle is not a simulator of its own any more. A Bristle run is a
:class:`~rumor.node.simulation.Simulation` (or a real mesh: ``rumor launch --model
bristle-head --aggregator bristle``) whose peers

- run the ``bristle-head`` model (rumor.node.models: the frozen extractor of
  rumor.node.transfer followed by the trainable output layer; only the head, 650
  numbers on digits, is trained and gossiped, through the normal wire format);
- merge with the ``bristle`` defense (rumor.aggregation.bristle: prioritizer + integrator),
  which evaluates candidates on the peer's own local data through its Evaluator
  (rumor.node.engine.evaluator).

Methods compared (same split, same extractor, same local training):

- ``bristle``: aggregator ``bristle``;
- ``mean``: plain averaging of own + everything received;
- ``local``: nothing is sent (``fanout = 0``): what a peer learns alone.

Measurements (honest peers, final models, test set): accuracy on all classes, on the
classes the peer has local training data of ("seen"), and on those it has none of
("unseen": the recall over the test samples of those classes). "Unseen" really means
never held: the peer's validation data is drawn from its own training data.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rumor.node.simulation import Simulation, SimulationConfig
from rumor.node.transfer import frozen_extractor
from rumor.protocols.errors import ConfigError

METHODS = ("bristle", "mean", "local")
MODEL = "bristle-head"

#: The preset: 40 peers on a random 30-regular graph (a partial view of 30), Dirichlet
#: alpha = 0.1 label skew, 8 Byzantine peers when attacked, 20 rounds.
PRESET = SimulationConfig(
    peers=40, rounds=20, topology="regular:30", split="dirichlet:0.1",
    aggregator="bristle", model=MODEL, dataset="digits", seed=1, lr=0.1, batch_size=16,
    local_epochs=3, round_timeout=5.0, byzantine=8, attack="label-flip",
)


def method_config(base: SimulationConfig, method: str, attack: str | None) -> SimulationConfig:
    """``base`` for one (method, attack) pair: no attack means no Byzantine peers."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    over: dict[str, Any] = {"attack": attack, "byzantine": base.byzantine if attack else 0}
    if method == "local":
        over.update(aggregator="mean", fanout=0)
    else:
        over["aggregator"] = method
    cfg = replace(base, **over)
    cfg.validate()
    return cfg


@dataclass(frozen=True)
class ClassAccuracy:
    acc: float
    acc_seen: float
    acc_unseen: float
    unseen_classes_mean: float  # classes an honest peer holds no sample of, on average
    peers_with_unseen: int


def class_accuracy(sim: Simulation) -> ClassAccuracy:
    """Mean over honest peers of test accuracy on all, seen and unseen classes."""
    honest = [p for p in sim.honest if p in sim.alive]
    c = sim.dataset.num_classes
    labels = sim.dataset.y_train.numpy()
    familiar = np.zeros((len(honest), c), dtype=bool)
    for k, p in enumerate(honest):
        familiar[k, np.unique(labels[sim.indices[p]])] = True
    y = sim.dataset.y_test
    pred = sim.trainer.predict(sim.params[honest], sim.dataset.x_test)
    correct = (pred == y.reshape(1, -1)).numpy()
    yn = y.numpy()
    acc, seen, unseen = [], [], []
    for k in range(len(honest)):
        fam = familiar[k][yn]
        acc.append(correct[k].mean())
        if fam.any():
            seen.append(correct[k][fam].mean())
        if (~fam).any():
            unseen.append(correct[k][~fam].mean())
    nan = float("nan")
    return ClassAccuracy(
        float(np.mean(acc)), float(np.mean(seen)) if seen else nan,
        float(np.mean(unseen)) if unseen else nan,
        float((~familiar).sum(1).mean()), int((~familiar).any(1).sum()))


def compare(base: SimulationConfig, attacks: Sequence[str | None], methods: Sequence[str],
            on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run every (attack, method) pair through the engine; one row of final figures
    each. The extractor is pre-trained once per process (cached)."""
    rows: list[dict[str, Any]] = []
    for attack in attacks:
        for method in methods:
            cfg = method_config(base, method, attack)
            t0 = _time.perf_counter()
            sim = Simulation(cfg)
            metrics = sim.run()
            ca = class_accuracy(sim)
            row = {"attack": attack or "none", "byzantine": cfg.byzantine, "method": method,
                   "acc": ca.acc, "acc_seen": ca.acc_seen, "acc_unseen": ca.acc_unseen,
                   "rounds": len(metrics), "messages": sum(m.messages for m in metrics),
                   "extractor_acc": frozen_extractor(sim.dataset).test_acc,
                   "wall_s": _time.perf_counter() - t0,
                   "unseen_classes_mean": ca.unseen_classes_mean,
                   "peers_with_unseen": ca.peers_with_unseen}
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows
