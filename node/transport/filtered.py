"""FilteredTransport: impose a topology (and run-time link cuts) on any Transport.

Real-mode experiments run the scenario's graph on a libp2p mesh where every peer can
reach every other (the DHT finds them all). Each peer wraps its transport in a
FilteredTransport that lets through only its graph neighbours (``allowed``; None means
everyone) minus the peers currently ``block``-ed (a partition, a failed link):

- ``PeerConnected`` / ``Received`` from a peer that is not allowed or is blocked are
  hidden from the caller and counted (``stats``); ``PeerDisconnected`` is shown only
  for peers the caller was shown as connected.
- ``send()`` to such a peer raises TransportError (counted), like an unreachable peer.
- ``block(peers)``: a blocked peer the caller sees as connected yields a
  ``PeerDisconnected``; ``unblock(peers)``: an allowed peer still connected underneath
  yields a ``PeerConnected`` again.

Discovery and signatures are untouched: the inner transport still finds peers through
the DHT and the Peer still verifies every update. Both ends of a link filter, so a
partition refuses links across the cut on both sides, and a message already in flight
across it when the cut starts is dropped by its receiver.

Events are filtered in arrival order: a background task reads the inner transport into
one queue, and ``block`` / ``unblock`` put their markers into the same queue, so the
caller sees connects and disconnects in the order they happened. A message is dropped
if its sender is hidden when it arrives or when the caller takes it (a message in
flight when a cut starts is lost, as in the simulator).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from rumor.node.transport.base import (
    PeerConnected,
    PeerDisconnected,
    PeerId,
    Received,
    Transport,
    TransportEvent,
)
from rumor.protocols.errors import TransportError

__all__ = ["FilterStats", "FilteredTransport"]


@dataclass
class FilterStats:
    """What the filter kept from the caller."""

    hidden_connects: int = 0
    hidden_messages: int = 0
    hidden_bytes: int = 0
    refused_sends: int = 0
    blocks: int = 0  # PeerDisconnected events caused by block()
    unblocks: int = 0  # PeerConnected events caused by unblock()


class _Closed:
    """Queue sentinel: the inner transport ended (or we closed)."""


_CLOSED = _Closed()


@dataclass(frozen=True)
class _Refresh:
    """Queue marker: re-evaluate what the caller should see of ``peer``."""

    peer: PeerId


class FilteredTransport:
    """A Transport that shows only allowed, unblocked peers of ``inner``."""

    def __init__(
        self,
        inner: Transport,
        allowed: set[PeerId] | None,
        *,
        blocked: Iterable[PeerId] = (),
    ) -> None:
        self.inner = inner
        self.max_message = inner.max_message
        # the inner transport's frame reject counter, shared (it refuses frames itself)
        rejects = getattr(inner, "frame_rejects", None)
        self.frame_rejects: Counter[str] = rejects if isinstance(rejects, Counter) else Counter()
        self.allowed: frozenset[PeerId] | None = None if allowed is None else frozenset(allowed)
        self.blocked: set[PeerId] = set(blocked)
        self.stats = FilterStats()
        self._below: dict[PeerId, tuple[str, ...]] = {}  # connected underneath -> addrs
        self._below_now: set[PeerId] = set()  # the same, as of arrival (not of delivery)
        self._shown: set[PeerId] = set()  # peers the caller was told are connected
        self._queue: asyncio.Queue[TransportEvent | _Refresh | _Closed] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self._closed = False

    # ------------------------------------------------------------------ filter
    def visible(self, peer: PeerId) -> bool:
        """True iff ``peer`` is allowed and not blocked."""
        return (self.allowed is None or peer in self.allowed) and peer not in self.blocked

    def block(self, peers: Iterable[PeerId]) -> None:
        """Cut the links to ``peers`` (both directions, until unblock)."""
        for p in peers:
            if p not in self.blocked:
                self.blocked.add(p)
                self._queue.put_nowait(_Refresh(p))

    def unblock(self, peers: Iterable[PeerId]) -> None:
        """Restore the links to ``peers`` (only those allowed ever come back)."""
        for p in peers:
            if p in self.blocked:
                self.blocked.discard(p)
                self._queue.put_nowait(_Refresh(p))

    def connected_peers(self) -> list[PeerId]:
        """Visible peers connected underneath now (a snapshot; also before anyone
        takes events: a node reports its neighbours before its rounds start)."""
        return sorted(p for p in self._below_now if self.visible(p))

    def _filter(self, item: TransportEvent | _Refresh) -> TransportEvent | None:
        if isinstance(item, _Refresh):
            p = item.peer
            if self.visible(p) and p in self._below and p not in self._shown:
                self._shown.add(p)
                self.stats.unblocks += 1
                return PeerConnected(p, self._below[p])
            if not self.visible(p) and p in self._shown:
                self._shown.discard(p)
                self.stats.blocks += 1
                return PeerDisconnected(p)
            return None
        if isinstance(item, Received):
            if self.visible(item.sender):
                return item
            self.stats.hidden_messages += 1
            self.stats.hidden_bytes += len(item.data)
            return None
        if isinstance(item, PeerConnected):
            self._below[item.peer] = item.addrs
            if not self.visible(item.peer):
                self.stats.hidden_connects += 1
                return None
            if self.allowed is not None and item.inbound:
                item = PeerConnected(item.peer, item.addrs)  # the imposed graph vouches
            if item.peer in self._shown:
                return item if not item.inbound else None  # an inbound-only peer found
            self._shown.add(item.peer)
            return item
        # PeerDisconnected
        self._below.pop(item.peer, None)
        if item.peer in self._shown:
            self._shown.discard(item.peer)
            return item
        return None

    # ------------------------------------------------------------------ Transport
    @property
    def local_id(self) -> PeerId:
        return self.inner.local_id

    def listen_addrs(self) -> list[str]:
        return self.inner.listen_addrs()

    async def start(self) -> None:
        await self.inner.start()
        if self._pump is None:
            self._pump = asyncio.ensure_future(self._read_inner())

    async def _read_inner(self) -> None:
        try:
            while True:
                ev = await self.inner.next_event()
                if isinstance(ev, PeerConnected):
                    self._below_now.add(ev.peer)
                elif isinstance(ev, PeerDisconnected):
                    self._below_now.discard(ev.peer)
                out = self._filter(ev) if isinstance(ev, Received) else ev
                if out is not None:
                    self._queue.put_nowait(out)
        except TransportError:
            pass
        finally:
            self._queue.put_nowait(_CLOSED)

    async def connect(self, peer: PeerId, addrs: list[str]) -> None:
        if not self.visible(peer):
            self.stats.refused_sends += 1
            raise TransportError(f"link to {peer} is cut (not a neighbour or blocked)")
        await self.inner.connect(peer, addrs)

    async def send(self, to: PeerId, data: bytes) -> None:
        if self._closed:
            raise TransportError("transport is closed")
        if not self.visible(to):
            self.stats.refused_sends += 1
            raise TransportError(f"link to {to} is cut (not a neighbour or blocked)")
        await self.inner.send(to, data)

    async def next_event(self) -> TransportEvent:
        while True:
            if self._closed:
                raise TransportError("transport is closed")
            item = await self._queue.get()
            if isinstance(item, _Closed):
                self._queue.put_nowait(item)  # wake the next waiter too
                raise TransportError("transport is closed")
            out = self._filter(item)
            if out is not None:
                return out

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(_CLOSED)
        try:
            await self.inner.close()
        finally:
            if self._pump is not None:
                self._pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._pump
