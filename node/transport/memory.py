"""In-process transport for asyncio: a MemoryHub and MemoryTransports registered on it.

Every MemoryTransport owns one unbounded ``asyncio.Queue`` of events. ``send`` puts a
``Received`` straight into the receiver's queue, so delivery is whole, in order per
(sender, receiver) pair, and instantaneous. There is no latency, loss or bandwidth model
here: the discrete-event simulator models links itself. All transports on one hub must be
used from the same asyncio event loop.

Addresses are symbolic: a transport listens on ``memory://<peer id>``. ``connect`` needs
the peer to be registered on the same hub; the addresses passed to it are ignored.

Frames cannot be truncated, stall or pile up here (delivery is one synchronous put), so
the only frame reject is ``oversize``: a message larger than the *receiver's*
``max_message`` is refused, counted in the receiver's ``frame_rejects`` and logged, and
the sender gets TransportError.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from rumor.node.transport.base import (
    DEFAULT_MAX_MESSAGE,
    PeerConnected,
    PeerDisconnected,
    PeerId,
    Received,
    TransportEvent,
    new_frame_rejects,
)
from rumor.protocols.errors import TransportError

__all__ = ["MemoryHub", "MemoryTransport"]

logger = logging.getLogger(__name__)

_ADDR_PREFIX = "memory://"


class _Closed:
    """Queue sentinel: the transport was closed; wakes every waiter of next_event."""


_CLOSED = _Closed()


class MemoryHub:
    """Registry of live MemoryTransports, keyed by PeerId."""

    def __init__(self) -> None:
        self._transports: dict[PeerId, MemoryTransport] = {}

    def register(self, transport: MemoryTransport) -> None:
        existing = self._transports.get(transport.local_id)
        if existing is not None and existing is not transport:
            raise TransportError(f"peer {transport.local_id} is already on this hub")
        self._transports[transport.local_id] = transport

    def unregister(self, transport: MemoryTransport) -> None:
        if self._transports.get(transport.local_id) is transport:
            del self._transports[transport.local_id]

    def lookup(self, peer: PeerId) -> MemoryTransport | None:
        return self._transports.get(peer)

    def peers(self) -> list[PeerId]:
        return sorted(self._transports)


class MemoryTransport:
    """Transport over a MemoryHub; see rumor.node.transport.base for the contract."""

    def __init__(
        self,
        hub: MemoryHub,
        peer_id: PeerId,
        *,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        if max_message <= 0:
            raise ValueError("max_message must be positive")
        self.max_message = max_message
        self.frame_rejects: Counter[str] = new_frame_rejects()
        self._hub = hub
        self._id = peer_id
        self._events: asyncio.Queue[TransportEvent | _Closed] = asyncio.Queue()
        self._connected: set[PeerId] = set()
        self._started = False
        self._closed = False

    @property
    def local_id(self) -> PeerId:
        return self._id

    def listen_addrs(self) -> list[str]:
        return [_ADDR_PREFIX + self._id] if self._started and not self._closed else []

    @property
    def connected_peers(self) -> frozenset[PeerId]:
        return frozenset(self._connected)

    async def start(self) -> None:
        if self._closed:
            raise TransportError("transport is closed")
        if not self._started:
            self._hub.register(self)
            self._started = True

    async def connect(self, peer: PeerId, addrs: list[str]) -> None:
        self._check_open()
        other = self._remote(peer)
        if peer in self._connected:
            return
        self._connected.add(peer)
        other._connected.add(self._id)
        self._events.put_nowait(PeerConnected(peer, tuple(other.listen_addrs())))
        other._events.put_nowait(PeerConnected(self._id, tuple(self.listen_addrs())))

    async def send(self, to: PeerId, data: bytes) -> None:
        self._check_open()
        if len(data) > self.max_message:
            raise TransportError(
                f"message of {len(data)} bytes exceeds max_message={self.max_message}"
            )
        other = self._remote(to)
        if len(data) > other.max_message:
            other._reject_frame("oversize", self._id, f"{len(data)} B > max {other.max_message} B")
            raise TransportError(f"peer {to} refuses messages over {other.max_message} bytes")
        other._events.put_nowait(Received(self._id, bytes(data)))

    async def next_event(self) -> TransportEvent:
        if self._closed:
            raise TransportError("transport is closed")
        item = await self._events.get()
        if isinstance(item, _Closed):
            self._events.put_nowait(item)  # wake the next waiter too
            raise TransportError("transport is closed")
        return item

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._hub.unregister(self)
        for peer in sorted(self._connected):
            other = self._hub.lookup(peer)
            if other is not None and not other._closed:
                other._connected.discard(self._id)
                other._events.put_nowait(PeerDisconnected(self._id))
        self._connected.clear()
        self._events.put_nowait(_CLOSED)

    def _reject_frame(self, reason: str, peer: PeerId, detail: str) -> None:
        self.frame_rejects[reason] += 1
        logger.warning("%s: frame reject %s from %s: %s", self._id, reason, peer, detail)

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("transport is closed")
        if not self._started:
            raise TransportError("transport is not started")

    def _remote(self, peer: PeerId) -> MemoryTransport:
        other = self._hub.lookup(peer)
        if other is None or other._closed:
            raise TransportError(f"unknown or unreachable peer {peer}")
        return other
