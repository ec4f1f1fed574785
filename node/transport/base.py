"""The one transport interface; MemoryTransport and Libp2pTransport implement it.

A transport moves opaque byte strings between peers identified by PeerId (the
libp2p base58 text form, e.g. "12D3KooW..."). It knows nothing of rounds or models:
framing, size limits and delivery are its job; validation is the Peer's.

Contract (tests/unit/test_transport_conformance.py checks both implementations):
- ``start()`` then ``local_id`` is set and ``listen_addrs()`` lists where others dial.
- ``send(to, data)`` delivers ``data`` whole and in order per (sender, receiver) pair,
  or raises TransportError (unknown/unreachable peer, data larger than ``max_message``,
  transport closed). It never delivers a partial message.
- ``next_event()`` returns the next TransportEvent: Received, PeerConnected or
  PeerDisconnected. After ``close()`` it raises TransportError.
- ``close()`` is idempotent and releases every resource (tasks, threads, sockets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

PeerId = str

DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024


@dataclass(frozen=True)
class Received:
    sender: PeerId
    data: bytes


@dataclass(frozen=True)
class PeerConnected:
    peer: PeerId
    addrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class PeerDisconnected:
    peer: PeerId


TransportEvent = Received | PeerConnected | PeerDisconnected


class Transport(Protocol):
    """Async transport of whole messages between peers."""

    max_message: int

    @property
    def local_id(self) -> PeerId: ...

    def listen_addrs(self) -> list[str]: ...

    async def start(self) -> None: ...

    async def connect(self, peer: PeerId, addrs: list[str]) -> None: ...

    async def send(self, to: PeerId, data: bytes) -> None: ...

    async def next_event(self) -> TransportEvent: ...

    async def close(self) -> None: ...
