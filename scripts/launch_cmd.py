"""``rumor launch``: N real peers on this machine (libp2p on loopback), live table, results.

The launcher process runs a pure DHT bootstrap node (a Libp2pTransport with
``announce=False``: it serves the Kademlia DHT and joins no swarm) and starts the peers
as worker processes (``python -m rumor.scripts.worker``), K per process. Every peer
knows only the bootstrap's address and finds the others through DHT provider records.
Peer i trains on shard i of N. Workers are in their own process group, and exit on
their own when their stdin closes, so no process outlives the launcher, even after a
``kill -9`` of the launcher.

Rounds start together: the launcher sends ``go`` once every peer is up and has found
``min(2, N-1)`` neighbours (or after ``--ready-timeout``).

Files in --out DIR (the same formats as ``rumor simulate``):

- metrics.csv: one row for round r once every live peer reported round r (accuracy
  mean/min/max/std over peers, consensus distance sqrt(mean_i ||x_i - x̄||²) over the
  peers' merged models, messages and bytes sent during the round, cumulative rejects
  and timeouts, peers alive).
- summary.json: rumor.node.results.summary(...) plus peers, seed, per-process K,
  every peer's neighbour counts, the bootstrap address and the wall time.
- events.jsonl: every event of every peer (model vectors left out), with ``t`` (seconds
  since the launch started) and ``i`` (the peer's index).
- peers.json: index, PeerID, listen addresses, API URL and data dir of every peer.
- logs/worker-W.log: each worker's stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from rumor.node.identity import load_or_create_identity
from rumor.node.results import RoundMetrics, summary, write_json, write_metrics_csv
from rumor.node.transport.libp2p import Libp2pTransport
from rumor.protocols.errors import ConfigError, RumorError
from rumor.scripts.node_options import add_node_flags, node_config
from rumor.scripts.options import nonneg_int, positive_float, positive_int

MAX_PER_PROCESS_AUTO = 8  # 64 peers in 8 processes; ~0.3 GB of torch per process
LINE_LIMIT = 256 << 20  # a round event carries the model vector (base64)


RELAY_ABOVE = 16  # peers; see Launcher.spawn_workers


def default_per_process(peers: int, cpus: int | None = None) -> int:
    """K: one process per core (imports and training of a process share one GIL), but
    at most 8 peers a process (their hosts share it too). 2 cores: 8 peers -> 2 x 4,
    64 peers -> 8 x 8. Each process pays ~0.3 GB for torch; a peer ~30-60 MB more."""
    cores = cpus or os.cpu_count() or 2
    return max(1, min(MAX_PER_PROCESS_AUTO, math.ceil(peers / cores)))


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "launch",
        help="start N peers on this machine (real libp2p on loopback) and watch them train",
        description="Start a bootstrap node and N peers as local processes; show a live "
        "table; write metrics.csv, summary.json and events.jsonl to --out.",
    )
    p.add_argument("--peers", type=positive_int, default=8, help="number of peers (default 8)")
    p.add_argument("--rounds", type=positive_int, default=None,
                   help="stop after R rounds (default: run until Ctrl-C)")
    p.add_argument("--per-process", type=positive_int, default=None, metavar="K",
                   help="peers per worker process (default: ceil(N / cores), at most "
                   f"{MAX_PER_PROCESS_AUTO})")
    p.add_argument("--out", type=Path, default=Path("runs/launch"), help="output directory")
    p.add_argument("--base-dir", type=Path, default=None,
                   help="peers' data dirs (identity, checkpoints) go to BASE/peer-XX; "
                   "an existing one is resumed (default: a temporary dir)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary base dir (identities, checkpoints) at exit")
    p.add_argument("--bootstrap-port", type=nonneg_int, default=0,
                   help="TCP port of the bootstrap node (default: any free port)")
    p.add_argument("--api-port-base", type=nonneg_int, default=0,
                   help="peer i serves its HTTP API on BASE+i (default: any free port)")
    p.add_argument("--discovery-interval", type=positive_float, default=None,
                   help="seconds between a peer's DHT lookups (default max(5, N/8): "
                   "the bootstrap serves only ~12 DHT streams at once)")
    p.add_argument("--ready-timeout", type=positive_float, default=None,
                   help="seconds to wait for peers to come up and find neighbours before "
                   "starting rounds anyway (default 60 + N)")
    p.add_argument("--quiet", action="store_true", help="no live table")
    p.add_argument("--verbose", action="store_true", help="libp2p's own log messages")
    add_node_flags(p)
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- state


@dataclass
class PeerView:
    index: int
    worker: int
    peer: str = ""
    api: str = ""
    addrs: list[str] = field(default_factory=list)
    data_dir: str = ""
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
    alive: bool = True
    finished: bool = False
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
    """Per-round rows from the peers' round events (a row once every live peer reported)."""

    def __init__(self, peers: list[PeerView]) -> None:
        self.peers = peers
        self.rows: list[RoundMetrics] = []
        self._reports: dict[int, dict[int, _Report]] = {}
        self._prev_sent: dict[int, tuple[int, int]] = {}
        self.next_round = 1
        self.t0 = time.monotonic()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.next_round = min((p.start_round for p in self.peers), default=0) + 1

    def add(self, i: int, e: dict[str, Any]) -> None:
        vec = None
        if "vector" in e:
            vec = np.frombuffer(base64.b64decode(e["vector"]), dtype="<f4")
        self._reports.setdefault(int(e["round"]), {})[i] = _Report(
            float(e["acc"]), vec, int(e["messages_sent"]), int(e["bytes_sent"]),
            int(e["rejects"]), int(e["timeouts"]),
        )

    def drain(self) -> list[RoundMetrics]:
        """Rows that became complete (in round order)."""
        new: list[RoundMetrics] = []
        while True:
            r = self.next_round
            expected = [p for p in self.peers if p.alive and p.start_round < r]
            got = self._reports.get(r, {})
            if not got or any(p.index not in got for p in expected):
                return new
            row = self._row(r, got)
            self.rows.append(row)
            new.append(row)
            del self._reports[r]
            self.next_round += 1

    def _row(self, r: int, got: dict[int, _Report]) -> RoundMetrics:
        accs = np.array([g.acc for g in got.values()], dtype=np.float64)
        vecs = [g.vector for g in got.values() if g.vector is not None]
        if vecs and len({v.shape for v in vecs}) == 1:
            x = np.stack(vecs).astype(np.float64)
            cd = float(np.sqrt(np.mean(np.sum((x - x.mean(axis=0)) ** 2, axis=1))))
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
            peers_alive=sum(1 for p in self.peers if p.alive),
        )


@dataclass
class Worker:
    index: int
    peers: list[int]
    proc: asyncio.subprocess.Process
    log: IO[bytes]
    exited: bool = False
    expected_exit: bool = False
    reader: asyncio.Task[None] | None = None


# ----------------------------------------------------------------------------- launcher


class Launcher:
    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self.n: int = args.peers
        self.k: int = args.per_process or default_per_process(self.n)
        self.rounds: int | None = args.rounds
        self.discovery_interval: float = args.discovery_interval or max(5.0, self.n / 8)
        self.node_cfg = replace(node_config(args, shard=0, rounds=args.rounds), shards=self.n)
        self.node_cfg.validate()
        self.out: Path = args.out
        self.temp_base = args.base_dir is None
        self.base: Path = (
            Path(tempfile.mkdtemp(prefix="rumor-launch-")) if args.base_dir is None
            else args.base_dir
        )
        self.peers = [PeerView(i, i // self.k) for i in range(self.n)]
        self.metrics = Metrics(self.peers)
        self.workers: list[Worker] = []
        self.bootstrap: Libp2pTransport | None = None
        self.bootstrap_addr = ""
        self.changed = asyncio.Event()
        self.stop_reason: str | None = None
        self.stop_event = asyncio.Event()
        self.errors: list[str] = []
        self.t_start = time.monotonic()
        self.went = False
        self.events_fh: IO[str] | None = None
        self._drainer: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ helpers
    def _event_log(self, e: dict[str, Any]) -> None:
        if self.events_fh is not None:
            rec = {"t": round(time.monotonic() - self.t_start, 4), **e}
            self.events_fh.write(json.dumps(rec, default=str) + "\n")

    def _stop(self, reason: str) -> None:
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
            "mode": "launch",
        }

    # ------------------------------------------------------------------ bootstrap
    async def start_bootstrap(self) -> None:
        identity = load_or_create_identity(self.base / "bootstrap")
        self.bootstrap = Libp2pTransport(
            identity,
            listen=[f"/ip4/127.0.0.1/tcp/{self.args.bootstrap_port}"],
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
    def worker_config(self, w: int, indices: list[int]) -> dict[str, Any]:
        node = asdict(self.node_cfg)
        node.pop("shard")
        base_port = self.args.api_port_base
        return {
            "node": node,
            "peers": [
                {
                    "index": i,
                    "data_dir": str(self.base / f"peer-{i:02d}"),
                    "shard": i,
                    "api_port": base_port + i if base_port else 0,
                }
                for i in indices
            ],
            "bootstrap": [self.bootstrap_addr],
            "discovery_interval": self.discovery_interval,
            "join_stagger": max(1.0, 0.25 * self.n),
            "peer_stagger": 0.2,
            "wait_for_go": True,
            "send_vectors": True,
            "threads": 1,
            "verbose": self.args.verbose,
        }

    async def spawn_workers(self) -> None:
        """Start the worker processes.

        Above RELAY_ABOVE peers, py-libp2p 0.8.1's bootstrap (~12 concurrent DHT
        streams) cannot serve everyone's first lookups: the first worker starts alone,
        and once its peers are up each later peer also bootstraps through one of them
        (round robin), so DHT records and lookups spread over those peers.
        """
        logs = self.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        groups = [list(range(s, min(s + self.k, self.n))) for s in range(0, self.n, self.k)]
        relays: list[str] = []
        for w, indices in enumerate(groups):
            if w == 1 and self.n > RELAY_ABOVE:
                relays = await self._first_worker_addrs(groups[0])
            log = (logs / f"worker-{w}.log").open("wb")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "rumor.scripts.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # own process group: killed as a group at exit
                limit=LINE_LIMIT,
            )
            worker = Worker(w, indices, proc, log)
            self.workers.append(worker)
            assert proc.stdin is not None
            cfg = self.worker_config(w, indices)
            if relays:
                cfg["relays"] = {str(i): relays[i % len(relays)] for i in indices}
            proc.stdin.write(json.dumps(cfg).encode() + b"\n")
            await proc.stdin.drain()
            worker.reader = asyncio.ensure_future(self._read_worker(worker))

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
        self._event_log({"event": "worker_exit", "worker": w.index, "code": w.proc.returncode})
        for i in w.peers:
            self.peers[i].alive = False
        done = w.proc.returncode == 0 and all(self.peers[i].finished for i in w.peers)
        if not w.expected_exit and not done and self.stop_reason is None:
            msg = f"worker {w.index} (peers {w.peers[0]}..{w.peers[-1]}) exited with code " \
                  f"{w.proc.returncode}; see {self.out / 'logs' / f'worker-{w.index}.log'}"
            self.errors.append(msg)
            self.console.print(f"[red]{msg}")
            if not self.went or not any(p.alive for p in self.peers):
                self._stop("error")
        self._rows()
        self.changed.set()

    def _on_event(self, w: Worker, e: dict[str, Any]) -> None:
        kind = e.get("event")
        i = e.get("i")
        p = self.peers[i] if isinstance(i, int) and 0 <= i < self.n else None
        vector_free = {k: v for k, v in e.items() if k != "vector"}
        self._event_log({"worker": w.index, **vector_free})
        if p is None:
            if kind == "error":
                self.errors.append(f"worker {w.index}: {e.get('message')}")
            return
        if kind == "ready":
            p.peer, p.api, p.addrs = e["peer"], e["api"], list(e["addrs"])
            p.data_dir, p.start_round, p.round = e["data_dir"], e["start_round"], e["start_round"]
            p.ready = True
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
        elif kind == "finished":
            p.finished = True
        elif kind == "error":
            msg = f"peer {p.index}: {e.get('message')}"
            self.errors.append(msg)
            self.console.print(f"[red]{msg}")
        if p is not None:
            p.max_neighbours = max(p.max_neighbours, p.neighbours)
        self.changed.set()

    def _rows(self) -> None:
        new = self.metrics.drain()
        for m in new:
            self.console.print(
                f"round {m.round:4d}  acc mean {m.acc_mean:.4f} (min {m.acc_min:.4f}, max "
                f"{m.acc_max:.4f})  consensus distance {m.consensus_distance:.4f}  "
                f"{m.time:6.1f} s"
            )
        if new:
            write_metrics_csv(self.out / "metrics.csv", self.metrics.rows)
        if self.rounds is not None and self.metrics.rows and \
                self.metrics.rows[-1].round >= self.rounds:
            self._stop("done")

    async def _first_worker_addrs(self, indices: list[int]) -> list[str]:
        """Listen addresses of the first worker's peers once they are up (bounded wait)."""
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline and not self.stop_event.is_set():
            if all(self.peers[i].ready for i in indices):
                break
            await self._wait_changed(0.5)
        return [self.peers[i].addrs[0] for i in indices
                if self.peers[i].ready and self.peers[i].addrs]

    async def _wait_changed(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)
        self.changed.clear()

    async def wait_ready(self) -> None:
        """Until every peer is up and has min(2, N-1) neighbours, or the ready timeout."""
        need = min(2, self.n - 1)
        limit = self.args.ready_timeout or 60.0 + self.n
        deadline = time.monotonic() + limit
        while not self.stop_event.is_set():
            if all(p.ready and p.neighbours >= need for p in self.peers):
                return
            if time.monotonic() > deadline:
                late = [p.index for p in self.peers if not p.ready or p.neighbours < need]
                self.console.print(
                    f"[yellow]peers {late} not ready or without neighbours after {limit:.0f} s;"
                    " starting rounds anyway"
                )
                if not all(p.ready for p in self.peers):
                    raise RumorError(f"peers {late} did not start; see {self.out / 'logs'}")
                return
            await self._wait_changed(0.5)

    def go(self) -> None:
        self.went = True
        for p in self.peers:
            p.neighbours_at_go = p.neighbours
        self.metrics.start()
        self._event_log({"event": "go", "rounds": self.rounds})
        write_json(self.out / "peers.json", {"bootstrap": self.bootstrap_addr, "peers": [
            {"index": p.index, "peer": p.peer, "addrs": p.addrs, "api": p.api,
             "data_dir": p.data_dir, "shard": p.index, "worker": p.worker,
             "start_round": p.start_round}
            for p in self.peers
        ]})
        for w in self.workers:
            self._send(w, {"cmd": "go"})

    def _send(self, w: Worker, cmd: dict[str, Any]) -> None:
        if w.proc.stdin is not None and not w.proc.stdin.is_closing():
            with contextlib.suppress(Exception):
                w.proc.stdin.write(json.dumps(cmd).encode() + b"\n")

    # ------------------------------------------------------------------ display
    def render(self) -> Group:
        accs = [p.acc for p in self.peers if p.acc is not None and p.alive]
        mean = f"{sum(accs) / len(accs):.4f}" if accs else "-"
        done = len(self.metrics.rows)
        target = f"/{self.rounds}" if self.rounds else ""
        alive = sum(p.alive for p in self.peers)
        head = Text.assemble(
            ("rumor launch  ", "bold"),
            f"{alive}/{self.n} peers in {len(self.workers)} processes  ",
            f"rounds {done}{target}  mean acc {mean}  ",
            f"{time.monotonic() - self.t_start:6.1f} s\n",
            ("join from another shell: ", "dim"),
            f"rumor join --swarm {self.node_cfg.swarm} --bootstrap {self.bootstrap_addr}",
        )
        table = Table(box=None, pad_edge=False)
        for col in ("#", "peer", "round", "acc", "nbrs", "merged", "rejects", "timeouts",
                    "api port"):
            table.add_column(col, justify="left" if col == "peer" else "right")
        for p in self.peers:
            style = "" if p.alive else "dim strike"
            table.add_row(
                str(p.index), p.peer[-10:] if p.peer else "starting", str(p.round),
                f"{p.acc:.4f}" if p.acc is not None else "-", str(p.neighbours),
                str(p.received), str(p.rejects), str(p.timeouts), p.api.rsplit(":", 1)[-1],
                style=style,
            )
        return Group(head, table)

    # ------------------------------------------------------------------ shutdown
    async def shutdown(self, grace: float = 20.0) -> None:
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
        if self.bootstrap is not None:
            with contextlib.suppress(Exception):
                await self.bootstrap.close()

    def kill_all(self) -> None:
        """SIGKILL every worker's process group (idempotent, synchronous)."""
        for w in self.workers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(w.proc.pid, signal.SIGKILL)

    def write_summary(self, wall: float) -> None:
        nbrs = {
            str(p.index): {"peer": p.peer, "min": p.min_neighbours, "max": p.max_neighbours,
                           "at_start": p.neighbours_at_go, "final": p.neighbours,
                           "last_round": p.round, "final_acc": p.acc}
            for p in self.peers
        }
        found = [p.max_neighbours for p in self.peers]
        data = summary(
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
            errors=self.errors,
        )
        write_json(self.out / "summary.json", data)


@contextlib.contextmanager
def _open_events(path: Path) -> Iterator[IO[str]]:
    fh = path.open("w", buffering=1)
    try:
        yield fh
    finally:
        fh.close()


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if not args.verbose:
        logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    if args.keep and args.base_dir is not None:
        raise ConfigError("--keep is for the temporary base dir; --base-dir is always kept")
    console = Console(stderr=True)
    if not console.is_terminal:  # a log file: no wrapping of addresses and rows
        console = Console(stderr=True, width=200)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    launcher = Launcher(args, console)
    loop = asyncio.get_running_loop()
    for sig, name in ((signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated")):
        loop.add_signal_handler(sig, launcher._stop, name)
    t0 = time.monotonic()
    code = 0
    live: Live | None = None
    try:
        with _open_events(out / "events.jsonl") as fh:
            launcher.events_fh = fh
            try:
                await launcher.start_bootstrap()
                console.print(f"bootstrap node: {launcher.bootstrap_addr}", soft_wrap=True)
                console.print(
                    f"starting {launcher.n} peers in "
                    f"{math.ceil(launcher.n / launcher.k)} processes "
                    f"({launcher.k} per process); data dirs in {launcher.base}"
                )
                await launcher.spawn_workers()
                if not args.quiet:
                    live = Live(launcher.render(), console=console, refresh_per_second=2,
                                transient=False, auto_refresh=False)
                    live.start()
                waiting = asyncio.ensure_future(launcher.wait_ready())
                while not waiting.done() and not launcher.stop_event.is_set():
                    await asyncio.wait({waiting}, timeout=0.5)
                    if live is not None:
                        live.update(launcher.render(), refresh=console.is_terminal)
                if not waiting.done():
                    waiting.cancel()
                else:
                    waiting.result()
                if not launcher.stop_event.is_set():
                    launcher.go()
                    console.print("all peers up: rounds started")
                while not launcher.stop_event.is_set():
                    await launcher._wait_changed(0.5)
                    if live is not None:
                        live.update(launcher.render(), refresh=console.is_terminal)
            finally:
                if live is not None:
                    live.update(launcher.render(), refresh=True)
                    live.stop()
                    if not console.is_terminal:
                        console.line()
                await launcher.shutdown()
                launcher.events_fh = None
    except RumorError:
        launcher.kill_all()
        raise
    except BaseException:
        launcher.kill_all()
        raise
    finally:
        wall = time.monotonic() - t0
        launcher.write_summary(wall)
        if launcher.temp_base and not args.keep:
            shutil.rmtree(launcher.base, ignore_errors=True)
    reason = launcher.stop_reason
    if reason == "error" or (launcher.errors and not launcher.metrics.rows):
        for msg in launcher.errors[:5]:
            console.print(f"[red]{msg}")
        code = 1
    elif reason in ("interrupted", "terminated") and args.rounds is not None:
        code = 130 if reason == "interrupted" else 143
    rows = launcher.metrics.rows
    if rows:
        last = rows[-1]
        console.print(
            f"final acc mean {last.acc_mean:.4f} (min {last.acc_min:.4f}, max "
            f"{last.acc_max:.4f}) after round {last.round}, {wall:.1f} s wall -> {out}"
        )
    return code
