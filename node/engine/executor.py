"""CommandExecutor: the one interpreter of a Peer's commands, shared by every runtime.

    feed(event): commands = peer.handle(event); then, in order:
      Send(to, data)        -> backend.send(to, data, round)
      StartTraining(r, h)   -> backend.start_training(r, h)   (answers TrainingDone later)
      Merge(r, ...)         -> outcome = peer.merger.merge(backend.own_model(), cmd)
                               backend.log(each outcome event); backend.adopt(r, vector)
                               then MergeDone(r, vector, now, forward, rejected)
                               (a ``local`` Merge, a round without communication, skips
                               the merger: the outcome is the own model)
      AdoptModel(r, v)      -> backend.adopt(r, v); then MergeDone(r, v, now)
      Finished(r)           -> backend.finished(r)
      Log(event, fields)    -> backend.log(event, fields)
    "then" = fed after the whole list ran, so sends keep their emission order;
    and after each handle: backend.wake_at(peer.next_deadline())

With a ``MergeBatch`` (the simulator's fast path), a Merge the batch accepts is not
computed here: the batch computes every merge it holds together when the runtime
flushes it (before the next event of this peer, or of a later instant) and then calls
``finish_merge``, which does what the Merge line above does after ``merger.merge``.

A runtime provides only the Backend (how bytes move, how training runs, where the model
lives and what happens after a merge: evaluation, checkpoint, metrics); what to do is the
Peer's and its hooks'. The simulator calls ``feed`` inline on its virtual clock; the
asyncio node calls it from one engine thread, so merges never block its event loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rumor.protocols.errors import RumorError
from rumor.protocols.events import (
    AdoptModel,
    Command,
    Event,
    Finished,
    Log,
    Merge,
    MergeDone,
    PeerId,
    Send,
    StartTraining,
    TrainingHints,
    Vector,
)
from rumor.protocols.hooks import MergeOutcome
from rumor.protocols.peer import Peer

if TYPE_CHECKING:
    from rumor.node.engine.merge_batch import MergeBatch


class Backend(Protocol):
    """What a runtime does for the executor (one instance per peer)."""

    def now(self) -> float: ...

    def own_model(self) -> Vector: ...

    def send(self, to: PeerId, data: bytes, round_: int) -> None: ...

    def start_training(self, round_: int, hints: TrainingHints) -> None: ...

    def adopt(self, round_: int, vector: Vector, merge: Merge | None) -> None: ...

    def finished(self, round_: int) -> None: ...

    def log(self, event: str, fields: dict[str, Any]) -> None: ...

    def wake_at(self, deadline: float | None) -> None: ...


class CommandExecutor:
    """Feeds one Peer and carries out its commands through a Backend."""

    def __init__(self, peer: Peer, backend: Backend, batch: MergeBatch | None = None) -> None:
        self.peer = peer
        self.backend = backend
        self.batch = batch

    def feed(self, event: Event) -> None:
        commands = self.peer.handle(event)
        self.execute(commands)
        self.backend.wake_at(self.peer.next_deadline())

    def execute(self, commands: list[Command]) -> None:
        """Carry out ``commands`` in order; the events they produce (MergeDone) are fed
        only after the whole list, so a merge's follow-up sends never overtake sends
        that came earlier in the same list (per-neighbour order = emission order)."""
        b = self.backend
        follow_ups: list[Event] = []
        for c in commands:
            if isinstance(c, Send):
                b.send(c.to, c.data, c.round)
            elif isinstance(c, StartTraining):
                b.start_training(c.round, c.hints)
            elif isinstance(c, Merge):
                if c.local:
                    outcome = MergeOutcome(np.array(b.own_model(), dtype=np.float32))
                elif self.peer.merger is None:
                    raise RumorError("this peer has no merger (build it with build_peer)")
                elif self.batch is not None and self.batch.offer(self, c):
                    continue
                else:
                    outcome = self.peer.merger.merge(b.own_model(), c)
                follow_ups.append(self._merged(c, outcome))
            elif isinstance(c, AdoptModel):
                b.adopt(c.round, c.vector, None)
                follow_ups.append(MergeDone(c.round, c.vector, b.now()))
            elif isinstance(c, Finished):
                b.finished(c.round)
            elif isinstance(c, Log):
                b.log(c.event, c.fields)
        for event in follow_ups:
            self.feed(event)

    def finish_merge(self, cmd: Merge, outcome: MergeOutcome) -> None:
        """A batched merge's outcome: adopt it and feed MergeDone (see module docstring)."""
        self.feed(self._merged(cmd, outcome))

    def _merged(self, cmd: Merge, outcome: MergeOutcome) -> MergeDone:
        b = self.backend
        for name, fields in outcome.events:
            self.peer.counters[name] += 1
            b.log(name, fields)
        b.adopt(cmd.round, outcome.vector, cmd)
        return MergeDone(cmd.round, outcome.vector, b.now(), outcome.forward, outcome.rejected)
