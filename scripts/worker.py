"""One ``rumor launch`` worker process: K real peers in one asyncio loop.

Run as ``python -m rumor.scripts.worker`` by the launcher; not a user command. With
``--spare`` it imports torch and the node first and only then reads its config line
(a warm spare the launcher keeps for fast restarts).

Protocol with the launcher (newline-delimited JSON):

- stdin, first line: the worker's config (see :func:`parse_config`). Later lines are
  commands: ``{"cmd": "go"}`` starts the rounds of every hosted peer (the launcher sends
  it once all peers are up and have found neighbours; ``"start_round": R`` makes them
  start at round R at least: a rejoining peer starts at the mesh's round, as in the
  simulator), ``{"cmd": "stop"}`` stops them,
  ``"apis": {PEER_ID: URL}`` (on ``go`` or a ``{"cmd": "directory"}`` line) tells the
  hosted peers' HTTP APIs where the launch's other peers serve theirs (GET /peers lists
  them, so ``rumor status URL`` can walk the mesh),
  ``{"cmd": "block", "peers": [PEER_ID, ...]}`` / ``{"cmd": "unblock", ...}`` cut and
  restore links of every hosted peer (or of peer ``"i"`` only) at run time. Only a
  peer whose spec has ``allowed`` or ``blocked`` runs behind a FilteredTransport and
  can block (real-mode experiments give every peer its ``allowed`` list: its graph
  neighbours). Each is answered by a ``blocked`` / ``unblocked`` event.
  End of stdin also stops them: when the launcher dies, even by ``kill -9``, its end of
  the pipe closes and the worker exits on its own, so no peer is left orphaned.
- stdout: one JSON object per line, each with ``"i"`` (the peer's index in the launch):
  ``ready`` (peer id, listen addrs, API URL, start round, model name and its layout:
  the tensors of the model vector), ``neighbours`` (connected
  members, before ``go``), ``started`` (the round it starts at), every runtime event
  (``round`` events carry the model vector as base64 little-endian float32 in
  ``"vector"`` when the config asks for it, so the launcher can compute the consensus
  distance), ``stopped``, ``error``, and a final ``exit`` (no ``"i"``). Anything else
  the process writes goes to stderr: fd 1 is
  redirected to fd 2 at start so stray prints cannot corrupt the event stream.

SIGTERM / SIGINT stop the peers cleanly (checkpoints of finished rounds are on disk,
streams and hosts closed), like ``rumor join``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import sys
import traceback
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any

from rumor.node.threads import DEFAULT_THREADS, apply_threads
from rumor.node.transport.base import Transport
from rumor.node.transport.filtered import FilteredTransport
from rumor.node.transport.libp2p import DEFAULT_TARGET_MEMBERS, Libp2pTransport
from rumor.node.transport.peer_book import BOOK_FILE

log = logging.getLogger("rumor.worker")


@dataclass(frozen=True)
class PeerSpec:
    index: int
    data_dir: str
    shard: int
    api_port: int = 0
    node_overrides: dict[str, Any] = field(default_factory=dict)  # NodeConfig fields
    allowed: tuple[str, ...] | None = None  # PeerIDs it may link to (None: everyone)
    blocked: tuple[str, ...] = ()  # PeerIDs whose links are cut at start
    start_round: int | None = None  # start at least at this round (a rejoin)
    relay: bool = False  # trains on no data (relay only)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PeerSpec:
        known = {f.name for f in fields(cls)}
        args = {k: v for k, v in raw.items() if k in known}
        if args.get("allowed") is not None:
            args["allowed"] = tuple(args["allowed"])
        args["blocked"] = tuple(args.get("blocked", ()))
        args["node_overrides"] = dict(args.get("node_overrides") or {})
        return cls(**args)


@dataclass(frozen=True)
class WorkerConfig:
    node: dict[str, Any]  # NodeConfig fields except shard
    peers: tuple[PeerSpec, ...]
    bootstrap: tuple[str, ...]
    api_host: str = "127.0.0.1"
    discovery_interval: float = 5.0
    join_stagger: float = 1.0
    target_members: int = DEFAULT_TARGET_MEMBERS  # dial new members while fewer are live
    peer_stagger: float = 0.2  # seconds between starting two hosted peers
    wait_for_go: bool = True
    send_vectors: bool = True
    threads: int = DEFAULT_THREADS
    verbose: bool = False
    # peer index -> extra bootstrap addresses (earlier peers; a string: one address)
    relays: dict[str, list[str] | str] | None = None


def parse_config(text: str) -> WorkerConfig:
    raw = json.loads(text)
    known = {f.name for f in fields(WorkerConfig)}
    args = {k: v for k, v in raw.items() if k in known}
    args["peers"] = tuple(PeerSpec.from_dict(p) for p in raw["peers"])
    args["bootstrap"] = tuple(raw.get("bootstrap", ()))
    return WorkerConfig(**args)


class Emitter:
    """JSON lines to the launcher, on a private duplicate of the original stdout."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._broken = False

    def __call__(self, event: dict[str, Any]) -> None:
        if self._broken:
            return
        try:
            self._stream.write(json.dumps(event, default=str) + "\n")
            self._stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            self._broken = True  # the launcher is gone; stdin EOF stops us next


def _vector_b64(runtime: Any) -> str:
    params = runtime.learner.params
    data = params.detach().to("cpu").numpy().astype("<f4", copy=False).tobytes()
    return base64.b64encode(data).decode("ascii")


class Hosted:
    """One peer of this worker: transport, runtime, API."""

    def __init__(self, spec: PeerSpec, cfg: WorkerConfig, emit: Emitter) -> None:
        import numpy as np

        from rumor.node.assembly import NodeConfig, build_runtime
        from rumor.node.identity import load_or_create_identity

        self.spec = spec
        data_dir = Path(spec.data_dir)
        identity = load_or_create_identity(data_dir)
        node_fields = {f.name for f in fields(NodeConfig)}
        overrides = dict(spec.node_overrides)
        relay_field = spec.relay and "holds_data" in node_fields
        if relay_field:
            overrides["holds_data"] = False
        node_cfg = NodeConfig(**{**cfg.node, **overrides, "shard": spec.shard})
        extra = (cfg.relays or {}).get(str(spec.index), [])
        self.libp2p = Libp2pTransport(
            identity,
            listen=["/ip4/127.0.0.1/tcp/0"],
            swarm=node_cfg.swarm,
            bootstrap=[*cfg.bootstrap, *([extra] if isinstance(extra, str) else extra)],
            members=[extra] if isinstance(extra, str) else extra,  # launched: members
            discovery_interval=cfg.discovery_interval,
            join_stagger=cfg.join_stagger,
            target_members=cfg.target_members,
            peer_book=data_dir / BOOK_FILE,
        )
        self.filter: FilteredTransport | None = None
        self.transport: Transport = self.libp2p
        if spec.allowed is not None or spec.blocked:
            allowed = None if spec.allowed is None else set(spec.allowed)
            self.filter = FilteredTransport(self.libp2p, allowed, blocked=spec.blocked)
            self.transport = self.filter
        i = spec.index

        def on_event(e: dict[str, Any]) -> None:
            e = {"i": i, **e}
            if e["event"] == "round" and cfg.send_vectors:
                e["vector"] = _vector_b64(self.runtime)
            emit(e)

        self.runtime, self.start_round = build_runtime(
            node_cfg, identity, self.transport, data_dir=data_dir, on_event=on_event
        )
        if spec.relay and not relay_field:
            # NodeConfig has no relay flag yet: a relay is a peer with no training data
            # (training is then a no-op and its updates weigh 0 samples, as in the sim).
            self.runtime.learner.indices = np.zeros(0, dtype=np.int64)
        if spec.start_round is not None:
            self.start_round = max(self.start_round, spec.start_round)
        self.api: Any = None
        self.task: asyncio.Task[None] | None = None

    def connected(self) -> list[str]:
        """Neighbours it can talk to (after the filter, when there is one)."""
        if self.filter is not None:
            return self.filter.connected_peers()
        return self.libp2p.connected_peers()

    def set_blocked(self, peers: list[str], block: bool) -> bool:
        if self.filter is None:
            return False
        (self.filter.block if block else self.filter.unblock)(peers)
        return True


async def _start(h: Hosted, cfg: WorkerConfig, emit: Emitter,
                 directory: dict[str, str]) -> None:
    from rumor.node.api import start_api
    from rumor.node.model_io import layout_json

    await h.transport.start()
    h.api = await start_api(h.runtime, cfg.api_host, h.spec.api_port, directory=directory)
    port = h.api.addresses[0][1] if h.api.addresses else None
    emit({
        "i": h.spec.index,
        "event": "ready",
        "peer": h.transport.local_id,
        "addrs": h.transport.listen_addrs(),
        "filtered": h.filter is not None,
        "api": f"http://{cfg.api_host}:{port}",
        "start_round": h.start_round,
        "shard": h.spec.shard,
        "data_dir": h.spec.data_dir,
        "pid": os.getpid(),
        "model": h.runtime.learner.config.model,
        "layout": layout_json(h.runtime.learner.trainer.layout),
    })


def _block(hosted: list[Hosted], msg: dict[str, Any], emit: Emitter) -> None:
    """Apply a block / unblock command to the hosted peers it names."""
    block = msg.get("cmd") == "block"
    peers = [str(p) for p in msg.get("peers", [])]
    target = msg.get("i")
    for h in hosted:
        if target is not None and h.spec.index != target:
            continue
        ok = h.set_blocked(peers, block)
        emit({"i": h.spec.index, "event": "blocked" if block else "unblocked",
              "peers": len(peers), "applied": ok,
              "blocked_now": len(h.filter.blocked) if h.filter is not None else 0})


async def _read_commands(go: asyncio.Event, stop: asyncio.Event, hosted: list[Hosted],
                         emit: Emitter, history: list[dict[str, Any]],
                         directory: dict[str, str]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break  # EOF: the launcher closed the pipe or died
        try:
            msg = json.loads(line)
            cmd = msg.get("cmd")
        except (ValueError, AttributeError):
            continue
        if cmd in ("go", "directory") and isinstance(msg.get("apis"), dict):
            directory.update({str(k): str(v) for k, v in msg["apis"].items()})
        if cmd == "go":
            if msg.get("start_round") is not None:  # a rejoin: the mesh's round now
                history.append({"cmd": "start_round", "round": int(msg["start_round"])})
            go.set()
        elif cmd == "stop":
            break
        elif cmd in ("block", "unblock"):
            history.append(msg)  # replayed on peers that start later
            _block(hosted, msg, emit)
    stop.set()


async def _wait_any(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def _report_neighbours(hosted: list[Hosted], emit: Emitter) -> None:
    last: dict[int, int] = {}
    while True:
        for h in hosted:
            n = len(h.connected())
            if last.get(h.spec.index) != n:
                last[h.spec.index] = n
                emit({"i": h.spec.index, "event": "neighbours", "count": n})
        await asyncio.sleep(0.25)


def _failure(task: asyncio.Task[None]) -> str | None:
    if task.cancelled():
        return None
    err = task.exception()
    return None if err is None else f"{type(err).__name__}: {err}"


async def run_worker(cfg: WorkerConfig, emit: Emitter) -> int:
    apply_threads(cfg.threads)  # before any torch work in this process
    from rumor.node.trainer import warm_up

    await asyncio.to_thread(warm_up)  # torch.func's first-call imports, before ready
    loop = asyncio.get_running_loop()
    go, stop = asyncio.Event(), asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    hosted: list[Hosted] = []
    history: list[dict[str, Any]] = []
    directory: dict[str, str] = {}  # PeerID -> API URL of the launch's other peers
    commands = asyncio.ensure_future(_read_commands(go, stop, hosted, emit, history,
                                                    directory))
    reporter: asyncio.Task[None] | None = None
    code = 0
    try:
        for n, spec in enumerate(cfg.peers):
            if stop.is_set():
                break
            if n:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), cfg.peer_stagger)
            try:
                h = Hosted(spec, cfg, emit)
                for msg in history:  # block commands that came while it was starting
                    if msg.get("cmd") in ("block", "unblock") and msg.get("i") in (None,
                                                                                  spec.index):
                        h.set_blocked([str(p) for p in msg.get("peers", [])],
                                      msg.get("cmd") == "block")
                hosted.append(h)
                await _start(h, cfg, emit, directory)
            except Exception as exc:
                emit({"i": spec.index, "event": "error", "message": f"{type(exc).__name__}: {exc}"})
                traceback.print_exc()
                stop.set()
                code = 1
        reporter = asyncio.ensure_future(_report_neighbours(hosted, emit))
        if not cfg.wait_for_go:
            go.set()
        await _wait_any(go, stop)
        if go.is_set() and not stop.is_set():
            for h in hosted:
                floor = [m["round"] for m in history if m.get("cmd") == "start_round"]
                if floor:
                    h.start_round = max(h.start_round, floor[-1])
                emit({"i": h.spec.index, "event": "started", "round": h.start_round})
                h.task = asyncio.ensure_future(h.runtime.run(h.start_round))
            pending: set[asyncio.Future[Any]] = {h.task for h in hosted if h.task is not None}
            stopper = asyncio.ensure_future(stop.wait())
            while pending and not stop.is_set():
                done, pending = await asyncio.wait(
                    pending | {stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(stopper)
                for h in hosted:
                    if h.task is not None and h.task in done:
                        failure = _failure(h.task)
                        if failure is not None:
                            emit({"i": h.spec.index, "event": "error", "message": failure})
                            code = 1
                        emit({"i": h.spec.index, "event": "stopped",
                              "round": h.runtime.peer.round})
            stopper.cancel()
    finally:
        if reporter is not None:
            reporter.cancel()
        for h in hosted:
            h.runtime.stop()
        running = [h.task for h in hosted if h.task is not None and not h.task.done()]
        if running:
            await asyncio.wait(running, timeout=20)
            for h in hosted:
                if h.task in running:
                    emit({"i": h.spec.index, "event": "stopped", "round": h.runtime.peer.round})
        for h in hosted:
            if h.task is None:  # never started its rounds: close the host ourselves
                with contextlib.suppress(Exception):
                    await h.transport.close()
            if h.api is not None:
                with contextlib.suppress(Exception):
                    await h.api.cleanup()
        commands.cancel()
        emit({"event": "exit", "code": code})
    return code


def zygote_prepare(options: dict[str, Any]) -> None:
    """What a zygote (rumor.scripts.zygote) does once before it forks workers of this
    module, so that they share it copy-on-write: torch's thread count before any torch
    op (no intra-op pool exists yet to be lost in a fork), the modules a worker imports
    lazily, torch.func's one-time warm-up and, with ``options["dataset"]``, that dataset
    (every worker's peers read it, and nobody writes it). ``options``: ``threads``,
    ``dataset``, ``dataset_dir``."""
    apply_threads(int(options.get("threads", DEFAULT_THREADS)))
    import rumor.node.api
    import rumor.node.model_io  # noqa: F401
    from rumor.node.assembly import _shared_dataset
    from rumor.node.trainer import warm_up

    warm_up()
    if options.get("dataset"):
        _shared_dataset(str(options["dataset"]), options.get("dataset_dir"))


def _read_first_line() -> str:
    """The config line from fd 0, unbuffered (later lines are read by asyncio)."""
    buf = bytearray()
    while True:
        b = os.read(0, 1)
        if not b or b == b"\n":
            return buf.decode("utf-8")
        buf += b


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Keep the event stream clean: our own copy of stdout, fd 1 becomes stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    emit = Emitter(out)
    if "--spare" in argv:
        # A warm spare: pay for the heavy imports now, then wait for a config line, so
        # that a peer restarted in it is up in about a second instead of ~10-20 s.
        argv = [a for a in argv if a != "--spare"]
        import rumor.node.api
        import rumor.node.assembly  # noqa: F401
        from rumor.node.trainer import warm_up

        apply_threads(DEFAULT_THREADS)  # run_worker sets the configured count later
        warm_up()
    text = argv[0] if argv else _read_first_line()
    if not text:
        return 0  # a spare that was never used: the launcher closed our stdin
    try:
        cfg = parse_config(text)
    except (ValueError, KeyError, TypeError) as exc:
        emit({"event": "error", "message": f"bad worker config: {exc}"})
        emit({"event": "exit", "code": 2})
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not cfg.verbose:  # py-libp2p 0.8.1 logs harmless DHT stream errors at ERROR
        logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    code = asyncio.run(run_worker(cfg, emit))
    # Hosts, streams and the API are closed and checkpoints are fsynced by now; skip the
    # interpreter's teardown of torch & co., which takes seconds on a loaded machine.
    logging.shutdown()
    sys.stderr.flush()
    out.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
