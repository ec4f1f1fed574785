"""The real-network runtime: an asyncio loop that feeds one Peer and carries out its commands.

    transport events -> inbox -> Peer.handle(event) -> commands:
      Send          -> transport.send (a task)
      StartTraining -> Learner.train (a thread) -> TrainingDone
      Merge / Adopt -> Learner (a thread), evaluate, checkpoint -> MergeDone
      Log           -> on_event
      Finished      -> run() returns

All Peer calls happen on the loop, one event at a time, so the Peer needs no locks.
Blocking torch work runs in a worker thread. Time comes from ``clock`` (monotonic
seconds), and Tick events are fed at ``Peer.next_deadline()``. The runtime emits
structured events through ``on_event(dict)`` and never prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rumor.node.checkpoint import Checkpoint, save_checkpoint
from rumor.node.learner import Learner
from rumor.node.transport.base import PeerConnected, PeerDisconnected, Received, Transport
from rumor.protocols.errors import TransportError
from rumor.protocols.events import (
    AdoptModel,
    Command,
    Event,
    Finished,
    Log,
    Merge,
    MergeDone,
    MessageReceived,
    PeerDiscovered,
    PeerLost,
    Send,
    Start,
    StartTraining,
    Tick,
    TrainingDone,
)
from rumor.protocols.peer import Peer

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], None]


class NodeRuntime:
    """Runs one Peer over a Transport until its last round or ``stop()``."""

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
        self._inbox: asyncio.Queue[Event] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self.finished = False
        self.history: list[dict[str, Any]] = []
        self.send_failures: Counter[str] = Counter()
        self.bytes_sent = 0
        self.messages_sent = 0

    # ---------------------------------------------------------------- public
    def stop(self) -> None:
        """Ask run() to return (after the current step); safe from signal handlers."""
        self._stop.set()

    def status(self) -> dict[str, Any]:
        """What GET /status serves."""
        p = self.peer
        return {
            "peer_id": p.peer_id,
            "listen_addrs": self.transport.listen_addrs(),
            "swarm": p.config.validation.swarm,
            "role": p.config.role.value,
            "round": p.round,
            "phase": p.phase.value,
            "neighbours": sorted(p.neighbours),
            "last_accuracy": self.learner.last_accuracy,
            "rejects": dict(p.validator.rejects),
            "accepted": p.validator.accepted,
            "messages_sent": self.messages_sent,
            "bytes_sent": self.bytes_sent,
            "timeouts": p.timeouts,
            "finished": self.finished,
        }

    async def run(self, start_round: int = 0) -> None:
        """Start the transport, run rounds from ``start_round``, close everything."""
        await self.transport.start()
        pump = self._spawn(self._pump())
        try:
            seq = time.time_ns() // 1000  # above anything sent before a restart
            self._dispatch(Start(self.clock(), start_round, seq))
            while not self.finished and not self._stop.is_set():
                await self._step()
        finally:
            pump.cancel()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.transport.close()

    # ------------------------------------------------------------- internals
    async def _step(self) -> None:
        deadline = self.peer.next_deadline()
        timeout = None if deadline is None else max(0.0, deadline - self.clock())
        getter = asyncio.ensure_future(self._inbox.get())
        stopper = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait(
            {getter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        stopper.cancel()
        if getter in done:
            self._dispatch(getter.result())
        else:
            getter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getter
            if not self._stop.is_set():
                self._dispatch(Tick(self.clock()))

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
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
                await self._inbox.put(MessageReceived(ev.sender, ev.data, now))
            elif isinstance(ev, PeerConnected):
                self.on_event({"event": "peer_connected", "peer": ev.peer})
                await self._inbox.put(PeerDiscovered(ev.peer, now))
            elif isinstance(ev, PeerDisconnected):
                self.on_event({"event": "peer_disconnected", "peer": ev.peer})
                await self._inbox.put(PeerLost(ev.peer, now))

    def _dispatch(self, event: Event) -> None:
        self._execute(self.peer.handle(event))

    def _execute(self, commands: list[Command]) -> None:
        for c in commands:
            if isinstance(c, Send):
                self._spawn(self._send(c))
            elif isinstance(c, StartTraining):
                self._spawn(self._train(c.round))
            elif isinstance(c, Merge):
                self._spawn(self._apply(c.round, self.learner.merge, c.updates, c.timed_out))
            elif isinstance(c, AdoptModel):
                self._spawn(self._apply(c.round, self.learner.adopt, c.vector, False))
            elif isinstance(c, Finished):
                self.finished = True
                self.on_event({"event": "finished", "round": c.round})
            elif isinstance(c, Log):
                if c.event == "reject":
                    log.info("rejected message from %s: %s %s", c.fields.get("from"),
                             c.fields.get("reason"), c.fields.get("detail", ""))
                self.on_event({"event": c.event, **c.fields})

    async def _send(self, c: Send) -> None:
        try:
            await self.transport.send(c.to, c.data)
        except TransportError as exc:
            self.send_failures[c.to] += 1
            self.on_event({"event": "send_failed", "to": c.to, "error": str(exc)})
            await self._inbox.put(PeerLost(c.to, self.clock()))
            return
        self.messages_sent += 1
        self.bytes_sent += len(c.data)

    async def _train(self, round_: int) -> None:
        vec = await asyncio.to_thread(self.learner.train, round_)
        await self._inbox.put(TrainingDone(round_, vec, self.learner.num_samples, self.clock()))

    async def _apply(self, round_: int, fn: Callable[[Any], np.ndarray], arg: Any,
                     timed_out: bool) -> None:
        def work() -> tuple[np.ndarray, float]:
            vec = fn(arg)
            acc = self.learner.evaluate()
            if self.data_dir is not None:
                save_checkpoint(
                    self.data_dir,
                    Checkpoint(vec.astype(np.float32), round_ + 1, self.learner.config.model),
                )
            return vec, acc

        vec, acc = await asyncio.to_thread(work)
        received = len(arg) if isinstance(arg, tuple) else 1
        record = {
            "event": "round",
            "peer": self.peer.peer_id,
            "round": round_ + 1,
            "acc": acc,
            "received": received,
            "timed_out": timed_out,
            "neighbours": len(self.peer.neighbours),
            "messages_sent": self.messages_sent,
            "bytes_sent": self.bytes_sent,
            "rejects": sum(self.peer.validator.rejects.values()),
            "timeouts": self.peer.timeouts,
        }
        self.history.append(record)
        self.on_event(record)
        await self._inbox.put(MergeDone(round_, vec, self.clock()))
