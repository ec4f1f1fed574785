"""A scenario file on a real loopback mesh (``rumor experiment --mode real``).

The same Scenario the simulator runs, with real processes and real faults:

- **Topology imposed.** Peer i has the simulator's identity ``peer_identity(seed, i)``
  (written to DATA_DIR/identity.key, 0600, before anything starts), so the scenario's
  graph maps onto PeerIDs up front. Every peer still finds the others through the DHT
  and checks every signature, but runs behind a FilteredTransport that lets through
  only its graph neighbours.
- **One peer per process**, so that a removal can be a SIGKILL of that peer alone.
- **Timeline events become faults**, fired when the live peers' median finished round
  reaches the event's round (virtual seconds -> round with the nominal round period
  ``train_time + latency``, as rumor.node.scenario converts ``at_round``). A restart
  takes seconds (a process, a host, DHT discovery): the next event waits until the
  restarted peers are up (at most RESTART_WAIT s), and the events after it are
  delayed by as many rounds as it fired late, so the timeline keeps its spacing:

  ============  ==============================================================
  RemovePeers   SIGKILL of the peer's process (churn and crash waves included)
  AddPeers      restart from its data dir (same PeerID, its checkpoint round),
                with the link blocks in force; it catches up through the
                protocol (PULL -> signed STATE from its neighbours), as in sim
  Partition     ``block`` of every neighbour across the cut, on both sides
                (a later Partition replaces it)
  Heal          ``unblock`` of what the partition blocked
  RemoveLinks   ``block`` of both ends of each link, for good
  ============  ==============================================================

- Relay-only peers train on no data and the data holders share the split as in the
  simulator (same shards); the simulator's Byzantine peers run the scenario's attack
  (``NodeConfig.attack``) and are not evaluated.

Results are the launcher's (metrics.csv rows from the workers' round events,
summary.json, events.jsonl with the timeline events as ``"peer": -1`` records like the
simulator's). Every run has a wall-clock cap, and ends with no process left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import networkx as nx

from rumor.node.assembly import NodeConfig
from rumor.node.identity import KEY_FILE
from rumor.node.merging import FEDAVG
from rumor.node.mesh.launcher import Mesh, MeshConfig, MeshResult, Notice, PeerPlan, RowSink
from rumor.node.scenario import Scenario
from rumor.node.simulation import (
    SimulationConfig,
    byzantine_peers,
    peer_identity,
    relay_peers,
)
from rumor.node.threads import DEFAULT_THREADS
from rumor.protocols.errors import ConfigError
from rumor.protocols.identity import Identity
from rumor.topology import (
    AddPeers,
    Heal,
    Partition,
    RemoveLinks,
    RemovePeers,
    TimelineEvent,
    apply_events,
    build_topology,
)

__all__ = [
    "RealExperiment",
    "RealOptions",
    "default_wall_cap",
    "event_round",
    "save_identity",
]


RESTART_WAIT = 60.0  # seconds the next timeline event waits for restarted peers


def nominal_period(cfg: SimulationConfig) -> float:
    """Virtual seconds per round, as the scenario loader converts ``at_round``."""
    return cfg.train_time + cfg.latency


def event_round(ev: TimelineEvent, period: float) -> int:
    """The round an event fires at: once the live peers' median finished round is >= it
    (an event at virtual time t lands while round floor(t / period) runs)."""
    return max(0, math.floor(ev.at / period + 1e-9))


def default_wall_cap(cfg: SimulationConfig) -> float:
    """Seconds: start-up (torch imports, DHT) plus a generous bound per round."""
    return 120.0 + 5.0 * cfg.peers + cfg.protocol_rounds * max(10.0, 2.0 * cfg.round_timeout)


def save_identity(data_dir: Path, identity: Identity) -> None:
    """Write DATA_DIR/identity.key (0600, atomically) as rumor.node.identity reads it;
    an existing key must be the same identity."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KEY_FILE
    text = identity.seed_bytes().hex()
    if path.exists():
        if path.read_text().strip() != text:
            raise ConfigError(f"{path} holds another identity than the scenario's peer; "
                              "use a fresh base dir")
        return
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class RealOptions:
    out: Path
    wall_cap: float | None = None  # default: default_wall_cap(scenario)
    base: Path | None = None  # data dirs; default a temporary dir
    keep: bool = False
    swarm: str | None = None  # default: unique per run
    ready_timeout: float | None = None  # default 120 + 5 N
    verbose: bool = False
    threads: int = DEFAULT_THREADS  # torch threads of each peer process
    worker_module: str = "rumor.scripts.worker"
    zygote: bool = True  # fork the peer processes from one warm process (MeshConfig.zygote)


_NODE_FIELDS = {f.name for f in fields(NodeConfig)}
# SimulationConfig settings a real peer does not have (yet); reported, not silently lost.
_SIM_ONLY = {
    "momentum": 0.0, "init": "independent", "loss": 0.0, "sign": False,
    "eval_peers": None, "test_subset": None, "polyak_beta": None,
}


def node_config_for(cfg: SimulationConfig, swarm: str, holders: int) -> NodeConfig:
    """The NodeConfig every peer of the scenario shares (shard set per peer)."""
    values: dict[str, Any] = {
        "swarm": swarm, "model": cfg.model, "dataset": cfg.dataset,
        "dataset_dir": cfg.data_dir, "split": cfg.split, "shard": 0,
        "shards": max(1, holders), "seed": cfg.seed, "aggregator": cfg.aggregator,
        "f": cfg.f, "lr": cfg.lr, "batch_size": cfg.batch_size,
        "local_epochs": cfg.local_epochs, "rounds": cfg.rounds,
        "round_timeout": cfg.round_timeout, "min_updates": cfg.min_updates,
        "fanout": cfg.fanout,
        "topology_imposed": True,  # min_updates / fanout None: all graph neighbours
        "polyak_beta": cfg.polyak_beta,
        "schedule": cfg.schedule, "gossip_steps": cfg.gossip_steps,
        "final_merge": cfg.final_merge, "optimizer": cfg.optimizer,
        "compress": cfg.compress,
    }
    if cfg.rule_params and "rule_params" in _NODE_FIELDS:
        values["rule_params"] = dict(cfg.rule_params)
    return NodeConfig(**{k: v for k, v in values.items() if k in _NODE_FIELDS})


def unsupported_settings(cfg: SimulationConfig) -> list[str]:
    """Settings of the scenario that real mode runs differently (reported)."""
    out = [f"{k}={getattr(cfg, k)!r}" for k, default in _SIM_ONLY.items()
           if getattr(cfg, k) != default and k not in _NODE_FIELDS]
    if cfg.rule_params and "rule_params" not in _NODE_FIELDS:
        out.append(f"rule_params={cfg.rule_params!r}")
    if cfg.effective_polyak_beta() is not None and "polyak_beta" not in _NODE_FIELDS:
        out.append("polyak momentum (monna)")
    return out


class RealExperiment:
    """One scenario on a loopback mesh; ``await run()`` returns the launcher's result."""

    def __init__(self, scenario: Scenario, options: RealOptions, *,
                 on_notice: Notice | None = None, on_row: RowSink | None = None) -> None:
        self.scenario = scenario
        self.options = options
        self.cfg = cfg = scenario.config
        n = cfg.peers
        if cfg.aggregator == FEDAVG:
            raise ConfigError(f"{scenario.name}: fedavg needs a server; real mode runs "
                              "gossip rules only")
        if cfg.sybils:
            raise ConfigError(f"{scenario.name}: Sybils are simulator-only for now")
        if cfg.byzantine and "attack" not in _NODE_FIELDS:
            raise ConfigError(f"{scenario.name}: Byzantine peers need NodeConfig.attack, "
                              "which this build does not have yet")
        for ev in cfg.timeline:
            peers: tuple[int, ...] = ev.peers if isinstance(ev, RemovePeers | AddPeers) else ()
            new_links = isinstance(ev, AddPeers) and bool(ev.edges)
            if any(not 0 <= p < n for p in peers) or new_links:
                raise ConfigError(f"{scenario.name}: real mode runs the scenario's own "
                                  f"peers only (event {ev!r})")
        self.graph: nx.Graph = build_topology(cfg.topology, n, cfg.seed)
        self.identities = [peer_identity(cfg.seed, i) for i in range(n)]
        self.pid = [x.peer_id for x in self.identities]
        self.relays = relay_peers(n, cfg.relay_fraction, cfg.seed)
        holders = [i for i in range(n) if i not in self.relays]
        shard_of = {h: k for k, h in enumerate(holders)}
        self.byzantine = (byzantine_peers(cfg, self.graph) if cfg.attack and cfg.byzantine
                          else set())
        self.neighbours = {i: sorted(int(j) for j in self.graph.neighbors(i)) for i in range(n)}
        plans = tuple(
            PeerPlan(
                i,
                shard=shard_of.get(i, 0),
                node_overrides={"attack": cfg.attack} if i in self.byzantine else {},
                allowed=tuple(self.pid[j] for j in self.neighbours[i]),
                relay=i in self.relays,
            )
            for i in range(n)
        )
        swarm = options.swarm or f"rumor-exp-{scenario.name}-{os.getpid()}"
        self.period = nominal_period(cfg)
        self.wall_cap = options.wall_cap or default_wall_cap(cfg)
        self.mesh = Mesh(
            MeshConfig(
                node=node_config_for(cfg, swarm, len(holders)),
                peers=n,
                out=options.out,
                worker_module=options.worker_module,
                zygote=options.zygote,
                base=options.base,
                keep=options.keep,
                per_process=1,
                rounds=cfg.protocol_rounds,
                ready_timeout=options.ready_timeout or 120.0 + 5.0 * n,
                ready_neighbours=tuple(len(self.neighbours[i]) for i in range(n)),
                wall_cap=self.wall_cap,
                verbose=options.verbose,
                threads=options.threads,
                spares=min(2, sum(isinstance(ev, AddPeers) for ev in cfg.timeline)),
                plans=plans,
                excluded=frozenset(self.byzantine),
                mode="experiment-real",
            ),
            on_notice=on_notice,
            on_row=on_row,
        )
        self.notice: Notice = on_notice or (lambda level, text: None)
        self.present: set[int] = set(range(n))
        self.link_blocks: dict[int, set[int]] = {i: set() for i in range(n)}
        self.partition_blocks: dict[int, set[int]] = {i: set() for i in range(n)}
        self.applied: list[TimelineEvent] = []
        self.fired: list[dict[str, Any]] = []
        self.restarts: dict[int, float] = {}  # peer -> when its restart began
        self.delay = 0  # rounds the timeline runs late (it waited for restarts)
        self._woken = asyncio.Event()

    # ------------------------------------------------------------------ run
    async def run(self, on_tick: Callable[[], None] | None = None) -> MeshResult:
        for i, ident in enumerate(self.identities):
            save_identity(self.mesh.peer_dir(i), ident)
        self.mesh.listeners.append(self._woken.set)
        self.mesh.summary_extra = self._summary_extra
        return await self.mesh.run(on_tick=on_tick, after_go=self._drive)

    def _summary_extra(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "scenario": self.scenario.name,
            "description": self.scenario.description,
            "mode": "real",
            "simulation_config": {k: v for k, v in
                                  ((f.name, getattr(cfg, f.name)) for f in fields(cfg))
                                  if k != "timeline"},
            "timeline_events": len(cfg.timeline),
            "timeline_fired": list(self.fired),
            "byzantine": sorted(self.byzantine),
            "relays": sorted(self.relays),
            "attack_success": None,
            "wall_cap": self.wall_cap,
            "round_period": self.period,
            "not_in_real_mode": unsupported_settings(cfg),
            "final_peers_alive": (self.mesh.metrics.rows[-1].peers_alive
                                  if self.mesh.metrics.rows else 0),
        }

    def median_round(self) -> int | None:
        rounds = self.mesh.alive_rounds()
        return int(statistics.median_low(rounds)) if rounds else None

    async def _drive(self, mesh: Mesh) -> None:
        """Fire the timeline in order as the median round passes each event's round;
        then watch for the end (every live peer finished, or no peer left)."""
        pending = [(event_round(ev, self.period), ev) for ev in self.cfg.timeline]
        while not mesh.stop_event.is_set():
            median = self.median_round()
            due = pending and (median is None or median >= pending[0][0] + self.delay)
            if due and not self._restarting():
                threshold, ev = pending.pop(0)
                if median is not None:  # fired late (waiting for a restart): the later
                    self.delay = max(self.delay, median - threshold)  # events keep spacing
                await self.apply(ev, threshold, median)
                continue
            self._check_end()
            self._woken.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), 1.0)

    def _restarting(self) -> bool:
        """Peers restarted by an AddPeers that are not up yet (bounded wait): the next
        event waits for them, as a rejoin in the simulator is complete at once."""
        now = time.monotonic()
        waiting = {p: t for p, t in self.restarts.items()
                   if p in self.present and not self.mesh.peers[p].ready
                   and now - t < RESTART_WAIT}
        self.restarts = waiting
        return bool(waiting)

    def _check_end(self) -> None:
        peers = [p for p in self.mesh.peers if p.alive]
        if not peers and not any(isinstance(e, AddPeers) for e in self._future()):
            self.mesh.request_stop("all_removed")
        elif peers and all(p.finished for p in peers):
            self.mesh.request_stop("done")

    def _future(self) -> list[TimelineEvent]:
        return list(self.cfg.timeline[len(self.applied):])

    # ------------------------------------------------------------------ faults
    def _block(self, i: int, peers: set[int], block: bool) -> None:
        if peers:
            self.mesh.send_command(i, {"cmd": "block" if block else "unblock",
                                       "peers": [self.pid[j] for j in sorted(peers)]})

    def blocked_now(self, i: int) -> set[int]:
        return self.link_blocks[i] | self.partition_blocks[i]

    def _set_partition(self, groups: tuple[tuple[int, ...], ...] | None) -> None:
        rest = len(groups) if groups is not None else 0
        group_of = {p: g for g, members in enumerate(groups or ()) for p in members}
        for i in range(self.cfg.peers):
            new = set() if groups is None else {
                j for j in self.neighbours[i] if group_of.get(j, rest) != group_of.get(i, rest)
            }
            old = self.partition_blocks[i]
            self.partition_blocks[i] = new
            self._block(i, new - old, True)
            self._block(i, (old - new) - self.link_blocks[i], False)

    async def apply(self, ev: TimelineEvent, threshold: int, median: int | None) -> None:
        """Turn one timeline event into real faults now."""
        self.applied.append(ev)
        mesh = self.mesh
        if isinstance(ev, RemovePeers):
            for p in ev.peers:
                if p in self.present:
                    self.present.discard(p)
                    mesh.kill_peer(p)
        elif isinstance(ev, AddPeers):
            for p in ev.peers:
                if p not in self.present:
                    self.present.add(p)
                    blocked = tuple(self.pid[j] for j in sorted(self.blocked_now(p)))
                    # its checkpoint's round; it catches up via PULL/STATE itself
                    await mesh.restart_peer(p, blocked=blocked)
                    self.restarts[p] = time.monotonic()
        elif isinstance(ev, RemoveLinks):
            for u, v in ev.edges:
                self.link_blocks[u].add(v)
                self.link_blocks[v].add(u)
                self._block(u, {v}, True)
                self._block(v, {u}, True)
        elif isinstance(ev, Partition):
            self._set_partition(ev.groups)
        elif isinstance(ev, Heal):
            self._set_partition(None)
        g_now = apply_events(self.graph, self.applied)
        record = {
            "peer": -1,
            "event": type(ev).__name__,
            "at": ev.at,
            "at_round": threshold,
            "median_round": median,
            "alive": len(self.present),
            "components": nx.number_connected_components(g_now) if len(g_now) else 0,
            "peers": list(getattr(ev, "peers", ())),
        }
        if isinstance(ev, Partition):
            record["groups"] = [list(g) for g in ev.groups]
        self.fired.append({k: v for k, v in record.items() if k != "peer"})
        mesh.log_event(record)
        self.notice("info", f"{type(ev).__name__} at round {threshold} (median round "
                    f"{median}): {len(self.present)} peers present")
