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

from rumor.node.checkpoint import load_checkpoint
from rumor.node.data import Dataset, load_dataset, split_indices
from rumor.node.learner import Learner, LearnerConfig
from rumor.node.merging import FEDAVG, resolve_rule
from rumor.node.models import init_params
from rumor.node.runtime import EventSink, NodeRuntime
from rumor.node.transport.base import Transport
from rumor.protocols.errors import AggregationError, ConfigError
from rumor.protocols.identity import Identity
from rumor.protocols.peer import Peer, PeerConfig
from rumor.protocols.validation import ValidationConfig


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
    round_timeout: float = 10.0
    min_updates: int | None = None
    fanout: int | None = None
    max_lag: int = 5  # accept updates up to this many rounds old (peers run async)

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
    learner = Learner(
        LearnerConfig(
            model=config.model,
            aggregator=config.aggregator,
            lr=config.lr,
            batch_size=config.batch_size,
            local_epochs=config.local_epochs,
            f=config.f,
            seed=peer_seed,
        ),
        dataset,
        indices,
        params,
    )
    peer = Peer(
        identity,
        PeerConfig(
            validation=ValidationConfig(
                swarm=config.swarm, shape=(learner.dimension,), max_lag=config.max_lag
            ),
            rounds=config.rounds,
            round_timeout=config.round_timeout,
            min_updates=config.min_updates,
            fanout=config.fanout,
            sign=True,
            adopt_senders=True,
            seed=peer_seed,
        ),
    )
    runtime = NodeRuntime(peer, transport, learner, data_dir=data_dir, on_event=on_event)
    return runtime, start_round
