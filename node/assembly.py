"""Assemble a real peer (Peer + Learner + Transport + runtime) from one NodeConfig.

Used by ``rumor join``, by the processes ``rumor launch`` starts, and by the loopback
tests, so they all build peers the same way. Resumes from DATA_DIR/checkpoint.npz
when one exists (same identity, next round).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rumor.aggregation.compression import parse_spec
from rumor.node.attacks import parse_attack
from rumor.node.checkpoint import load_checkpoint
from rumor.node.data import Dataset, load_dataset, split_indices
from rumor.node.engine import build_peer, data_label_map, needs_evaluator
from rumor.node.learner import Learner, LearnerConfig
from rumor.node.merging import FEDAVG, resolve_rule
from rumor.node.models import init_params
from rumor.node.optimizers import parse_optimizer
from rumor.node.runtime import EventSink, NodeRuntime
from rumor.node.transport.base import Transport
from rumor.protocols.config import ProtocolConfig, for_runtime
from rumor.protocols.errors import AggregationError, ConfigError
from rumor.protocols.identity import Identity


@dataclass(frozen=True)
class NodeConfig:
    """Everything a real peer needs besides its identity and transport."""

    swarm: str = "rumor"
    model: str = "mlp"
    dataset: str = "digits"
    dataset_dir: str | None = None
    split: str = "iid"
    shard: int | None = None  # which part of the split this peer trains on
    shards: int = 16  # into how many parts the training set is split
    seed: int = 1
    aggregator: str = "variance-corrected"
    f: int = 0
    lr: float = 0.1
    batch_size: int = 8
    local_epochs: int = 1
    rounds: int | None = None
    round_timeout: float = ProtocolConfig.round_timeout
    min_updates: int | None = None  # None: the "real" runtime difference (2)
    fanout: int | None = None  # None: the "real" runtime difference (8)
    max_lag: int = ProtocolConfig.max_lag
    attack: str | None = None  # this peer is Byzantine: an attack spec ("alie", ...)
    holds_data: bool = True  # False: a relay-only peer (trains on nothing)
    topology_imposed: bool = False  # the neighbours are a scenario's graph (real mode)
    polyak_beta: float | None = None  # None: 0.99 for monna, else plain SGD
    schedule: str = "constant"  # the round plan (rumor.protocols.schedule)
    gossip_steps: int = 1
    final_merge: int = 0
    optimizer: str = "sgd"  # sgd | sam[:rho=R] (rumor.node.optimizers)
    compress: str | None = None  # compressed gossip spec (rumor.aggregation.compression)

    def protocol(self) -> ProtocolConfig:
        """This peer's ProtocolConfig: the one set of defaults, the real mesh's named
        differences applied where this config leaves a field unset."""
        explicit = frozenset(k for k in ("min_updates", "fanout")
                             if getattr(self, k) is not None)
        base = ProtocolConfig(
            swarm=self.swarm, aggregator=self.aggregator, f=self.f, rounds=self.rounds,
            round_timeout=self.round_timeout, min_updates=self.min_updates,
            fanout=self.fanout, max_lag=self.max_lag, attack=self.attack,
            polyak_beta=self.polyak_beta, sign=True, schedule=self.schedule,
            gossip_steps=self.gossip_steps, final_merge=self.final_merge,
            compress=self.compress,
        )
        return for_runtime(base, "real-topology" if self.topology_imposed else "real",
                           explicit)

    def validate(self) -> None:
        if self.aggregator == FEDAVG:
            raise ConfigError("fedavg needs a server; on a real mesh use a gossip rule")
        if self.shards < 1 or (self.shard is not None and not 0 <= self.shard < self.shards):
            raise ConfigError(f"--shard must be in [0, {self.shards})")
        if self.round_timeout <= 0:
            raise ConfigError("--round-timeout must be positive")
        try:
            resolve_rule(self.aggregator)
        except AggregationError as exc:
            raise ConfigError(str(exc)) from None
        if self.attack is not None:
            parse_attack(self.attack)
        parse_optimizer(self.optimizer)
        self.protocol().plan()  # ConfigError on a bad schedule, or one that needs --rounds
        parse_spec(self.compress)


@functools.lru_cache(maxsize=4)
def _shared_dataset(name: str, data_dir: str | None) -> Dataset:
    """One copy of a dataset per process: peers hosted together share it read-only."""
    return load_dataset(name, data_dir)


def shard_for(peer_id: str, shards: int) -> int:
    """A peer's default data shard: a stable hash of its PeerID."""
    return int.from_bytes(hashlib.sha256(peer_id.encode()).digest()[:8], "big") % shards


def build_runtime(
    config: NodeConfig,
    identity: Identity,
    transport: Transport,
    *,
    data_dir: Path | None,
    on_event: EventSink | None = None,
) -> tuple[NodeRuntime, int]:
    """The runtime and the round to start from (0, or the checkpoint's next round)."""
    config.validate()
    dataset = _shared_dataset(config.dataset, config.dataset_dir)
    shard = config.shard if config.shard is not None else shard_for(identity.peer_id, config.shards)
    parts = split_indices(dataset.y_train.numpy(), config.shards, config.split, config.seed)
    indices = np.asarray(parts[shard], dtype=np.int64)
    peer_seed = int.from_bytes(hashlib.sha256(identity.peer_id.encode()).digest()[:4], "big")
    params = init_params(config.model, dataset.input_shape, dataset.num_classes, peer_seed)
    start_round = 0
    if data_dir is not None:  # a damaged or foreign checkpoint: the previous one, or round 0
        loaded = load_checkpoint(data_dir, model=config.model, dimension=int(params.shape[0]))
        for warning in loaded.warnings:
            if on_event is not None:
                on_event({"event": "checkpoint_warning", "detail": warning})
        if loaded.checkpoint is not None:
            params = torch.from_numpy(loaded.checkpoint.params)
            start_round = loaded.checkpoint.round
    proto = config.protocol()
    spec = parse_attack(config.attack) if config.attack else None
    if not config.holds_data:
        indices = np.zeros(0, dtype=np.int64)
    learner = Learner(
        LearnerConfig(
            model=config.model,
            aggregator=config.aggregator,
            lr=config.lr,
            batch_size=config.batch_size,
            local_epochs=config.local_epochs,
            f=config.f,
            seed=peer_seed,
            label_map=data_label_map(spec, dataset.num_classes),
            optimizer=config.optimizer,
        ),
        dataset,
        indices,
        params,
    )
    peer = build_peer(identity, proto, dimension=learner.dimension,
                      layout=learner.trainer.layout, seed=peer_seed,
                      view=(proto.min_updates or 8) + 1,
                      evaluator=learner.evaluator() if needs_evaluator(proto.aggregator)
                      else None)
    runtime = NodeRuntime(peer, transport, learner, data_dir=data_dir, on_event=on_event)
    return runtime, start_round
