"""The real-network runtime: an asyncio loop that feeds one Peer through the engine.

    transport events -> inbox -> engine thread: CommandExecutor.feed(event)
      Send          -> transport.send (a task on the loop)
      StartTraining -> Learner.train (a thread) -> TrainingDone into the inbox
      Merge         -> the Peer's merger (in the engine thread), evaluate, checkpoint
      Log           -> on_event
      Finished      -> run() returns

Every Peer call (decode, validation, merge) runs in one engine thread, one event at a
time: the Peer needs no locks and a large message or a slow rule never blocks the event
loop that serves the network and the API. ``status()`` reads a snapshot the engine
thread publishes after each event. Time comes from ``clock`` (monotonic seconds) and
Tick events are fed at ``Peer.next_deadline()``. The runtime emits structured events
through ``on_event(dict)`` (always on the loop thread) and never prints.

Failures are never silent: a training, merge or checkpoint that raises ends ``run()``
with NodeFailure (the process exits non-zero and a supervisor can restart it from its
last good checkpoint); a send that fails is a lost neighbour, not a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rumor.node.checkpoint import Checkpoint, save_checkpoint
from rumor.node.engine import CommandExecutor
from rumor.node.learner import Learner
from rumor.node.prometheus import NodeMetrics
from rumor.node.results import layer_variance
from rumor.node.transport.base import PeerConnected, PeerDisconnected, Received, Transport
from rumor.protocols.errors import RumorError, TransportError
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
from rumor.protocols.hooks import MergeOutcome, Merger
from rumor.protocols.peer import Peer, Phase

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], None]


class NodeFailure(RumorError):
    """The node cannot go on (a training, merge or checkpoint raised)."""


class _NodeBackend:
    """How the asyncio node carries out the executor's work (engine thread side)."""

    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt

    def now(self) -> float:
        return self.rt.clock()

    def own_model(self) -> Vector:
        return self.rt.learner.params.numpy()

    def send(self, to: PeerId, data: bytes, round_: int) -> None:
        self.rt._on_loop(lambda: self.rt._spawn(self.rt._send(to, data), critical=False))

    def start_training(self, round_: int, hints: TrainingHints) -> None:
        self.rt._on_loop(lambda: self.rt._spawn(self.rt._train(round_, hints)))

    def adopt(self, round_: int, vector: Vector, merge: Merge | None) -> None:
        self.rt._merged(round_, vector, merge)

    def finished(self, round_: int) -> None:
        self.rt.finished = True
        self.rt._emit({"event": "finished", "round": round_})

    def log(self, event: str, fields: dict[str, Any]) -> None:
        if event == "reject":
            log.info("rejected message from %s: %s %s", fields.get("from"),
                     fields.get("reason"), fields.get("detail", ""))
        elif event in ("poisoned_merge", "merge_failed", "small_view"):
            log.warning("%s %s", event, fields)
        self.rt._emit({"event": event, **fields})

    def wake_at(self, deadline: float | None) -> None:
        self.rt._deadline = deadline


class _TimedMerger:
    """The peer's merger, timed for the rumor_merge_seconds histogram (same result)."""

    def __init__(self, inner: Merger, observe: Callable[[float], None]) -> None:
        self.inner = inner
        self.observe = observe

    def merge(self, own: Vector, cmd: Merge) -> MergeOutcome:
        t0 = time.perf_counter()
        try:
            return self.inner.merge(own, cmd)
        finally:
            self.observe(time.perf_counter() - t0)


class NodeRuntime:
    """Runs one Peer over a Transport until its last round or ``stop()``.

    ``metrics`` is this node's own Prometheus registry (rumor.node.prometheus): several
    runtimes can share a process.
    """

    def __init__(
        self,
        peer: Peer,
        transport: Transport,
        learner: Learner,
        *,
        data_dir: Path | None = None,
        on_event: EventSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.peer = peer
        self.transport = transport
        self.learner = learner
        self.data_dir = data_dir
        self.on_event = on_event or (lambda e: None)
        self.clock = clock
        self.executor = CommandExecutor(peer, _NodeBackend(self))
        self._engine = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="rumor-engine")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue[Event] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self._deadline: float | None = None
        self._failure: BaseException | None = None
        self._snapshot: dict[str, Any] = {}
        self._in_step = threading.local()  # .held: the engine step's records (_feed_in_engine)
        self.finished = False
        self.history: list[dict[str, Any]] = []
        self.send_failures: Counter[str] = Counter()
        self._send_locks: dict[PeerId, asyncio.Lock] = {}
        self.bytes_sent = 0
        self.messages_sent = 0
        self._last_merge_at: float | None = None
        self.metrics = NodeMetrics(peer.peer_id, self.status)
        if peer.merger is not None:
            peer.merger = _TimedMerger(peer.merger, self.metrics.merge_time.observe)

    # ---------------------------------------------------------------- public
    def stop(self) -> None:
        """Ask run() to return (after the current step); safe from signal handlers."""
        self._stop.set()

    def status(self) -> dict[str, Any]:
        """What GET /status serves: the engine's last snapshot plus transport counters."""
        snap = dict(self._snapshot) or self._peer_snapshot()
        frame = getattr(self.transport, "frame_rejects", None)
        rejects = dict(snap.get("rejects", {}))
        for reason, n in dict(frame or {}).items():
            rejects[f"frame_{reason}"] = n
        snap.update({
            "listen_addrs": self.transport.listen_addrs(),
            "last_accuracy": self.learner.last_accuracy,
            "rejects": rejects,
            "messages_sent": self.messages_sent,
            "bytes_sent": self.bytes_sent,
            "finished": self.finished,
        })
        network = getattr(self.transport, "network_status", None)
        if callable(network):  # reachability, relay reservations, direct/relayed links
            snap["network"] = network()
        return snap

    async def run(self, start_round: int = 0) -> None:
        """Start the transport, run rounds from ``start_round``, close everything.

        Raises NodeFailure when training, a merge or a checkpoint failed.
        """
        self._loop = asyncio.get_running_loop()
        await self.transport.start()
        pump = self._spawn(self._pump())
        self._last_merge_at = self.clock()
        try:
            seq = time.time_ns() // 1000  # above anything sent before a restart
            await self._feed(Start(self.clock(), start_round, seq))
            while not self.finished and not self._stop.is_set():
                await self._step()
        finally:
            pump.cancel()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.transport.close()
            self._engine.shutdown(wait=True, cancel_futures=True)
        if self._failure is not None:
            raise NodeFailure(f"peer stopped: {type(self._failure).__name__}: "
                              f"{self._failure}") from self._failure

    # ------------------------------------------------------------- internals
    def _peer_snapshot(self) -> dict[str, Any]:
        p = self.peer
        return {
            "peer_id": p.peer_id,
            "swarm": p.config.validation.swarm,
            "role": p.config.role.value,
            "round": p.round,
            "phase": p.phase.value,
            "neighbours": sorted(p.neighbours),
            "rejects": dict(p.validator.rejects),
            "accepted": p.validator.accepted,
            "timeouts": p.timeouts,
            "protocol_events": dict(p.counters),
            "attack": p.adversary.name if p.adversary is not None else None,
        }

    def _feed_in_engine(self, event: Event) -> None:
        """One engine step (engine thread). The records it emits are held until the
        /status snapshot includes the step: whoever reads a ``reject`` or ``round``
        event and then asks /status sees the counts that event implies (the snapshot
        used to be replaced after the events had already gone out)."""
        if isinstance(event, TrainingDone):
            p = self.peer
            if p.phase is Phase.TRAINING and p.round == event.round:
                self.learner.set_params(event.vector)
        held: list[dict[str, Any]] = []
        self._in_step.held = held
        try:
            self.executor.feed(event)
        finally:
            self._snapshot = self._peer_snapshot()
            self._in_step.held = None
            for record in held:
                self._publish(record)

    async def _feed(self, event: Event) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._engine, self._feed_in_engine, event)
        except Exception as exc:
            self._fail("engine", exc)

    def _fail(self, what: str, exc: BaseException) -> None:
        if self._failure is None:
            log.error("%s failed: %s: %s", what, type(exc).__name__, exc)
            self._emit({"event": "failure", "what": what,
                        "error": f"{type(exc).__name__}: {exc}"})
            self._failure = exc
        self._stop.set()

    async def _step(self) -> None:
        deadline = self._deadline
        timeout = None if deadline is None else max(0.0, deadline - self.clock())
        getter = asyncio.ensure_future(self._inbox.get())
        stopper = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait(
            {getter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        stopper.cancel()
        if getter in done:
            await self._feed(getter.result())
        else:
            getter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getter
            if not self._stop.is_set():
                await self._feed(Tick(self.clock()))

    def _on_loop(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the event loop (called from the engine thread)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn)

    def _emit(self, record: dict[str, Any]) -> None:
        held: list[dict[str, Any]] | None = getattr(self._in_step, "held", None)
        if held is not None:  # emitted by the engine step of this thread
            held.append(record)  # sent once the step's snapshot is in place
            return
        self._publish(record)

    def _publish(self, record: dict[str, Any]) -> None:
        """Hand ``record`` to ``on_event`` on the event loop."""
        self._on_loop(lambda: self.on_event(record))

    def _spawn(self, coro: Any, critical: bool = True) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                self._fail("task" if critical else "send", exc)

        task.add_done_callback(done)
        return task

    async def _pump(self) -> None:
        """Transport events -> Peer events, until the transport closes."""
        while True:
            try:
                ev = await self.transport.next_event()
            except TransportError:
                return
            now = self.clock()
            if isinstance(ev, Received):
                self.metrics.count_received(len(ev.data))
                await self._inbox.put(MessageReceived(ev.sender, ev.data, now))
            elif isinstance(ev, PeerConnected):
                self.on_event({"event": "peer_connected", "peer": ev.peer})
                await self._inbox.put(PeerDiscovered(ev.peer, now, inbound=ev.inbound))
            elif isinstance(ev, PeerDisconnected):
                self.on_event({"event": "peer_disconnected", "peer": ev.peer})
                await self._inbox.put(PeerLost(ev.peer, now))

    async def _send(self, to: PeerId, data: bytes) -> None:
        # one send at a time per neighbour, in the order the Peer produced them: the
        # receiver's replay check needs each sender's (round, seq) to arrive in order
        lock = self._send_locks.setdefault(to, asyncio.Lock())
        try:
            async with lock:
                await self.transport.send(to, data)
        except TransportError as exc:
            self.send_failures[to] += 1
            self.metrics.send_failures.inc()
            self.on_event({"event": "send_failed", "to": to, "error": str(exc)})
            await self._inbox.put(PeerLost(to, self.clock()))
            return
        self.messages_sent += 1
        self.bytes_sent += len(data)
        self.metrics.count_sent(len(data))

    async def _train(self, round_: int, hints: TrainingHints) -> None:
        t0 = time.perf_counter()
        base, vec = await asyncio.to_thread(self.learner.train, round_, hints)
        self.metrics.train_time.observe(time.perf_counter() - t0)
        await self._inbox.put(
            TrainingDone(round_, vec, self.learner.num_samples, self.clock(), base=base))

    def _merged(self, round_: int, vector: Vector, merge: Merge | None) -> None:
        """Engine thread: adopt the merged model, evaluate, checkpoint, report."""
        self.learner.set_params(vector)
        acc = self.learner.evaluate()
        now = self.clock()
        if self._last_merge_at is not None:
            self.metrics.round_duration.observe(max(0.0, now - self._last_merge_at))
        self._last_merge_at = now
        next_round = round_ + 1 if merge is None or merge.catch_up_to is None \
            else merge.catch_up_to
        if self.data_dir is not None:
            save_checkpoint(
                self.data_dir,
                Checkpoint(np.asarray(vector, dtype=np.float32), next_round,
                           self.learner.config.model),
            )
        p = self.peer
        record = {
            "event": "round",
            "peer": p.peer_id,
            "round": round_ + 1,
            "acc": acc,
            "received": len(merge.updates) if merge is not None else 1,
            "senders": sorted({u.sender for u in merge.updates}) if merge is not None else [],
            "timed_out": merge.timed_out if merge is not None else False,
            "catch_up_to": merge.catch_up_to if merge is not None else None,
            "final_merge": merge.final if merge is not None else False,
            "neighbours": len(p.neighbours),
            "messages_sent": self.messages_sent,
            "bytes_sent": self.bytes_sent,
            "rejects": sum(p.validator.rejects.values()),
            "timeouts": p.timeouts,
        }
        if merge is not None and len(merge.updates) >= 2:
            # the models this peer received (an observer metric; see results.py)
            got = np.stack([np.asarray(u.vector, dtype=np.float32) for u in merge.updates])
            record["received_variance"] = [
                [v.layer, v.weight_variance, v.peer_variance]
                for v in layer_variance(round_ + 1, got, self.learner.trainer.layout)
                if v.is_weight]
        self.history.append(record)
        self._emit(record)
