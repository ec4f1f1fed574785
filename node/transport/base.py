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
- ``frame_rejects`` counts, by reason, the frames this transport refused from peers
  before they became messages (FRAME_REJECT_REASONS); each reject also logs one line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol

PeerId = str

DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024

#: Why a transport refused an incoming frame (the keys of ``Transport.frame_rejects``):
#: ``oversize`` its length prefix exceeds ``max_message``; ``truncated`` the stream ended
#: inside it; ``stalled`` no progress for the stall timeout (or slower than the minimum
#: rate); ``inflight_limit`` the peer's or the node's partially received bytes would
#: exceed their bound.
FRAME_REJECT_REASONS: tuple[str, ...] = ("oversize", "truncated", "stalled", "inflight_limit")


def new_frame_rejects() -> Counter[str]:
    """A reject counter with every reason present at 0.

    The keys never change afterwards, so another thread may copy it (``dict(c)``) while
    the transport's thread increments it.
    """
    return Counter(dict.fromkeys(FRAME_REJECT_REASONS, 0))


@dataclass(frozen=True)
class Received:
    sender: PeerId
    data: bytes


@dataclass(frozen=True)
class PeerConnected:
    """A swarm member is reachable. ``inbound``: it only came to us (it opened our
    update stream) and we have not found it ourselves (discovery, ``connect``); a later
    PeerConnected with ``inbound=False`` says we have. The Peer bounds inbound-only
    peers like adopted strangers, so identities that dial in cannot capture its view."""

    peer: PeerId
    addrs: tuple[str, ...] = ()
    inbound: bool = False


@dataclass(frozen=True)
class PeerDisconnected:
    peer: PeerId


TransportEvent = Received | PeerConnected | PeerDisconnected


class Transport(Protocol):
    """Async transport of whole messages between peers."""

    max_message: int
    #: frames refused before they became messages, by reason (FRAME_REJECT_REASONS)
    frame_rejects: Counter[str]

    @property
    def local_id(self) -> PeerId: ...

    def listen_addrs(self) -> list[str]: ...

    async def start(self) -> None: ...

    async def connect(self, peer: PeerId, addrs: list[str]) -> None: ...

    async def send(self, to: PeerId, data: bytes) -> None: ...

    async def next_event(self) -> TransportEvent: ...

    async def close(self) -> None: ...
