"""The simulator runtime: a whole swarm of sans-IO Peers in one process.

Each simulated peer is a real ``rumor.protocols.peer.Peer`` (same code as on the
mesh); this runtime executes their commands fast:

- parameters of all peers are the rows of one (P, d) tensor; every peer that is
  training when a TrainingDone falls due is trained together in one vmapped call
  (a peer's model cannot change between StartTraining and TrainingDone, so
  computing it late is exact);
- messages go through SimNetwork (virtual clock, latency, loss, partitions);
  signing can be switched off here only (``sign=False``, the default in the
  simulator; the wire checks are tested on their own);
- a round's metrics are computed, batched, once every live peer has merged it.

Same config and seed -> byte-identical metrics.csv.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import time as _time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import torch

from rumor import aggregation
from rumor.aggregation.compression import parse_spec
from rumor.aggregation.layout import Layout
from rumor.node.alloc import block_rows, keep_freed_memory
from rumor.node.attacks import (
    AttackSpec,
    add_trigger,
    flip_target,
    label_map,
    parse_attack,
    trigger_size,
)
from rumor.node.data import load_dataset, split_indices
from rumor.node.engine import (
    Collusion,
    CommandExecutor,
    LocalEvaluator,
    MergeBatch,
    SharedDecoder,
    build_peer,
    needs_evaluator,
)
from rumor.node.merging import FEDAVG
from rumor.node.models import init_params
from rumor.node.optimizers import parse_optimizer
from rumor.node.results import LayerVariance, RoundMetrics, final_merge_report, layer_variance
from rumor.node.round_stats import RoundStats
from rumor.node.simnet import LinkModel, SimEvent, SimNetwork
from rumor.node.trainer import BatchedTrainer
from rumor.node.transport.base import Received
from rumor.node.transport.virtual import VirtualHub, VirtualTransport
from rumor.protocols import codec
from rumor.protocols.config import ProtocolConfig, differences, for_runtime
from rumor.protocols.errors import AggregationError, ConfigError, TransportError
from rumor.protocols.events import (
    Event,
    Merge,
    MessageReceived,
    PeerDiscovered,
    PeerId,
    PeerLost,
    Start,
    Tick,
    TrainingDone,
    TrainingHints,
    Vector,
)
from rumor.protocols.identity import Identity
from rumor.protocols.modest_peer import ModestPeer, ModestSettings
from rumor.protocols.peer import Peer, Role
from rumor.protocols.validation import Decode
from rumor.topology import (
    TimelineEvent,
    apply_events,
    build_topology,
    byzantine_view_stats,
    parse_placement,
    place_attackers,
)


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines a simulated run (written into summary.json)."""

    peers: int = 50
    rounds: int = 40
    topology: str = "regular:8"
    split: str = "iid"
    aggregator: str = "variance-corrected"
    model: str = "mlp"
    dataset: str = "digits"
    seed: int = 1
    lr: float = 0.1
    batch_size: int = 8
    local_epochs: int = 1
    momentum: float = 0.0
    init: str = "independent"
    f: int = 0
    round_timeout: float = ProtocolConfig.round_timeout
    train_time: float = 1.0
    latency: float = 0.05
    loss: float = 0.0
    min_updates: int | None = None
    fanout: int | None = None
    sign: bool = False
    eval_peers: int | None = None  # None: all, or a seeded EVAL_SAMPLE beyond that
    test_subset: int | None = None
    swarm: str = "rumor-sim"
    data_dir: str | None = None
    relay_fraction: float = 0.0
    attack: str | None = None
    byzantine: int = 0
    placement: str = "random"  # where Byzantine peers sit: random | hubs | list:3,7
    sybils: int = 0
    sybil_degree: int = 4
    sybil_noise: float = 0.001
    timeline: tuple[TimelineEvent, ...] = ()
    rule_params: dict[str, Any] = field(default_factory=dict)
    polyak_beta: float | None = None  # persistent Polyak momentum; "monna" defaults to 0.99
    compress: str | None = None  # compressed gossip, e.g. "topk:ratio=0.01,feedback=ef"
    # mode = "modest": every peer is a rumor.protocols.modest_peer.ModestPeer (sampled
    # rounds; the topology is who knows whom, "complete" for full membership); ``rounds``
    # caps the aggregated rounds, ``duration`` (virtual s, any protocol) stops the clock.
    mode: str = "gossip"
    modest_sample: int = 10
    modest_aggregators: int = 1
    modest_agg_timeout: float = 10.0
    modest_ack_timeout: float = 15.0
    modest_round_timeout: float = 30.0
    duration: float | None = None
    # communication (rumor.protocols.schedule) and the local optimizer (node.optimizers)
    schedule: str = "constant"
    gossip_steps: int = 1
    final_merge: int = 0  # rounds of gossip averaging after the last training round
    optimizer: str = "sgd"

    @property
    def protocol_rounds(self) -> int:
        """Rounds of the run's metrics: ``rounds`` plus what the round plan adds
        (mixing steps, final-merge rounds)."""
        if self.mode == "modest" or self.aggregator == FEDAVG:
            return self.rounds
        return self.protocol().plan().total or self.rounds

    def modest_settings(self) -> ModestSettings:
        return ModestSettings(s=self.modest_sample, a=self.modest_aggregators,
                              agg_timeout=self.modest_agg_timeout,
                              ack_timeout=self.modest_ack_timeout,
                              round_timeout=self.modest_round_timeout)

    def effective_polyak_beta(self) -> float | None:
        """The momentum every simulated peer trains with (ProtocolConfig's rule)."""
        return self.protocol().effective_polyak_beta()

    def protocol(self, attack: str | None = None) -> ProtocolConfig:
        """The one ProtocolConfig of a simulated peer (sim differences applied;
        ``sign`` as configured)."""
        base = ProtocolConfig(
            swarm=self.swarm, aggregator=self.aggregator, f=self.f,
            rule_params=dict(self.rule_params), rounds=self.rounds,
            round_timeout=self.round_timeout, min_updates=self.min_updates,
            fanout=self.fanout, polyak_beta=self.polyak_beta, attack=attack,
            schedule=self.schedule, gossip_steps=self.gossip_steps,
            final_merge=self.final_merge,
            compress=self.compress,
        )
        return for_runtime(base, "sim", explicit=frozenset({"sign"}) if self.sign else
                           frozenset())

    def validate(self) -> None:
        if self.mode not in ("gossip", "modest"):
            raise ConfigError(f"mode must be 'gossip' or 'modest', got {self.mode!r}")
        spec = parse_spec(self.compress)
        if self.mode == "modest":
            self.modest_settings().validate()
            if spec is not None:
                raise ConfigError("mode 'modest' does not take --compress (gossip only)")
            if self.sybils:
                raise ConfigError("mode 'modest' does not take sybils")
        if self.duration is not None and not self.duration > 0:
            raise ConfigError("duration must be > 0")
        if self.peers < 1:
            raise ConfigError("--peers must be >= 1")
        if self.rounds < 1:
            raise ConfigError("--rounds must be >= 1")
        if self.init not in ("same", "independent"):
            raise ConfigError("--init must be 'same' or 'independent'")
        if (self.aggregator != FEDAVG and self.aggregator not in aggregation.names()
                and self.aggregator not in aggregation.DEFENSES):
            try:
                aggregation.get(self.aggregator)
            except AggregationError as exc:
                raise ConfigError(f"{exc}, {FEDAVG}") from None
        parse_placement(self.placement)
        if (self.byzantine or self.sybils) and self.attack is None:
            raise ConfigError("--byzantine/--sybils need --attack NAME")
        if self.attack is not None:
            parse_attack(self.attack)
            if self.byzantine < 0 or self.byzantine >= self.peers:
                raise ConfigError("--byzantine must be in [0, peers)")
            if self.sybils < 0 or (self.sybils and self.aggregator == FEDAVG):
                raise ConfigError("--sybils needs a gossip aggregator and must be >= 0")
        if not 0.0 <= self.relay_fraction < 1.0:
            raise ConfigError("relay_fraction must be in [0, 1)")
        if not 0.0 <= self.loss < 1.0:
            raise ConfigError("--loss must be in [0, 1)")
        if self.lr <= 0 or self.batch_size < 1 or self.local_epochs < 1:
            raise ConfigError("--lr, --batch-size and --local-epochs must be positive")
        beta = self.effective_polyak_beta()
        if beta is not None and (not 0.0 <= beta < 1.0 or self.momentum):
            raise ConfigError("polyak_beta must be in [0, 1) and needs momentum 0")
        parse_optimizer(self.optimizer)
        plan = self.protocol().plan()  # ConfigError on a bad schedule / steps / rounds
        if not plan.trivial and (self.mode == "modest" or self.aggregator == FEDAVG):
            raise ConfigError("--schedule, --gossip-steps and --final-merge are for "
                              "gossip peers (not fedavg or mode 'modest')")


def peer_identity(seed: int, index: int) -> Identity:
    """Deterministic identity of simulated peer ``index``."""
    return Identity.from_seed(hashlib.sha256(f"rumor-sim/{seed}/{index}".encode()).digest())


RoundCallback = Callable[[RoundMetrics], None]

#: peers evaluated each round when ``eval_peers`` is None and there are more honest
#: learners (a seeded sample; ``final_evaluation`` covers them all at the end)
EVAL_SAMPLE = 200


def relay_peers(n: int, fraction: float, seed: int) -> set[int]:
    """The seeded set of relay-only peers (no training data) among 0..n-1."""
    order = np.random.default_rng(seed + 17).permutation(n)
    return {int(x) for x in order[: round(fraction * n)]}


def byzantine_peers(cfg: SimulationConfig, graph: nx.Graph,
                    rng: np.random.Generator | None = None) -> set[int]:
    """The run's Byzantine peers: ``place_attackers(graph, cfg.byzantine, cfg.placement,
    default_rng(cfg.seed + 31))``. The simulator, scenario timelines, real mode and
    ``rumor launch`` all pick them here; ``rng`` (that generator, made by the caller)
    lets the simulator keep drawing from the same stream afterwards (Sybil edges)."""
    if rng is None:
        rng = np.random.default_rng(cfg.seed + 31)
    return set(place_attackers(graph, cfg.byzantine, cfg.placement, seed=rng))


class Simulation:
    """Builds data, topology, peers and runs them to completion; see module docstring."""

    def __init__(self, config: SimulationConfig, *, fast: bool = True) -> None:
        """``fast=False``: the reference per-message path (every receiver decodes and
        scans its own copy of each message, every merged model is kept for the round's
        metrics); the same metrics, slower. ``fast`` (default): unsigned messages are
        decoded once per message object for all receivers (``SharedDecoder``)."""
        config.validate()
        self.config = cfg = config
        torch.manual_seed(cfg.seed)
        self.dataset = load_dataset(cfg.dataset, cfg.data_dir)
        self.modest = cfg.mode == "modest"
        self.fedavg = cfg.aggregator == FEDAVG and not self.modest
        n = cfg.peers
        labels = self.dataset.y_train.numpy()
        self.relays = relay_peers(n, cfg.relay_fraction, cfg.seed)
        holders = [i for i in range(n) if i not in self.relays]
        parts = split_indices(labels, len(holders), cfg.split, cfg.seed)
        empty = np.zeros(0, dtype=np.int64)
        self.indices = [empty] * n
        for k, i in enumerate(holders):
            self.indices[i] = parts[k]
        self.num_samples = [len(ix) for ix in self.indices]
        if self.fedavg:
            # Peers 0..n-1 are clients; peer n is the server at the hub of a star.
            self.indices.append(empty)  # the server holds no data
            self.graph_edges = [(i, n) for i in range(n)]
            self.total = n + 1
            g = nx.empty_graph(n)
        else:
            g = build_topology(cfg.topology, n, cfg.seed)
            self.graph_edges = sorted((min(a, b), max(a, b)) for a, b in g.edges())
            self.total = n + cfg.sybils
        self.attack: AttackSpec | None = parse_attack(cfg.attack) if cfg.attack else None
        arng = np.random.default_rng(cfg.seed + 31)
        self.byzantine = byzantine_peers(cfg, g, arng)
        self.sybil_ids = list(range(n, n + cfg.sybils))
        self.honest = [i for i in range(n) if i not in self.byzantine]
        k = min(cfg.sybil_degree, len(self.honest))
        for sy in self.sybil_ids:  # each Sybil attaches to a few random honest peers
            for h in sorted(int(x) for x in arng.choice(self.honest, size=k, replace=False)):
                self.graph_edges.append((h, sy))
        if self.sybil_ids:  # Sybils train on one shared poisoned slice of data
            share = self.indices[min(self.sybil_ids[0] % n, n - 1)]
            self.indices += [share] * cfg.sybils
            self.num_samples += [len(share)] * cfg.sybils
        self._label_maps: dict[int, dict[int, int]] = {}
        self._backdoor: tuple[int, int] | None = None
        if self.attack is not None and self.attack.name == "label-flip":
            lm = label_map(self.attack, self.dataset.num_classes)
            for p in (*sorted(self.byzantine), *self.sybil_ids):
                self._label_maps[p] = lm
        if self.attack is not None and self.attack.name == "backdoor":
            self._plant_backdoor(self.attack, sorted(self.byzantine) + self.sybil_ids, arng)
        self.graph = nx.Graph()
        self.graph.add_nodes_from(range(self.total))
        self.graph.add_edges_from(self.graph_edges)
        self.alive: set[int] = set(range(self.total))
        self._applied: list[TimelineEvent] = []
        self._graph_now: nx.Graph | None = None
        self._rejoined_at: dict[int, int] = {}
        self._skipped: dict[int, set[int]] = {}
        self._emitted = -1
        self._alive_learners: set[int] = set(range(cfg.peers))
        self._incarnation: dict[int, int] = {}
        shape, ncls = self.dataset.input_shape, self.dataset.num_classes
        self.trainer = BatchedTrainer(
            cfg.model,
            shape,
            ncls,
            self.dataset,
            lr=cfg.lr,
            batch_size=cfg.batch_size,
            local_epochs=cfg.local_epochs,
            momentum=cfg.momentum,
            sam_rho=parse_optimizer(cfg.optimizer).sam_rho,
        )
        rows = []
        for i in range(self.total):
            s = cfg.seed if cfg.init == "same" else cfg.seed * 100_003 + i
            rows.append(init_params(cfg.model, shape, ncls, s))
        self.params = torch.stack(rows)
        self.d = self.params.shape[1]
        self.polyak_beta = cfg.effective_polyak_beta()
        self.momentum_state = (torch.zeros_like(self.params)
                               if self.polyak_beta is not None else None)
        self.layout: Layout = self.trainer.layout
        self.net = SimNetwork(LinkModel(cfg.latency, cfg.loss), cfg.seed)
        self.ids = [peer_identity(cfg.seed, i) for i in range(self.total)]
        self.index_of = {ident.peer_id: i for i, ident in enumerate(self.ids)}
        # every message goes through the in-memory Transport on the virtual network
        self.hub = VirtualHub(self.net)
        self.endpoints = [VirtualTransport(self.hub, ident.peer_id) for ident in self.ids]
        for i, ep in enumerate(self.endpoints):
            ep.start_nowait()
            ep.on_receive = functools.partial(self._on_receive, i)
        self._collusion = (Collusion(cfg.sybil_noise, cfg.seed) if self.sybil_ids else None)
        self._view = round(2 * len(self.graph_edges) / max(1, self.total)) + 1
        # unsigned messages are decoded once per message object, not per receiver
        self.fast = fast
        self.decode: Decode = SharedDecoder() if fast and not cfg.sign else codec.decode
        self.peers: list[Peer] = [self._make_peer(i) for i in range(self.total)]
        # linear merges of one virtual instant run as one sparse product (MergeBatch)
        self.merge_batch = MergeBatch() if fast else None
        if fast:  # large buffers come back every round: keep their pages (rumor.node.alloc)
            keep_freed_memory()
        self.executors = [CommandExecutor(p, _SimBackend(self, i), self.merge_batch)
                          for i, p in enumerate(self.peers)]
        self._training: dict[int, tuple[int, TrainingHints]] = {}  # peer -> round, hints
        # peer -> (base: the model before training, kept for adversaries only; trained)
        self._trained: dict[int, tuple[np.ndarray | None, np.ndarray]] = {}
        self._tick_at: dict[int, float] = {}
        self._snapshots: dict[int, RoundStats] = {}
        self._round_msgs: dict[int, int] = {}
        self._round_bytes: dict[int, int] = {}
        self.finished: set[int] = set()
        self.metrics: list[RoundMetrics] = []
        # per round and tensor, observed (round 0: the initial models)
        self.layer_variances: list[LayerVariance] = layer_variance(
            0, self.params[self.honest].numpy(), self.layout)
        self.modest_rounds: list[dict[str, Any]] = []  # per aggregated round (modest)
        self.events: list[dict[str, Any]] = []
        self.peer_accuracy: dict[int, float] = {}  # evaluated peers, last completed round
        self.eval_rows = self._eval_rows()
        self._eval_set = frozenset(self.eval_rows)
        self.x_eval, self.y_eval = self.dataset.x_test, self.dataset.y_test
        if cfg.test_subset is not None and cfg.test_subset < len(self.y_eval):
            pick = np.random.default_rng(cfg.seed + 5).choice(
                len(self.y_eval), size=cfg.test_subset, replace=False)
            sel = torch.from_numpy(np.sort(pick))
            self.x_eval, self.y_eval = self.x_eval[sel], self.y_eval[sel]

    # ------------------------------------------------------------------ API
    @property
    def learners(self) -> list[int]:
        """Honest peers that train and are evaluated (not a FedAvg server, attacker
        or Sybil)."""
        return list(self.honest)

    def run(self, on_round: RoundCallback | None = None) -> list[RoundMetrics]:
        """Run every peer to its last round; returns one RoundMetrics per round."""
        self._on_round = on_round
        for a, b in self.graph_edges:
            self._feed(a, PeerDiscovered(self.ids[b].peer_id, 0.0))
            self._feed(b, PeerDiscovered(self.ids[a].peer_id, 0.0))
        for ev in self.config.timeline:
            self.net.schedule(ev.at, "timeline", -1, ev)
        for i in range(self.total):
            self._feed(i, Start(0.0, 0))
        while True:
            self._flush_merges_before(self.net.peek())
            item = self.net.pop()
            if item is None:
                break
            now = self.net.clock.now()
            if self.config.duration is not None and now > self.config.duration:
                break
            i = item.target
            if item.kind == "deliver":  # one broadcast: every target alive or not
                self._deliver(item, now)
            elif item.kind == "timeline":
                self._apply_timeline(item.payload, now)
            elif i not in self.alive:
                continue  # a removed peer does nothing; what was sent to it is lost
            elif item.kind == "trained":
                inc, round_ = item.payload
                pending = self._training.get(i)
                if (inc == self._incarnation.get(i, 0) and pending is not None
                        and pending[0] == round_):
                    self._feed(i, self._training_done(i, now))
            elif item.kind == "tick" and self._tick_at.get(i) == item.time:
                del self._tick_at[i]
                self._feed(i, Tick(now))
        return self.metrics

    @property
    def graph_now(self) -> nx.Graph:
        """The links working now (the topology after the timeline events so far)."""
        return self.graph if self._graph_now is None else self._graph_now

    @property
    def defenses(self) -> dict[int, aggregation.Defense]:
        """Each peer's stateful defense (held by its merger), for inspection."""
        out: dict[int, aggregation.Defense] = {}
        for i, p in enumerate(self.peers):
            d = getattr(p.merger, "defense", None)
            if d is not None:
                out[i] = d
        return out

    def view_stats(self) -> dict[str, Any]:
        """How many honest views hold >= 1/3 Byzantine neighbours (Sybils included): the
        condition under which robust rules lose their guarantee."""
        if self.fedavg:
            return {}
        return dict(byzantine_view_stats(self.graph, self.byzantine | set(self.sybil_ids)))

    def completion(self) -> dict[str, Any]:
        """Whether every configured round completed; when not, why (for summary.json)."""
        done = len(self.metrics)
        want = self.config.protocol_rounds
        out: dict[str, Any] = {"rounds_configured": want,
                               "rounds_completed": done,
                               "complete": done >= want}
        if done < want:
            behind = sorted((self.peers[p].round, p) for p in self._alive_learners)[:5]
            out["reason"] = (
                f"round {done + 1} never completed: {len(self._alive_learners)} live "
                f"learners; lowest rounds (round, peer): {behind}"
                if self._alive_learners else "no live learner left")
        return out

    def comm_report(self) -> dict[str, Any]:
        """summary.json's ``plan`` (the round plan) and ``final_merge`` (its report)."""
        cfg = self.config
        if self.modest or self.fedavg:
            return {}
        return {"plan": cfg.protocol().plan().describe(),
                "final_merge": final_merge_report(self.metrics, cfg.final_merge)}

    def protocol_events(self) -> dict[str, int]:
        """Protocol counters over all peers (catch_up, small_view, merge_rejected...)."""
        total: dict[str, int] = {}
        for p in self.peers:
            for k, v in p.counters.items():
                total[k] = total.get(k, 0) + v
        return dict(sorted(total.items()))

    def reject_counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for p in self.peers:
            for k, v in p.validator.rejects.items():
                total[k] = total.get(k, 0) + v
        return dict(sorted(total.items()))

    def config_dict(self) -> dict[str, Any]:
        """The run's config, plus where the simulator's protocol differs from the
        mesh's (named in rumor.protocols.config)."""
        out = asdict(self.config)
        out["runtime_differences"] = differences("sim")
        return out

    # -------------------------------------------------------------- internals
    def _make_peer(self, i: int) -> Peer:
        cfg, n = self.config, self.config.peers
        role = Role.GOSSIP
        server = None
        if self.fedavg:
            role = Role.SERVER if i == n else Role.CLIENT
            server = self.ids[n].peer_id
        byz = i in self.byzantine or i in self.sybil_ids
        attack = cfg.attack if byz and self.attack is not None else None
        peer = build_peer(
            self.ids[i], cfg.protocol(attack), dimension=self.d, layout=self.layout,
            role=role, server=server, seed=cfg.seed * 7919 + i, view=self._view,
            collusion=self._collusion if i in self.sybil_ids else None, member=i,
            evaluator=LocalEvaluator(self.trainer, self.indices[i], seed=cfg.seed * 7919 + i)
            if needs_evaluator(cfg.aggregator) else None, decode=self.decode)
        if self.modest:
            return ModestPeer(peer.identity, peer.config, cfg.modest_settings(),
                              merger=peer.merger, adversary=peer.adversary,
                              decode=self.decode)
        return peer

    def final_evaluation(self) -> dict[str, float | int]:
        """Test accuracy of every live honest peer's final model (the per-round metrics
        may cover only a sample): mean, min, max, std and the count."""
        rows = [p for p in self.honest if p in self.alive]
        if not rows:
            return {"peers": 0}
        acc = np.concatenate([
            self.trainer.evaluate(self.params[rows[k:k + 1024]], self.x_eval, self.y_eval)
            for k in range(0, len(rows), 1024)])
        return {"peers": len(rows), "acc_mean": float(np.mean(acc)),
                "acc_min": float(np.min(acc)), "acc_max": float(np.max(acc)),
                "acc_std": float(np.std(acc))}

    def _eval_rows(self) -> list[int]:
        k = self.config.eval_peers
        if k is None and len(self.honest) > EVAL_SAMPLE:
            k = EVAL_SAMPLE
        if k is None or k >= len(self.honest):
            return self.learners
        rng = np.random.default_rng(self.config.seed)
        return sorted(int(x) for x in rng.choice(self.honest, size=k, replace=False))

    def _feed(self, i: int, event: Event) -> None:
        self.executors[i].feed(event)

    def _flush_merges_before(self, item: SimEvent | None) -> None:
        """Compute the kept merges (MergeBatch) unless ``item`` cannot observe them: an
        event of the same instant for a peer with no kept merge. Flushing can queue
        events of this instant (the MergeDone follow-ups), so it repeats until stable."""
        batch = self.merge_batch
        while batch is not None and len(batch):
            if (item is not None and item.time == self.net.clock.now()
                    and item.kind != "timeline" and not (
                        0 <= item.target < len(self.executors)
                        and batch.holds(self.executors[item.target]))):
                return
            batch.flush()
            item = self.net.peek()

    def _deliver(self, item: SimEvent, now: float) -> None:
        """A deliver event (one broadcast, SimNetwork) to each target in send order, as
        separate events would be: a removed target gets nothing, and kept merges are
        flushed before a target that holds one (what the run loop does per event)."""
        for k, dst in enumerate(item.payload[2]):
            if k:
                self._flush_merges_before(tuple.__new__(
                    SimEvent, (now, item.seq, "deliver", dst, None)))
            if dst in self.alive:
                self.hub.dispatch(item, dst)  # -> the endpoint -> self._on_receive

    def _on_receive(self, i: int, msg: Received) -> None:
        src = self.index_of[msg.sender]
        if self._link_up(src, i):
            self._feed(i, MessageReceived(msg.sender, msg.data, self.net.clock.now()))

    def _training_done(self, i: int, now: float) -> TrainingDone:
        if i not in self._trained:
            self._train_pending()
        base, vec = self._trained.pop(i)
        round_, _ = self._training.pop(i)
        return TrainingDone(round_, vec, self.num_samples[i], now, base=base)

    def _train_pending(self) -> None:
        """Train every peer whose training is pending, batched by (round, momentum);
        a mixing step (``local_steps == 0``) hands back the current model."""
        pending = sorted(p for p in self._training if p not in self._trained)
        groups: dict[tuple[int, float | None], list[int]] = {}
        for p in pending:
            r, hints = self._training[p]
            if hints.local_steps == 0:
                vec = self.params[p].numpy()
                self._trained[p] = (vec.copy(), vec.copy())
                continue
            groups.setdefault((r, hints.polyak_beta), []).append(p)
        block = block_rows(self.d)  # heap-sized outputs, reused round after round
        for (r, beta), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[1])):
            for k in range(0, len(group), block):
                self._train_block(r, beta, group[k:k + block])

    def _train_block(self, r: int, beta: float | None, rows: list[int]) -> None:
        """Train ``rows`` (one round, one momentum setting) in one trainer call."""
        sel = torch.tensor(rows, dtype=torch.int64)
        # the model before training: only an adversary reads it (TrainingDone.base)
        crafting = [k for k, p in enumerate(rows) if self.peers[p].adversary is not None]
        base = {k: self.params[rows[k]].numpy().copy() for k in crafting}
        out = self.trainer.train(
            self.params, self.indices, seed=self.config.seed, round=r, rows=rows,
            label_maps=self._label_maps or None,
            momentum_state=self.momentum_state if beta is not None else None,
            polyak_beta=beta,
        )
        self.params[sel] = out
        # out is the trainer's new tensor and nobody writes into it: its rows are
        # the peers' trained models (TrainingDone.vector), shared, not copied
        for k, p in enumerate(rows):
            self._trained[p] = (base.get(k), out[k].numpy())

    def _plant_backdoor(self, spec: AttackSpec, attackers: list[int],
                        rng: np.random.Generator) -> None:
        """Append triggered, relabelled copies of a fraction of each attacker's samples
        to the (simulation-private) training set and point the attacker at them."""
        ds = self.dataset
        size = trigger_size(spec, ds.input_shape[-1])
        target = int(spec.get("target", 0))
        frac = spec.get("fraction", 0.5)
        xs, ys = [ds.x_train], [ds.y_train]
        total = ds.num_train
        for p in attackers:
            own = self.indices[p]
            if len(own) == 0:
                continue
            k = max(1, round(frac * len(own)))
            pick = np.sort(rng.choice(own, size=k, replace=False))
            sel = torch.from_numpy(pick)
            xs.append(add_trigger(ds.x_train[sel], size))
            ys.append(torch.full((k,), target, dtype=torch.int64))
            new = np.arange(total, total + k, dtype=np.int64)
            total += k
            self.indices[p] = np.concatenate([np.setdiff1d(own, pick), new])
        self.dataset = dataclasses.replace(ds, x_train=torch.cat(xs), y_train=torch.cat(ys))
        self._backdoor = (size, target)

    def attack_success(self) -> float | None:
        """Label flip: fraction of honest predictions on source-class test samples that
        land on the target class (SybilWall's attack success rate). Backdoor: fraction of
        triggered test samples of other classes classified as the target. Else None."""
        if self.attack is not None and self._backdoor is not None:
            size, target = self._backdoor
            mask = self.dataset.y_test != target
            x = add_trigger(self.dataset.x_test[mask], size)
            rows = [p for p in self.honest if p in self.alive]
            pred = self.trainer.predict(self.params[rows], x)
            return float((pred == target).float().mean())
        if self.attack is None or self.attack.name != "label-flip":
            return None
        src, dst = flip_target(self.attack, self.dataset.num_classes)
        mask = self.dataset.y_test == src
        rows = [p for p in self.honest if p in self.alive]
        pred = self.trainer.predict(self.params[rows], self.dataset.x_test[mask])
        return float((pred == dst).float().mean())

    def _record_modest(self, i: int, round_: int, merge: Merge) -> None:
        """Peer i aggregated ``round_``: the first aggregation of a round is measured
        (an observer's metric; no peer reads it)."""
        if any(r["round"] == round_ + 1 for r in self.modest_rounds[-8:]) or (
                self.metrics and self.metrics[-1].round > round_ + 1):
            return
        acc = float(self.trainer.evaluate(self.params[i][None], self.x_eval, self.y_eval)[0])
        peer = self.peers[i]
        assert isinstance(peer, ModestPeer)
        alive = len(self._alive_learners)
        self.modest_rounds.append({
            "round": round_ + 1, "time": round(self.net.clock.now(), 6), "acc": acc,
            "trainers": len(merge.updates), "alive": alive, "view": len(peer.active()),
            "aggregator": i})
        m = RoundMetrics(
            round=round_ + 1, time=round(self.net.clock.now(), 6), acc_mean=acc,
            acc_min=acc, acc_max=acc, acc_std=0.0, consensus_distance=0.0,
            messages=self._round_msgs.pop(round_, 0),
            bytes_sent=self._round_bytes.pop(round_, 0),
            rejects=sum(self.reject_counts().values()),
            timeouts=sum(p.timeouts for p in self.peers), peers_alive=alive)
        self.metrics.append(m)
        if self._on_round is not None:
            self._on_round(m)

    def _record(self, i: int, round_: int, skipped: range = range(0)) -> None:
        """Peer i merged ``round_`` (and, catching up, skipped the rounds ``skipped``)."""
        if i >= self.config.peers:
            return
        if round_ > self._emitted:
            stats = self._snapshots.get(round_)
            if stats is None:
                stats = self._snapshots[round_] = RoundStats(
                    self.d, self._eval_set, keep_all=bool(self.config.timeline)
                    or not self.fast)
            stats.add(i, self.params[i], i in self.byzantine)
        for r in skipped:
            if r > self._emitted:
                self._skipped.setdefault(r, set()).add(i)
        self._complete_rounds()

    def _complete_rounds(self) -> None:
        """Emit metrics for every pending round, in order, once every live learner has
        merged it or skipped it (caught up past it)."""
        for r in sorted(self._snapshots):
            snap = self._snapshots[r]
            skipped = self._skipped.get(r, set())
            need = len(self._alive_learners) - len(skipped & self._alive_learners)
            if len(snap) < need:  # cheap test first: O(P) checks only when full
                return
            if not (self._alive_learners - skipped) <= snap.members.keys():
                return
            del self._snapshots[r]
            self._skipped.pop(r, None)
            self._emitted = r
            for p in [p for p in snap.members if p not in self.alive]:
                snap.remove(p)
            if len(snap):
                self._finish_round(r, snap)

    # ------------------------------------------------------------- timeline
    def _link_up(self, a: int, b: int) -> bool:
        return self._graph_now is None or self._graph_now.has_edge(a, b)

    def _apply_timeline(self, ev: TimelineEvent, now: float) -> None:
        """Apply one failure/churn event: who is alive and which links work change."""
        self._applied.append(ev)
        g_now = apply_events(self.graph, self._applied)
        self._graph_now = g_now
        before = set(self.alive)
        self.alive = {p for p in range(self.total) if p in g_now}
        self._alive_learners = {p for p in self.alive if p < self.config.peers}
        for p in sorted(before - self.alive):
            self._training.pop(p, None)
            self._trained.pop(p, None)
            self._tick_at.pop(p, None)
        self.events.append({"t": now, "peer": -1, "event": type(ev).__name__,
                            "alive": len(self.alive),
                            "components": nx.number_connected_components(g_now)
                            if len(g_now) else 0})
        joined = sorted(self.alive - before)
        for p in sorted(self.alive):
            peer = self.peers[p]
            want = {self.ids[q].peer_id for q in g_now.neighbors(p)}
            have = set(peer.neighbours) if p not in joined else set()
            for q in sorted(have - want):
                self._feed(p, PeerLost(q, now))
            if p in joined:
                continue
            for q in sorted(want - have):
                self._feed(p, PeerDiscovered(q, now))
        for p in joined:
            # A (re)joining peer restarts from what it had (its data dir: model and
            # round) and catches up through the protocol (PULL -> STATE from its
            # neighbours), not from a global view of the swarm.
            old = self.peers[p]
            self._incarnation[p] = self._incarnation.get(p, 0) + 1
            self.peers[p] = self._make_peer(p)
            self.executors[p] = CommandExecutor(self.peers[p], _SimBackend(self, p),
                                                self.merge_batch)
            self._rejoined_at[p] = old.round
            for q in sorted(g_now.neighbors(p)):
                self._feed(p, PeerDiscovered(self.ids[q].peer_id, now))
            self._feed(p, Start(now, old.round, old._seq + 1))
        self._complete_rounds()

    def _finish_round(self, round_: int, snap: RoundStats) -> None:
        group, cons = snap.group()
        members = set(group)
        chosen = [i for i in self.eval_rows if i in members]
        kept = [i for i in group if i in snap.rows]
        if chosen or kept:  # kept: no evaluated peer merged this round
            ids = chosen or kept
            sel = torch.stack([snap.rows[i] for i in ids])
        else:  # nor any kept row: these peers' models now
            ids = group[: max(1, len(self.eval_rows))]
            sel = self.params[ids]
        acc = self.trainer.evaluate(sel, self.x_eval, self.y_eval)
        self.peer_accuracy = {i: float(a) for i, a in zip(ids, acc, strict=True)}
        m = RoundMetrics(
            round=round_ + 1,
            time=round(self.net.clock.now(), 6),
            acc_mean=float(np.mean(acc)),
            acc_min=float(np.min(acc)),
            acc_max=float(np.max(acc)),
            acc_std=float(np.std(acc)),
            consensus_distance=cons,
            messages=self._round_msgs.pop(round_, 0),
            bytes_sent=self._round_bytes.pop(round_, 0),
            rejects=sum(self.reject_counts().values()),
            timeouts=sum(p.timeouts for p in self.peers),
            peers_alive=len(group),
        )
        self.metrics.append(m)
        # over the evaluated models (every honest peer up to EVAL_SAMPLE, else the
        # seeded sample: no model copy per peer is kept for the whole swarm)
        self.layer_variances += layer_variance(m.round, sel.numpy(), self.layout)
        if self._on_round is not None:
            self._on_round(m)


class _SimBackend:
    """How the simulator carries out one peer's commands (see CommandExecutor)."""

    def __init__(self, sim: Simulation, i: int) -> None:
        self.sim = sim
        self.i = i

    def now(self) -> float:
        return self.sim.net.clock.now()

    def own_model(self) -> Vector:
        return self.sim.params[self.i].numpy()

    def send(self, to: PeerId, data: bytes, round_: int) -> None:
        sim = self.sim
        sim._round_msgs[round_] = sim._round_msgs.get(round_, 0) + 1
        sim._round_bytes[round_] = sim._round_bytes.get(round_, 0) + len(data)
        try:
            sim.endpoints[self.i].send_nowait(to, data)
        except TransportError as exc:
            self.log("send_failed", {"to": to, "error": str(exc)})

    def start_training(self, round_: int, hints: TrainingHints) -> None:
        sim, i = self.sim, self.i
        sim._training[i] = (round_, hints)
        sim._trained.pop(i, None)
        token = (sim._incarnation.get(i, 0), round_)
        delay = 0.0 if hints.local_steps == 0 else sim.config.train_time  # a mixing step
        sim.net.schedule(self.now() + delay, "trained", i, token)

    def adopt(self, round_: int, vector: Vector, merge: Merge | None) -> None:
        sim, i = self.sim, self.i
        np.copyto(sim.params[i].numpy(), np.asarray(vector), casting="same_kind")
        if sim.modest:
            if merge is not None:
                sim._record_modest(i, round_, merge)
            return
        skipped = range(0)
        if merge is not None and merge.catch_up_to is not None:
            skipped = range(round_ + 1, merge.catch_up_to)
            sim._training.pop(i, None)
            sim._trained.pop(i, None)
        sim._record(i, round_, skipped)

    def finished(self, round_: int) -> None:
        self.sim.finished.add(self.i)

    def log(self, event: str, fields: dict[str, Any]) -> None:
        self.sim.events.append({"t": self.now(), "peer": self.i, "event": event, **fields})

    def wake_at(self, deadline: float | None) -> None:
        sim, i = self.sim, self.i
        if deadline is not None and sim._tick_at.get(i) != deadline:
            sim._tick_at[i] = deadline
            sim.net.schedule(deadline, "tick", i)


def run_simulation(
    config: SimulationConfig, on_round: RoundCallback | None = None
) -> tuple[Simulation, list[RoundMetrics], float]:
    """Build and run; returns the simulation, its metrics and the wall time taken."""
    t0 = _time.perf_counter()
    sim = Simulation(config)
    rows = sim.run(on_round)
    return sim, rows, _time.perf_counter() - t0
