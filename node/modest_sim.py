"""A MoDeST simulator: sampled rounds on a virtual clock, with crashes.

Round r (rumor.protocols.modest computes every sample; nobody coordinates)::

    S_r = sample(all ids, r, s, active=view)        the trainers of round r
    a trainer that got the round-r model trains (train_time), then pings S_r in order;
      the first ``a`` that answer are the aggregators A_r; it sends them its update
    an aggregator averages (weighted by sample counts) once it holds an update from
      every member of S_r, or agg_timeout after the first one, and sends the model
      to every member of S_{r+1}; it acks the trainers it used
    a trainer without an ack after ack_timeout pings again (the failed aggregator no
      longer answers) and re-sends to the next one; an aggregator that sees no round
      r+2 model... (see recovery below)

Recovery. An aggregator that sent the round-(r+1) model checks after
``round_timeout`` that round r+1 was aggregated; if not, it pings S_{r+1}, drops who
does not answer from the view and sends the model to the new members of the
recomputed sample. So a round never stalls while any peer that holds its model lives.

The view. Every peer holds the same view of who is active (MoDeST gossips joins and
leaves; here one shared set stands for that, an approximation we name): it starts
with everyone; a peer leaves it when a ping to it fails (a trainer pinging
aggregators, an aggregator pinging trainers that did not deliver by the deadline).
Crashes (``topology.crash_every``) change the ground truth at once and the view only
through failed pings, so samples do contain crashed peers for a while, as in MoDeST.

Why a dedicated simulator rather than a new Role of protocols.peer.Peer: Peer is built
around neighbour gossip rounds (push to neighbours, collect, merge); in MoDeST a
peer's role changes every round (idle, trainer, aggregator, several at once) and the
model moves along samples, not edges. A second small event loop over the same
virtual-clock queue (node.simnet) and the same batched trainer keeps both readable;
the MoDeST decisions themselves are the pure functions of rumor.protocols.modest.
Messages are python objects, not signed bytes (the wire is tested elsewhere).
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rumor.node.data import load_dataset, split_indices
from rumor.node.models import init_params
from rumor.node.simnet import LinkModel, SimNetwork
from rumor.node.trainer import BatchedTrainer
from rumor.protocols.errors import ConfigError
from rumor.protocols.modest import AGGREGATORS, SAMPLE_SIZE, aggregators, sample
from rumor.topology import RemovePeers, crash_every


@dataclass(frozen=True)
class ModestConfig:
    """Everything that determines a MoDeST run (the churn test's values by default)."""

    peers: int = 100
    s: int = SAMPLE_SIZE
    a: int = AGGREGATORS
    duration: float = 1200.0
    max_rounds: int | None = None
    crash_count: int = 5
    crash_every: float = 60.0
    crash_until: float = 0.8
    dataset: str = "digits"
    model: str = "mlp"
    split: str = "iid"
    lr: float = 0.1
    batch_size: int = 8
    local_epochs: int = 1
    train_time: float = 5.0
    latency: float = 0.05
    agg_timeout: float = 10.0
    ack_timeout: float = 15.0
    round_timeout: float = 30.0
    test_subset: int | None = None
    seed: int = 1
    data_dir: str | None = None

    def validate(self) -> None:
        if self.peers < 1 or self.s < 1 or not 1 <= self.a <= self.s:
            raise ConfigError("need peers >= 1, s >= 1 and 1 <= a <= s")
        if self.duration <= 0 or self.train_time <= 0 or self.latency < 0:
            raise ConfigError("duration and train_time must be > 0, latency >= 0")
        if min(self.agg_timeout, self.ack_timeout, self.round_timeout) <= 0:
            raise ConfigError("timeouts must be > 0")
        if self.crash_count < 0 or not 0.0 <= self.crash_until <= 1.0:
            raise ConfigError("crash_count >= 0 and crash_until in [0, 1]")


@dataclass(frozen=True)
class ModestRound:
    """One aggregated round: the model's test accuracy and who took part."""

    round: int
    time: float
    acc: float
    trainers: int  # updates averaged into this model
    alive: int  # peers alive (ground truth) at that time
    view: int  # peers in the shared active view
    aggregator: int


@dataclass
class _Agg:
    updates: dict[int, tuple[torch.Tensor, int]] = field(default_factory=dict)
    done: bool = False


class ModestSim:
    """See the module docstring; ``run()`` returns one ModestRound per aggregated round."""

    def __init__(self, config: ModestConfig) -> None:
        config.validate()
        self.config = cfg = config
        self.dataset = ds = load_dataset(cfg.dataset, cfg.data_dir)
        self.indices = split_indices(ds.y_train.numpy(), cfg.peers, cfg.split, cfg.seed)
        self.num_samples = [len(ix) for ix in self.indices]
        self.trainer = BatchedTrainer(cfg.model, ds.input_shape, ds.num_classes, ds,
                                      lr=cfg.lr, batch_size=cfg.batch_size,
                                      local_epochs=cfg.local_epochs)
        self.init = init_params(cfg.model, ds.input_shape, ds.num_classes, cfg.seed)
        self.params = self.init.repeat(cfg.peers, 1)
        self.ids = [f"peer-{i:04d}" for i in range(cfg.peers)]
        self.index_of = {p: i for i, p in enumerate(self.ids)}
        self.alive: set[int] = set(range(cfg.peers))
        self.view: set[str] = set(self.ids)
        self.net = SimNetwork(LinkModel(cfg.latency), cfg.seed)
        self.timeline: list[RemovePeers] = []
        if cfg.crash_count:
            self.timeline = crash_every(range(cfg.peers), cfg.crash_count, cfg.crash_every,
                                        cfg.crash_until, cfg.seed)
        self.x_eval, self.y_eval = ds.x_test, ds.y_test
        if cfg.test_subset is not None and cfg.test_subset < len(self.y_eval):
            pick = np.sort(np.random.default_rng(cfg.seed + 5).choice(
                len(self.y_eval), size=cfg.test_subset, replace=False))
            self.x_eval, self.y_eval = self.x_eval[pick], self.y_eval[pick]
        self._training: dict[int, int] = {}  # peer -> round it trains
        self._trained: dict[int, torch.Tensor] = {}
        self._has_round: dict[int, int] = {}  # peer -> latest round model it received
        self._acked: set[tuple[int, int]] = set()  # (peer, round)
        self._aggs: dict[tuple[int, int], _Agg] = {}  # (aggregator, round)
        self._sent_model: dict[int, set[int]] = {}  # round -> peers sent that model
        self.best_round = -1  # highest round aggregated so far
        self.history: list[ModestRound] = []
        self.pings = 0
        self.messages = 0

    # ------------------------------------------------------------------ helpers
    def sample_of(self, round_: int) -> list[int]:
        return [self.index_of[p] for p in sample(self.ids, round_, self.config.s, self.view)]

    def _ping(self, peer: int) -> bool:
        """A ping answers iff the peer is alive; a failed one removes it from the view."""
        self.pings += 1
        if peer in self.alive:
            return True
        self.view.discard(self.ids[peer])
        return False

    def _send(self, dst: int, kind: str, payload: Any) -> None:
        self.messages += 1
        self.net.schedule(self.net.clock.now() + self.config.latency, kind, dst, payload)

    def _send_model(self, round_: int, model: torch.Tensor) -> None:
        sent = self._sent_model.setdefault(round_, set())
        for p in self.sample_of(round_):
            if p not in sent:
                sent.add(p)
                self._send(p, "model", (round_, model))

    # ------------------------------------------------------------------ events
    def run(self, on_round: Callable[[ModestRound], None] | None = None
            ) -> list[ModestRound]:
        cfg = self.config
        for ev in self.timeline:
            self.net.schedule(ev.at, "crash", -1, ev)
        for p in self.sample_of(0):
            self._sent_model.setdefault(0, set()).add(p)
            self.net.schedule(0.0, "model", p, (0, self.init.clone()))
        while (item := self.net.pop()) is not None:
            now = self.net.clock.now()
            if now > cfg.duration or (cfg.max_rounds is not None
                                      and self.best_round + 1 >= cfg.max_rounds):
                break
            p = item.target
            if item.kind == "crash":
                self.alive -= set(item.payload.peers)
                for q in item.payload.peers:
                    self._training.pop(q, None)
                    self._trained.pop(q, None)
                continue
            if p not in self.alive:
                continue  # a crashed peer does nothing; what was sent to it is lost
            n_before = len(self.history)
            if item.kind == "model":
                self._on_model(p, *item.payload)
            elif item.kind == "trained":
                self._on_trained(p, item.payload)
            elif item.kind == "update":
                self._on_update(p, *item.payload)
            elif item.kind == "agg_deadline":
                self._aggregate(p, item.payload)
            elif item.kind == "ack":
                self._acked.add((p, item.payload))
            elif item.kind == "ack_check":
                self._on_ack_check(p, item.payload)
            elif item.kind == "round_check":
                self._on_round_check(p, *item.payload)
            if on_round is not None and len(self.history) > n_before:
                on_round(self.history[-1])
        return self.history

    def _on_model(self, p: int, round_: int, model: torch.Tensor) -> None:
        if self._has_round.get(p, -1) >= round_ or round_ <= self.best_round - 1:
            return  # a duplicate (a > 1) or a stale model
        self._has_round[p] = round_
        if p in self._training:  # already training an older round: the newer wins
            self._trained.pop(p, None)
        self.params[p] = model
        self._training[p] = round_
        self.net.schedule(self.net.clock.now() + self.config.train_time, "trained", p, round_)

    def _train_pending(self) -> None:
        pending = sorted(q for q in self._training if q not in self._trained)
        for r in sorted({self._training[q] for q in pending}):
            rows = [q for q in pending if self._training[q] == r]
            out = self.trainer.train(self.params, self.indices, seed=self.config.seed,
                                     round=r, rows=rows)
            for k, q in enumerate(rows):
                self._trained[q] = out[k].clone()

    def _on_trained(self, p: int, round_: int) -> None:
        if self._training.get(p) != round_:
            return
        if p not in self._trained:
            self._train_pending()
        del self._training[p]
        vec = self._trained.pop(p)
        self.params[p] = vec
        self._deliver_update(p, round_, vec)

    def _deliver_update(self, p: int, round_: int, vec: torch.Tensor) -> None:
        aggs = aggregators(self.sample_of(round_), self._ping, self.config.a)
        for q in aggs:
            self._send(q, "update", (round_, p, vec, self.num_samples[p]))
        if aggs:
            self.net.schedule(self.net.clock.now() + self.config.ack_timeout, "ack_check", p,
                              round_)

    def _on_ack_check(self, p: int, round_: int) -> None:
        if (p, round_) in self._acked or self.best_round > round_:
            return
        self._deliver_update(p, round_, self.params[p])

    def _on_update(self, q: int, round_: int, sender: int, vec: torch.Tensor, n: int) -> None:
        agg = self._aggs.setdefault((q, round_), _Agg())
        if agg.done:
            self._send(sender, "ack", round_)  # late: the round went on without it
            return
        if not agg.updates:
            self.net.schedule(self.net.clock.now() + self.config.agg_timeout, "agg_deadline",
                              q, round_)
        agg.updates[sender] = (vec, n)
        if set(self.sample_of(round_)) <= agg.updates.keys():
            self._aggregate(q, round_)

    def _aggregate(self, q: int, round_: int) -> None:
        agg = self._aggs.get((q, round_))
        if agg is None or agg.done or not agg.updates:
            return
        agg.done = True
        for t in self.sample_of(round_):  # who did not deliver: ping, update the view
            if t not in agg.updates:
                self._ping(t)
        senders = sorted(agg.updates)
        w = torch.tensor([float(max(agg.updates[t][1], 1)) for t in senders])
        stack = torch.stack([agg.updates[t][0] for t in senders])
        model = (w[:, None] * stack).sum(0) / w.sum()
        for t in senders:
            self._send(t, "ack", round_)
        if round_ > self.best_round:
            self.best_round = round_
            acc = float(self.trainer.evaluate(model[None], self.x_eval, self.y_eval)[0])
            self.history.append(ModestRound(round_ + 1, round(self.net.clock.now(), 6), acc,
                                            len(senders), len(self.alive), len(self.view), q))
        self._send_model(round_ + 1, model)
        self.net.schedule(self.net.clock.now() + self.config.round_timeout, "round_check", q,
                          (round_ + 1, model))

    def _on_round_check(self, q: int, round_: int, model: torch.Tensor) -> None:
        if self.best_round >= round_:
            return
        for t in self.sample_of(round_):
            if not self._has_round.get(t, -1) >= round_:
                self._ping(t)
        self._send_model(round_, model)
        self.net.schedule(self.net.clock.now() + self.config.round_timeout, "round_check", q,
                          (round_, model))


def run_modest(config: ModestConfig, on_round: Callable[[ModestRound], None] | None = None
               ) -> tuple[ModestSim, list[ModestRound], float]:
    """Build and run; returns the simulator, its rounds and the wall time taken."""
    t0 = _time.perf_counter()
    sim = ModestSim(config)
    rows = sim.run(on_round)
    return sim, rows, _time.perf_counter() - t0
