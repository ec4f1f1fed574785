"""The in-memory network of the simulator: a discrete-event queue on a virtual clock.

Messages, training completions and timer ticks are events ordered by (time, seq);
``seq`` breaks ties in insertion order, so a run is deterministic. Links have a
latency (seconds, plus size / bandwidth when a bandwidth is set) and a loss
probability drawn from the network's own seeded generator; blocked links (partitions)
and removed peers drop what is sent to them. Nothing here reads the wall clock.

A broadcast is one event: consecutive ``send`` calls of the same ``bytes`` object from
the same source, arriving at the same instant, with nothing scheduled in between, join
one ``deliver`` event whose payload is ``(src, data, [dst, ...])`` (targets in send
order; ``target`` is the first). Popping it and handing the message to each target in
that order is the order separate events would have popped in (consecutive seqs at one
time; anything scheduled meanwhile has a later seq), so runs are unchanged, with one
heap push and pop per broadcast instead of one per receiver.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True)
class LinkModel:
    """Per-link behaviour: latency in seconds, loss probability, bytes per second."""

    latency: float = 0.05
    loss: float = 0.0
    bandwidth: float | None = None

    def delay(self, size: int) -> float:
        return self.latency + (size / self.bandwidth if self.bandwidth else 0.0)


class SimEvent(NamedTuple):
    """A queued event; tuples compare on (time, seq) first, which are unique."""

    time: float
    seq: int
    kind: str
    target: int
    payload: Any


class VirtualClock:
    """A clock that only moves when the event queue says so."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance_to(self, t: float) -> None:
        if t < self._now:
            raise ValueError(f"time cannot go back: {t} < {self._now}")
        self._now = t


class SimNetwork:
    """Event queue + link model + partitions for peers numbered 0..n-1."""

    def __init__(self, link: LinkModel, seed: int) -> None:
        self.link = link
        self.clock = VirtualClock()
        self._rng = random.Random(seed)
        self._queue: list[SimEvent] = []
        self._seq = 0
        self.blocked: set[tuple[int, int]] = set()
        self.down: set[int] = set()
        self.sent = 0
        self.dropped = 0
        self._tail: SimEvent | None = None  # the last deliver event, while it may grow

    def schedule(self, time: float, kind: str, target: int, payload: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._queue, tuple.__new__(
            SimEvent, (time, self._seq, kind, target, payload)))

    def send(self, src: int, dst: int, data: bytes) -> bool:
        """Queue ``data`` for delivery; False when it is lost, blocked or dst is down.
        Joins the previous deliver event when it is the same broadcast (module
        docstring)."""
        self.sent += 1
        if dst in self.down or src in self.down or (src, dst) in self.blocked:
            self.dropped += 1
            return False
        if self.link.loss and self._rng.random() < self.link.loss:
            self.dropped += 1
            return False
        at = self.clock.now() + self.link.delay(len(data))
        tail = self._tail
        if (tail is not None and tail.seq == self._seq and tail.time == at
                and tail.payload[0] == src and tail.payload[1] is data):
            tail.payload[2].append(dst)
            return True
        self._seq += 1
        self._tail = tuple.__new__(SimEvent, (at, self._seq, "deliver", dst, (src, data, [dst])))
        heapq.heappush(self._queue, self._tail)
        return True

    def block(self, a: int, b: int) -> None:
        self.blocked.update({(a, b), (b, a)})

    def heal(self) -> None:
        self.blocked.clear()

    def peek(self) -> SimEvent | None:
        """The next event without taking it (the clock stays); None when idle."""
        return self._queue[0] if self._queue else None

    def pop(self) -> SimEvent | None:
        """The next event, with the clock moved to its time; None when idle."""
        if not self._queue:
            return None
        item = heapq.heappop(self._queue)
        if item is self._tail:
            self._tail = None
        self.clock.advance_to(item.time)
        return item

    def __len__(self) -> int:
        return len(self._queue)
