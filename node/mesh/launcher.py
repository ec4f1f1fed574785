"""N real peers on this machine: a DHT bootstrap node and worker processes on loopback.

The launcher process runs a pure DHT bootstrap node (a Libp2pTransport with
``announce=False``: it serves the Kademlia DHT and joins no swarm) and starts the peers
as worker processes (K peers per process; the JSON-lines protocol is described in
rumor.scripts.worker). By default they are forked from a zygote (rumor.node.mesh.zygote:
one process that imported and prepared the worker module once), so they share torch &
co. copy-on-write; with ``zygote=False``, or where the zygote cannot start, each is a
plain ``python -m <worker_module>``. Every peer knows only the bootstrap's
address and finds the others through DHT provider records. Workers are in their own
process group and exit on their own when their stdin closes, so no process outlives
the launcher, even after a ``kill -9`` of the launcher (the zygote exits when its
socket to the launcher closes); on any exit of ``Mesh.run`` (done, Ctrl-C, an
exception, cancellation) every worker's process group is killed.

Rounds start together: ``go`` is sent once every peer is up and has found
``min_neighbours`` neighbours (default ``min(2, N-1)``), or after the ready timeout.

Run files in ``out`` (the formats of ``rumor simulate``):

- metrics.csv: one row for round r once every live peer reported round r (accuracy
  mean/min/max/std over peers, consensus distance sqrt(mean_i ||x_i - x̄||²) over the
  peers' merged models, messages and bytes sent during the round, cumulative rejects
  and timeouts, peers alive). Peers in ``excluded`` (Byzantine) are not evaluated.
- summary.json: rumor.node.results.summary(...) plus peers, seed, per-process K, every
  peer's neighbour counts, the bootstrap address, the wall time and ``summary_extra()``.
- events.jsonl: every event of every peer (model vectors left out), with ``t`` (seconds
  since the launch started) and ``i`` (the peer's index), plus the launcher's own.
- peers.json: index, PeerID, listen addresses, API URL and data dir of every peer.
- layer_variance.csv: per round and tensor, the variance of each model's own weights and
  of the peers' copies (rumor.node.results.layer_variance over the same models as the
  consensus distance).
- models/peer-XX.safetensors: every peer's final model (its last checkpoint; weights
  only, see rumor.node.model_io), written at the end, also when the data dirs are
  temporary.
- launch.json while it runs: the launcher's pid and the time it started (``rumor stop``
  reads it); removed at the end.
- logs/worker-W.log: each worker's stderr (a restarted peer's worker: worker-W.rK.log);
  logs/zygote.log: the zygote's.

The Mesh never prints: it reports through ``on_notice(level, text)`` and
``on_row(RoundMetrics)`` and keeps its state (``peers``, ``metrics``) readable.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from rumor.aggregation.layout import Layout
from rumor.node.assembly import NodeConfig
from rumor.node.checkpoint import CHECKPOINT_FILE, CheckpointError, read_checkpoint
from rumor.node.identity import load_or_create_identity
from rumor.node.mesh.zygote import WorkerProcess, Zygote, ZygoteError
from rumor.node.model_io import layout_from_json, save_model
from rumor.node.results import (
    LayerVariance,
    RoundMetrics,
    final_merge_report,
    layer_variance,
    summary,
    write_json,
    write_layer_variance_csv,
    write_metrics_csv,
)
from rumor.node.threads import DEFAULT_THREADS
from rumor.node.transport.libp2p import Libp2pTransport
from rumor.protocols.errors import RumorError

__all__ = [
    "MAX_PER_PROCESS_AUTO",
    "Mesh",
    "MeshConfig",
    "MeshResult",
    "Metrics",
    "PeerPlan",
    "PeerView",
    "default_per_process",
]

MAX_PER_PROCESS_AUTO = 24  # 256 peers in 11 processes; ~0.47 GB of torch & co. a process
LINE_LIMIT = 256 << 20  # a round event carries the model vector (base64)
RELAY_ABOVE = 16  # peers; see Mesh.spawn_workers
BOOTSTRAP_PEERS = 8  # earlier peers each later peer bootstraps through (above RELAY_ABOVE)
TARGET_NEIGHBOURS = 12  # a launched peer dials new members while it has fewer live ones
SHUTDOWN_GRACE = 20.0

Notice = Callable[[str, str], None]  # (level: "info" | "warning" | "error", text)
RowSink = Callable[[RoundMetrics], None]


def default_per_process(peers: int, cpus: int | None = None) -> int:
    """K: one process per core (imports and training of a process share one GIL), but
    at most 24 peers a process (their hosts share its GIL: at 32 a process, discovery
    starved on a loaded 2-core box). 2 cores: 8 peers -> 2 x 4, 64 -> 3 x 24 (the last
    16), 256 -> 11 x 24. A process started on its own pays ~0.47 GB (torch, libp2p, the
    dataset, the first torch ops); one forked from the zygote (the default) ~65-80 MB of
    its own; a peer a few MB more (benchmarks/launch_scale.py, docs/launch.md)."""
    cores = cpus or os.cpu_count() or 2
    return max(1, min(MAX_PER_PROCESS_AUTO, math.ceil(peers / cores)))


@dataclass(frozen=True)
class PeerPlan:
    """How one peer is started (beyond the shared NodeConfig)."""

    index: int
    shard: int
    node_overrides: dict[str, Any] = field(default_factory=dict)
    allowed: tuple[str, ...] | None = None  # PeerIDs it may link to (None: everyone)
    relay: bool = False  # holds no training data


def balanced_relays(indices: Sequence[int], up: Sequence[int], handed: dict[int, int],
                    k: int, rng: random.Random) -> dict[int, list[int]]:
    """For each peer of ``indices``, the ``min(k, len(up))`` peers of ``up`` handed out
    least often so far (ties broken by ``rng``); ``handed`` counts the hand-outs and is
    updated. Over a launch every up peer is the entry point of about as many later
    peers as any other (within one), instead of the first ones serving everybody.
    """
    out: dict[int, list[int]] = {}
    take = min(k, len(up))
    for i in indices:
        order = sorted(up, key=lambda j: (handed.get(j, 0), rng.random()))
        out[i] = sorted(order[:take])
        for j in out[i]:
            handed[j] = handed.get(j, 0) + 1
    return out


@dataclass(frozen=True)
class MeshConfig:
    """A launch: the shared node config, how many peers, where things go."""

    node: NodeConfig
    peers: int
    out: Path
    worker_module: str = "rumor.scripts.worker"
    base: Path | None = None  # data dirs BASE/peer-XX; None: a temporary dir
    keep: bool = False  # keep the temporary base dir
    per_process: int | None = None
    rounds: int | None = None  # stop once metrics.csv has this many rows
    bootstrap_port: int = 0
    api_port_base: int = 0
    discovery_interval: float | None = None  # default max(5, N/8)
    ready_timeout: float | None = None  # default 60 + N
    min_neighbours: int | None = None  # before go; default min(2, N-1)
    ready_neighbours: tuple[int, ...] | None = None  # per peer, instead of min_neighbours
    wall_cap: float | None = None  # stop ("wall_cap") after this many seconds
    verbose: bool = False
    threads: int = DEFAULT_THREADS  # torch threads of each worker process
    spares: int = 0  # warm worker processes kept ready for restarts
    zygote: bool = True  # fork workers from one warm process (Mesh._process); False: exec
    plans: tuple[PeerPlan, ...] = ()  # default: peer i trains on shard i
    excluded: frozenset[int] = frozenset()  # not evaluated (Byzantine peers)
    mode: str = "launch"


@dataclass
class PeerView:
    index: int
    worker: int
    peer: str = ""
    api: str = ""
    addrs: list[str] = field(default_factory=list)
    data_dir: str = ""
    pid: int | None = None
    start_round: int = 0
    round: int = 0
    acc: float | None = None
    neighbours: int = 0
    received: int = 0
    rejects: int = 0
    timeouts: int = 0
    messages_sent: int = 0
    bytes_sent: int = 0
    ready: bool = False
    alive: bool = True  # not crashed or killed (a peer that finished is alive)
    finished: bool = False
    restarts: int = 0
    min_neighbours: int | None = None
    max_neighbours: int = 0
    neighbours_at_go: int = 0


@dataclass
class _Report:
    acc: float
    vector: np.ndarray | None
    messages_sent: int
    bytes_sent: int
    rejects: int
    timeouts: int


class Metrics:
    """Per-round rows from the peers' round events (a row once every live peer reported).

    A peer (re)started at round s is expected from round s+1 on; peers in ``excluded``
    are neither waited for nor evaluated, but their traffic is counted.
    """

    def __init__(self, peers: list[PeerView], excluded: frozenset[int] = frozenset()) -> None:
        self.peers = peers
        self.excluded = excluded
        self.rows: list[RoundMetrics] = []
        self.layout: Layout | None = None  # the model's tensors (from a ready event)
        self.variances: list[LayerVariance] = []
        self._reports: dict[int, dict[int, _Report]] = {}
        self._prev_sent: dict[int, tuple[int, int]] = {}
        self.next_round = 1
        self.t0 = time.monotonic()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.next_round = min((p.start_round for p in self.peers), default=0) + 1

    def restarted(self, i: int) -> None:
        """Peer i runs in a fresh process: its traffic counters start from 0 again."""
        self._prev_sent.pop(i, None)

    def add(self, i: int, e: dict[str, Any]) -> None:
        r = int(e["round"])
        if r < self.next_round:
            return  # that row is written already (a late or restarted peer)
        vec = None
        if "vector" in e:
            vec = np.frombuffer(base64.b64decode(e["vector"]), dtype="<f4")
        self._reports.setdefault(r, {})[i] = _Report(
            float(e["acc"]), vec, int(e["messages_sent"]), int(e["bytes_sent"]),
            int(e["rejects"]), int(e["timeouts"]),
        )

    def drain(self) -> list[RoundMetrics]:
        """Rows that became complete (in round order).

        Row r is complete once every live, evaluated peer started before r has reported
        round r or a later one (a peer that caught up by jumping rounds skips some); a
        round nobody evaluated reported is skipped.
        """
        new: list[RoundMetrics] = []
        while True:
            r = self.next_round
            live = [p for p in self.peers if p.alive and p.ready and p.start_round < r
                    and p.index not in self.excluded]
            if not live or any(p.round < r for p in live):
                return new
            got = self._reports.pop(r, {})
            self.next_round += 1
            honest = {i: g for i, g in got.items() if i not in self.excluded}
            if not honest:
                continue
            row = self._row(r, got, honest)
            self.rows.append(row)
            new.append(row)

    def _row(self, r: int, got: dict[int, _Report], honest: dict[int, _Report]) -> RoundMetrics:
        accs = np.array([g.acc for g in honest.values()], dtype=np.float64)
        vecs = [g.vector for g in honest.values() if g.vector is not None]
        if vecs and len({v.shape for v in vecs}) == 1:
            x = np.stack(vecs).astype(np.float64)
            cd = float(np.sqrt(np.mean(np.sum((x - x.mean(axis=0)) ** 2, axis=1))))
            if self.layout is not None:
                self.variances += layer_variance(r, x, self.layout)
        else:
            cd = float("nan")
        messages = bytes_sent = 0
        for i, g in got.items():
            pm, pb = self._prev_sent.get(i, (0, 0))
            messages += g.messages_sent - pm
            bytes_sent += g.bytes_sent - pb
            self._prev_sent[i] = (g.messages_sent, g.bytes_sent)
        return RoundMetrics(
            round=r,
            time=time.monotonic() - self.t0,
            acc_mean=float(accs.mean()),
            acc_min=float(accs.min()),
            acc_max=float(accs.max()),
            acc_std=float(accs.std()),
            consensus_distance=cd,
            messages=messages,
            bytes_sent=bytes_sent,
            rejects=sum(g.rejects for g in got.values()),
            timeouts=sum(g.timeouts for g in got.values()),
            peers_alive=sum(1 for p in self.peers if p.alive and p.index not in self.excluded),
        )


@dataclass
class Worker:
    index: int
    peers: list[int]
    proc: WorkerProcess
    log: IO[bytes]
    exited: bool = False
    expected_exit: bool = False
    reader: asyncio.Task[None] | None = None


@dataclass
class _Spare:
    proc: WorkerProcess
    log: IO[bytes]
    path: Path


@dataclass(frozen=True)
class MeshResult:
    rows: list[RoundMetrics]
    stopped: str | None
    errors: list[str]
    wall_time: float
    summary: dict[str, Any]


class Mesh:
    """The bootstrap node, the worker processes and the metrics of one launch."""

    def __init__(self, config: MeshConfig, *, on_notice: Notice | None = None,
                 on_row: RowSink | None = None) -> None:
        self.config = cfg = config
        self.on_notice: Notice = on_notice or (lambda level, text: None)
        self.on_row: RowSink = on_row or (lambda m: None)
        self.n = cfg.peers
        self.k = cfg.per_process or default_per_process(self.n)
        self.rounds = cfg.rounds
        self.discovery_interval = cfg.discovery_interval or max(5.0, self.n / 8)
        self.node_cfg = cfg.node
        self.node_cfg.validate()
        plans = {p.index: p for p in cfg.plans}
        self.plans = [plans.get(i, PeerPlan(i, shard=i)) for i in range(self.n)]
        self.out = cfg.out
        self.temp_base = cfg.base is None
        self.base: Path = (Path(tempfile.mkdtemp(prefix="rumor-launch-")) if cfg.base is None
                           else cfg.base)
        self.peers = [PeerView(i, i // self.k) for i in range(self.n)]
        self.metrics = Metrics(self.peers, cfg.excluded)
        self.workers: list[Worker] = []
        self.worker_of: dict[int, Worker] = {}
        self.spares: list[_Spare] = []
        self.rejoining: dict[int, int | None] = {}  # restarted, not up yet -> min round
        self._spare_count = 0
        self.bootstrap: Libp2pTransport | None = None
        self.bootstrap_addr = ""
        self.changed = asyncio.Event()
        self.stop_reason: str | None = None
        self.stop_event = asyncio.Event()
        self.errors: list[str] = []
        self.t_start = time.monotonic()
        self.went = False
        self.events_fh: IO[str] | None = None
        self.summary_extra: Callable[[], dict[str, Any]] = dict  # more summary.json keys
        self.listeners: list[Callable[[], None]] = []  # called when a peer's round changes
        # called with every events.jsonl record (a dashboard's timeline)
        self.event_listeners: list[Callable[[dict[str, Any]], None]] = []
        self._drainer: asyncio.Future[None] | None = None
        self.zygote: Zygote | None = None
        self._zygote_start: asyncio.Task[Zygote | None] | None = None
        self._zygote_log: IO[bytes] | None = None

    # ------------------------------------------------------------------ helpers
    def peer_dir(self, i: int) -> Path:
        return self.base / f"peer-{i:02d}"

    def log_event(self, e: dict[str, Any]) -> None:
        """Append one record to events.jsonl (with ``t``: seconds since the start)."""
        rec = {"t": round(time.monotonic() - self.t_start, 4), **e}
        for fn in self.event_listeners:
            fn(rec)
        if self.events_fh is not None:
            self.events_fh.write(json.dumps(rec, default=str) + "\n")

    def request_stop(self, reason: str) -> None:
        """End the run (the first reason given is kept); safe from signal handlers."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop_event.set()
        self.changed.set()

    def config_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.node_cfg),
            "shard": None,
            "peers": self.n,
            "per_process": self.k,
            "discovery_interval": self.discovery_interval,
            "mode": self.config.mode,
        }

    def alive_rounds(self) -> list[int]:
        """Last finished round of every live, started peer."""
        return [p.round for p in self.peers if p.alive and p.ready]

    # ------------------------------------------------------------------ bootstrap
    async def start_bootstrap(self) -> None:
        identity = load_or_create_identity(self.base / "bootstrap")
        self.bootstrap = Libp2pTransport(
            identity,
            listen=[f"/ip4/127.0.0.1/tcp/{self.config.bootstrap_port}"],
            swarm=self.node_cfg.swarm,
            announce=False,
            discovery_interval=None,
        )
        await self.bootstrap.start()
        self.bootstrap_addr = self.bootstrap.listen_addrs()[0]
        self._drainer = asyncio.ensure_future(self._drain_bootstrap(self.bootstrap))

    @staticmethod
    async def _drain_bootstrap(t: Libp2pTransport) -> None:
        with contextlib.suppress(Exception):
            while True:
                await t.next_event()

    # ------------------------------------------------------------------ workers
    def peer_spec(self, i: int, *, start_round: int | None = None,
                  blocked: tuple[str, ...] = ()) -> dict[str, Any]:
        plan = self.plans[i]
        base_port = self.config.api_port_base
        spec: dict[str, Any] = {
            "index": i,
            "data_dir": str(self.peer_dir(i)),
            "shard": plan.shard,
            "api_port": base_port + i if base_port else 0,
        }
        if plan.node_overrides:
            spec["node_overrides"] = dict(plan.node_overrides)
        if plan.allowed is not None:
            spec["allowed"] = list(plan.allowed)
        if plan.relay:
            spec["relay"] = True
        if blocked:
            spec["blocked"] = list(blocked)
        if start_round is not None:
            spec["start_round"] = start_round
        return spec

    def worker_config(self, indices: list[int], *, wait_for_go: bool = True,
                      specs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        node = asdict(self.node_cfg)
        node.pop("shard")
        return {
            "node": node,
            "peers": specs if specs is not None else [self.peer_spec(i) for i in indices],
            "bootstrap": [self.bootstrap_addr],
            "discovery_interval": self.discovery_interval,
            "join_stagger": max(1.0, 0.25 * self.n) if wait_for_go else 1.0,
            "target_members": TARGET_NEIGHBOURS,
            "peer_stagger": 0.2,
            "wait_for_go": wait_for_go,
            "send_vectors": True,
            "threads": self.config.threads,
            "verbose": self.config.verbose,
        }

    def start_zygote(self) -> None:
        """Start the zygote in the background (once; a no-op with ``zygote=False``).

        The zygote (rumor.node.mesh.zygote) imports and prepares the worker module once
        and forks every worker process from itself, so the workers share its imports,
        torch's registrations and the dataset copy-on-write instead of paying them each
        (~0.2-0.4 GB a process). If it cannot start (no fork here, a failed import), the
        workers are started as plain ``python -m`` processes and a warning says why.
        """
        if self.config.zygote and self._zygote_start is None:
            self._zygote_start = asyncio.ensure_future(self._open_zygote())

    async def _open_zygote(self) -> Zygote | None:
        logs = self.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self._zygote_log = (logs / "zygote.log").open("wb")
        prepare = {"threads": self.config.threads, "dataset": self.node_cfg.dataset,
                   "dataset_dir": self.node_cfg.dataset_dir}
        try:
            zygote = await Zygote.start(self.config.worker_module, self._zygote_log,
                                        prepare=prepare)
        except ZygoteError as exc:
            self.on_notice("warning", f"{exc}; starting worker processes without it")
            return None
        self.log_event({"event": "zygote", "pid": zygote.proc.pid})
        self.zygote = zygote
        return zygote

    async def _process(self, log: IO[bytes], *extra: str) -> WorkerProcess:
        """A worker process: forked from the zygote, or ``python -m worker_module``."""
        self.start_zygote()
        zygote = await self._zygote_start if self._zygote_start is not None else None
        if zygote is not None and zygote.alive:
            try:
                return await zygote.spawn(self.config.worker_module, list(extra), log,
                                          limit=LINE_LIMIT)
            except ZygoteError as exc:
                self.on_notice("warning", f"{exc}; starting worker processes without it")
                self._zygote_start = asyncio.ensure_future(_none())
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.config.worker_module, *extra,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            start_new_session=True,  # own process group: killed as a group at exit
            limit=LINE_LIMIT,
        )

    async def add_spares(self) -> None:
        """Top the pool of warm spare processes up to ``config.spares``."""
        while len(self.spares) < self.config.spares and not self.stop_event.is_set():
            name = f"spare-{self._spare_count}.log"
            self._spare_count += 1
            self.spares.append(await self._prestart(name))

    def _take_spare(self) -> _Spare | None:
        while self.spares:
            spare = self.spares.pop(0)
            if spare.proc.returncode is None:
                return spare
            spare.log.close()
        return None

    async def _prestart(self, log_name: str) -> _Spare:
        """A worker process that does its heavy imports now and takes its config later."""
        logs = self.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        path = logs / log_name
        log = path.open("wb")
        return _Spare(await self._process(log, "--spare"), log, path)

    async def _spawn(self, w: int, indices: list[int], cfg: dict[str, Any],
                     log_name: str, *, warm: bool = False,
                     prestarted: _Spare | None = None) -> Worker:
        logs = self.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        spare = self._take_spare() if warm else None
        if prestarted is not None:
            proc, log = prestarted.proc, prestarted.log
        elif spare is not None:
            proc, log = spare.proc, spare.log
            self.log_event({"event": "spare_used", "worker": w, "log": spare.path.name})
        else:
            log = (logs / log_name).open("wb")
            proc = await self._process(log)
        worker = Worker(w, indices, proc, log)
        self.workers.append(worker)
        for i in indices:
            self.worker_of[i] = worker
            self.peers[i].worker = w
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(cfg).encode() + b"\n")
        await proc.stdin.drain()
        worker.reader = asyncio.ensure_future(self._read_worker(worker))
        if spare is not None:
            await self.add_spares()
        return worker

    async def spawn_workers(self) -> None:
        """Start the worker processes, K peers each.

        Above RELAY_ABOVE peers, py-libp2p 0.8.1's bootstrap (~12 concurrent DHT
        streams) cannot serve everyone's first lookups, and it should not be the one
        door into the mesh: workers start one after the other, and every peer of a
        later worker also bootstraps through BOOTSTRAP_PEERS (8) different peers that
        are up by then. They are known swarm members too: the peer dials them as
        neighbours at once instead of waiting for its DHT lookups (at 256 peers on a
        loaded 2-core box half the later peers found nobody through the DHT alone).

        Those entry points are balanced (``balanced_relays``): each later peer takes
        the 8 up peers that were handed out least often so far. Earlier launches gave
        every later peer 8 random peers of the *first* worker: its 24 peers then held
        20-32 links each against 7-8 elsewhere, that one process could no longer
        answer stream negotiations within 10 s, and the 40 peers of the other workers
        got no update in round 1 (64 peers: 40 round-1 timeouts in five of five runs).
        A worker's peers start once the previous worker's are up (bounded wait), so they
        can use every earlier worker's peers, not only the first one's; the later worker
        processes are started at once with the first and do their imports meanwhile
        (``--spare``), so the wait costs each worker only its peers' start-up.
        """
        groups = [list(range(s, min(s + self.k, self.n))) for s in range(0, self.n, self.k)]
        handed: dict[int, int] = {}
        ahead: dict[int, _Spare] = {}
        try:
            await self._spawn_groups(groups, handed, ahead)
        finally:
            self.spares.extend(ahead.values())  # never configured: shut down with the rest

    async def _spawn_groups(self, groups: list[list[int]], handed: dict[int, int],
                            ahead: dict[int, _Spare]) -> None:
        relayed = self.n > RELAY_ABOVE
        for w, indices in enumerate(groups):
            if w == 1 and relayed:
                for later in range(1, len(groups)):
                    ahead[later] = await self._prestart(f"worker-{later}.log")
            if w >= 1 and relayed:
                await self._wait_up(groups[w - 1])
            cfg = self.worker_config(indices)
            up = [p.index for p in self.peers[: indices[0]] if p.ready and p.addrs]
            if up and relayed:
                rng = random.Random(self.node_cfg.seed * 1_000_003 + w)
                chosen = balanced_relays(indices, up, handed, BOOTSTRAP_PEERS, rng)
                cfg["relays"] = {str(i): [self.peers[j].addrs[0] for j in js]
                                 for i, js in chosen.items()}
            await self._spawn(w, indices, cfg, f"worker-{w}.log", prestarted=ahead.pop(w, None))

    def kill_peer(self, i: int) -> None:
        """SIGKILL the process of peer i (one peer per process: only that peer dies)."""
        w = self.worker_of.get(i)
        p = self.peers[i]
        if w is None or w.exited or w.expected_exit:
            return
        if len(w.peers) > 1:
            raise RumorError(f"peer {i} shares its process; kill needs one peer per process")
        w.expected_exit = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(w.proc.pid, signal.SIGKILL)
        p.alive = False
        p.ready = False
        self.log_event({"event": "kill", "i": i, "pid": w.proc.pid})
        self._rows()
        self._notify()

    async def restart_peer(self, i: int, *, start_round: int | None = None,
                           blocked: tuple[str, ...] = ()) -> None:
        """Start peer i again in a new process from its data dir (same PeerID, its
        checkpoint). Once it is up it gets its own ``go``: it starts at the live peers'
        median round then (the simulator's "neighbours' round"), at least at
        ``start_round``, and no earlier than its checkpoint."""
        p = self.peers[i]
        w_now = self.worker_of.get(i)
        if w_now is not None and not w_now.exited and not w_now.expected_exit:
            return  # running (or starting) already
        p.restarts += 1
        w = len(self.workers)
        spec = self.peer_spec(i, start_round=start_round, blocked=blocked)
        cfg = self.worker_config([i], wait_for_go=True, specs=[spec])
        cfg["join_stagger"] = 0.5
        self.rejoining[i] = start_round
        self.log_event({"event": "restart", "i": i, "worker": w, "start_round": start_round})
        await self._spawn(w, [i], cfg, f"worker-{i}.r{p.restarts}.log", warm=True)

    def send_command(self, i: int, cmd: dict[str, Any]) -> bool:
        """Send a command line to the worker hosting peer i, also while it starts
        (False if it is gone or being killed)."""
        w = self.worker_of.get(i)
        if w is None or w.exited or w.expected_exit:
            return False
        return self._send(w, cmd)

    async def _read_worker(self, w: Worker) -> None:
        assert w.proc.stdout is not None
        while True:
            try:
                line = await w.proc.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError) as exc:
                self.errors.append(f"worker {w.index}: unreadable output: {exc}")
                continue
            if not line:
                break
            try:
                e = json.loads(line)
            except ValueError:
                continue
            self._on_event(w, e)
        await w.proc.wait()
        w.exited = True
        self.log_event({"event": "worker_exit", "worker": w.index, "code": w.proc.returncode})
        current = [i for i in w.peers if self.worker_of.get(i) is w]
        for i in current:
            if not self.peers[i].finished:
                self.peers[i].alive = False
                self.peers[i].ready = False
        done = w.proc.returncode == 0 and all(self.peers[i].finished for i in current)
        if not w.expected_exit and not done and self.stop_reason is None:
            msg = f"worker {w.index} (peers {w.peers[0]}..{w.peers[-1]}) exited with code " \
                  f"{w.proc.returncode}; see {self.out / 'logs'}"
            self.errors.append(msg)
            self.on_notice("error", msg)
            if not self.went or not any(p.alive for p in self.peers):
                self.request_stop("error")
        self._rows()
        self._notify()

    def _on_event(self, w: Worker, e: dict[str, Any]) -> None:
        kind = e.get("event")
        i = e.get("i")
        p = self.peers[i] if isinstance(i, int) and 0 <= i < self.n else None
        vector_free = {k: v for k, v in e.items() if k != "vector"}
        self.log_event({"worker": w.index, **vector_free})
        if p is None:
            if kind == "error":
                self.errors.append(f"worker {w.index}: {e.get('message')}")
            return
        if self.worker_of.get(p.index) is not w:
            return  # a killed incarnation's last words
        if kind == "ready":
            p.peer, p.api, p.addrs = e["peer"], e["api"], list(e["addrs"])
            p.data_dir, p.start_round, p.round = e["data_dir"], e["start_round"], e["start_round"]
            p.pid = e.get("pid")
            if self.metrics.layout is None and e.get("layout"):
                with contextlib.suppress(RumorError):
                    self.metrics.layout = layout_from_json(e["layout"])
            if p.restarts:
                self.metrics.restarted(p.index)
            p.ready = p.alive = True
            p.finished = False
            if p.index in self.rejoining:
                # A restarted peer resumes from its own checkpoint and catches up through
                # the protocol (PULL -> signed STATE from its neighbours): the launcher
                # does not tell it the swarm's round (no oracle), unless the caller
                # asked for a floor explicitly.
                floor = self.rejoining.pop(p.index)
                start = max(p.start_round, floor or 0)
                p.start_round = p.round = start
                self._send(w, {"cmd": "go", "start_round": start, "apis": self.api_directory()})
            self._notify()
        elif kind == "started":
            p.start_round = p.round = int(e["round"])
        elif kind == "neighbours":
            p.neighbours = int(e["count"])
        elif kind == "round":
            p.round, p.acc, p.received = int(e["round"]), float(e["acc"]), int(e["received"])
            p.neighbours, p.rejects = int(e["neighbours"]), int(e["rejects"])
            p.timeouts, p.messages_sent = int(e["timeouts"]), int(e["messages_sent"])
            p.bytes_sent = int(e["bytes_sent"])
            p.max_neighbours = max(p.max_neighbours, p.neighbours)
            p.min_neighbours = (p.neighbours if p.min_neighbours is None
                                else min(p.min_neighbours, p.neighbours))
            self.metrics.add(p.index, e)
            self._rows()
            self._notify()
        elif kind == "finished":
            p.finished = True
            self._notify()
        elif kind == "error":
            msg = f"peer {p.index}: {e.get('message')}"
            self.errors.append(msg)
            self.on_notice("error", msg)
        p.max_neighbours = max(p.max_neighbours, p.neighbours)
        self.changed.set()

    def _notify(self) -> None:
        self.changed.set()
        for fn in self.listeners:
            fn()

    def _rows(self) -> None:
        new = self.metrics.drain()
        for m in new:
            self.on_row(m)
        if new:
            write_metrics_csv(self.out / "metrics.csv", self.metrics.rows)
            write_layer_variance_csv(self.out / "layer_variance.csv", self.metrics.variances)
        if self.rounds is not None and self.metrics.rows and \
                self.metrics.rows[-1].round >= self.rounds:
            self.request_stop("done")

    async def _wait_up(self, indices: list[int]) -> None:
        """Until these peers are up (listening), at most 120 s."""
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline and not self.stop_event.is_set():
            if all(self.peers[i].ready for i in indices):
                return
            await self.wait_changed(0.5)

    async def wait_changed(self, timeout: float) -> None:
        """Until some state changed (an event arrived) or ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)
        self.changed.clear()

    async def wait_ready(self) -> None:
        """Until every peer is up and has min_neighbours neighbours, or the ready timeout."""
        need = self.config.min_neighbours
        need = min(2, self.n - 1) if need is None else need
        needs = list(self.config.ready_neighbours or [need] * self.n)
        limit = self.config.ready_timeout or 60.0 + self.n
        deadline = time.monotonic() + limit
        while not self.stop_event.is_set():
            if all(p.ready and p.neighbours >= needs[p.index] for p in self.peers):
                return
            if time.monotonic() > deadline:
                late = [p.index for p in self.peers
                        if not p.ready or p.neighbours < needs[p.index]]
                if not all(p.ready for p in self.peers):
                    raise RumorError(f"peers {late} did not start; see {self.out / 'logs'}")
                self.on_notice("warning", f"peers {late} have not found all the neighbours "
                               f"they need after {limit:.0f} s; starting rounds anyway")
                return
            await self.wait_changed(0.5)

    def go(self) -> None:
        self.went = True
        for p in self.peers:
            p.neighbours_at_go = p.neighbours
        self.metrics.start()
        self.log_event({"event": "go", "rounds": self.rounds})
        write_json(self.out / "peers.json", {"bootstrap": self.bootstrap_addr, "peers": [
            {"index": p.index, "peer": p.peer, "addrs": p.addrs, "api": p.api,
             "data_dir": p.data_dir, "shard": self.plans[p.index].shard, "worker": p.worker,
             "start_round": p.start_round, "relay": self.plans[p.index].relay}
            for p in self.peers
        ]})
        apis = self.api_directory()
        for w in self.workers:
            self._send(w, {"cmd": "go", "apis": apis})

    def api_directory(self) -> dict[str, str]:
        """PeerID -> API URL of every peer that is up (told to the peers at ``go``)."""
        return {p.peer: p.api for p in self.peers if p.peer and p.api}

    def save_models(self) -> list[Path]:
        """OUT/models/peer-XX.safetensors from every peer's last checkpoint (weights
        only); peers without a readable checkpoint are named in a warning."""
        layout = self.metrics.layout
        if layout is None:
            return []
        saved: list[Path] = []
        missing: list[str] = []
        for p in self.peers:
            path = self.peer_dir(p.index) / CHECKPOINT_FILE
            if not path.is_file():
                missing.append(f"{p.index} (no checkpoint)")
                continue
            try:
                ck = read_checkpoint(path, dimension=layout[-1].stop)
                saved.append(save_model(
                    self.out / "models" / f"peer-{p.index:02d}.safetensors", ck.params,
                    layout, {"peer": p.peer, "round": ck.round, "model": ck.model,
                             "index": p.index}))
            except (CheckpointError, OSError) as exc:
                missing.append(f"{p.index} ({exc})")
        if missing:
            self.on_notice("warning", f"no final model saved for peers {', '.join(missing)}")
        return saved

    def _send(self, w: Worker, cmd: dict[str, Any]) -> bool:
        if w.proc.stdin is None or w.proc.stdin.is_closing():
            return False
        try:
            w.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        except Exception:
            return False
        return True

    # ------------------------------------------------------------------ shutdown
    async def shutdown(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Tell every worker to stop, wait ``grace`` s, then kill what is left."""
        spares, self.spares = self.spares, []
        for spare in spares:  # nothing to keep in a spare: kill it now
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(spare.proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(spare.proc.wait(), 5)
            spare.log.close()
        for w in self.workers:
            w.expected_exit = True
            self._send(w, {"cmd": "stop"})
            if w.proc.stdin is not None:
                with contextlib.suppress(Exception):
                    w.proc.stdin.close()
        live = [w for w in self.workers if w.proc.returncode is None]
        if live:
            await asyncio.wait([asyncio.ensure_future(w.proc.wait()) for w in live],
                               timeout=grace)
        self.kill_all()
        for w in self.workers:
            if w.reader is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(w.reader, 5)
            w.log.close()
        if self._drainer is not None:
            self._drainer.cancel()
        await self.close_zygote()
        if self.bootstrap is not None:
            with contextlib.suppress(Exception):
                await self.bootstrap.close()

    async def close_zygote(self) -> None:
        """Close the zygote (after the workers: it reports their exits) and its log."""
        start, self._zygote_start = self._zygote_start, None
        if start is not None:
            if not start.done():
                start.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await start
        zygote, self.zygote = self.zygote, None
        if zygote is not None:
            await zygote.close()
        log, self._zygote_log = self._zygote_log, None
        if log is not None:
            log.close()

    def kill_all(self) -> None:
        """SIGKILL every worker's process group (idempotent, synchronous)."""
        for spare in self.spares:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(spare.proc.pid, signal.SIGKILL)
        for w in self.workers:
            if w.proc.returncode is None or not w.exited:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(w.proc.pid, signal.SIGKILL)

    def build_summary(self, wall: float) -> dict[str, Any]:
        nbrs = {
            str(p.index): {"peer": p.peer, "min": p.min_neighbours, "max": p.max_neighbours,
                           "at_start": p.neighbours_at_go, "final": p.neighbours,
                           "last_round": p.round, "final_acc": p.acc, "restarts": p.restarts}
            for p in self.peers
        }
        found = [p.max_neighbours for p in self.peers]
        return summary(
            self.metrics.rows,
            self.config_dict(),
            peers=self.n,
            seed=self.node_cfg.seed,
            per_process=self.k,
            processes=len(self.workers),
            bootstrap=self.bootstrap_addr,
            neighbours=nbrs,
            min_neighbours_found=min(found) if found else None,
            rejects=sum(p.rejects for p in self.peers),
            wall_time=wall,
            stopped=self.stop_reason,
            interrupted=self.stop_reason in ("interrupted", "terminated"),
            errors=self.errors,
            **self._comm_report(),
            **self.summary_extra(),
        )

    def _comm_report(self) -> dict[str, Any]:
        """summary.json's ``plan`` and ``final_merge`` (as the simulator writes them)."""
        proto = self.node_cfg.protocol()
        return {"plan": proto.plan().describe(),
                "final_merge": final_merge_report(self.metrics.rows, proto.final_merge)}

    # ------------------------------------------------------------------ the run
    async def run(
        self,
        *,
        on_tick: Callable[[], None] | None = None,
        after_go: Callable[[Mesh], Awaitable[None]] | None = None,
        tick: float = 0.5,
    ) -> MeshResult:
        """Start everything, run until done / stopped / the wall cap, clean up.

        ``on_tick`` is called about every ``tick`` seconds (a live display);
        ``after_go`` runs as a task once rounds started (an experiment's timeline) and
        is cancelled at the end. Whatever ends the run (an exception, Ctrl-C,
        cancellation), every worker process group is killed and summary.json written.
        """
        out = self.out
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        cap = self.config.wall_cap
        driver: asyncio.Task[None] | None = None

        def check_cap() -> None:
            if cap is not None and time.monotonic() - t0 > cap:
                self.on_notice("warning", f"wall-clock cap of {cap:.0f} s reached; stopping")
                self.request_stop("wall_cap")

        async def watch(fut: asyncio.Future[Any]) -> None:
            """Until ``fut`` is done (its exception raised) or a stop is requested."""
            while not self.stop_event.is_set():
                check_cap()
                if on_tick is not None:
                    on_tick()
                changed = asyncio.ensure_future(self.wait_changed(tick))
                done, _ = await asyncio.wait({changed, fut},
                                             return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if fut in done:
                    fut.result()
                    return

        for old in (out / "models").glob("peer-*.safetensors"):  # a former run's
            old.unlink(missing_ok=True)
        pid_file = out / "launch.json"
        write_json(pid_file, {"pid": os.getpid(), "started": time.time(),
                              "swarm": self.node_cfg.swarm})
        try:
            with (out / "events.jsonl").open("w", buffering=1) as fh:
                self.events_fh = fh
                try:
                    self.start_zygote()  # its imports overlap the bootstrap's start
                    await self.start_bootstrap()
                    self.on_notice("info", f"bootstrap node: {self.bootstrap_addr}")
                    self.on_notice("info", f"starting {self.n} peers in "
                                   f"{math.ceil(self.n / self.k)} processes ({self.k} per "
                                   f"process); data dirs in {self.base}")
                    await self.spawn_workers()
                    await self.add_spares()  # warm while the peers find each other
                    ready = asyncio.ensure_future(self.wait_ready())
                    try:
                        await watch(ready)
                    finally:
                        ready.cancel()
                    if not self.stop_event.is_set():
                        self.go()
                        self.on_notice("info", "all peers up: rounds started")
                        if after_go is not None:
                            driver = asyncio.ensure_future(self._drive(after_go))
                        stopped = asyncio.ensure_future(self.stop_event.wait())
                        try:
                            await watch(stopped if driver is None
                                        else _first(stopped, driver))
                        finally:
                            stopped.cancel()
                        if driver is not None and driver.done() and not driver.cancelled():
                            driver.result()  # raise what the driver raised
                finally:
                    if driver is not None and not driver.done():
                        driver.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await driver
                    if on_tick is not None:
                        on_tick()
                    await self.shutdown()
                    self.events_fh = None
        except BaseException:
            self.kill_all()
            if self.zygote is not None:
                self.zygote.kill()
            if self.stop_reason is None:
                self.stop_reason = "error"
            raise
        finally:
            wall = time.monotonic() - t0
            data = self.build_summary(wall)
            write_json(out / "summary.json", data)
            try:
                self.save_models()
            except Exception as exc:  # the run files are written; say what is missing
                self.on_notice("warning", f"final models not saved: {type(exc).__name__}: "
                               f"{exc}")
            pid_file.unlink(missing_ok=True)
            if self.temp_base and not self.config.keep:
                shutil.rmtree(self.base, ignore_errors=True)
        return MeshResult(self.metrics.rows, self.stop_reason, list(self.errors), wall, data)


    async def _drive(self, after_go: Callable[[Mesh], Awaitable[None]]) -> None:
        """Run ``after_go``; once it returns, wait for the stop (only a failure ends
        the run early)."""
        await after_go(self)
        await self.stop_event.wait()


async def _none() -> None:
    return None


def _first(*futs: asyncio.Future[Any]) -> asyncio.Future[Any]:
    """A future done when any of ``futs`` is (with that one's result or exception)."""
    async def wait() -> Any:
        done, _ = await asyncio.wait(futs, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).result()

    return asyncio.ensure_future(wait())


def mesh_config(node: NodeConfig, peers: int, out: Path, **kw: Any) -> MeshConfig:
    """A MeshConfig whose node config splits the data into ``peers`` shards."""
    return MeshConfig(node=replace(node, shards=peers, shard=0), peers=peers, out=out, **kw)
