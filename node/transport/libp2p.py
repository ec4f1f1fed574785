"""Libp2pTransport: the Transport interface over py-libp2p 0.8.1 (TCP + Noise + yamux).

Threads and bridge
------------------
py-libp2p is trio-based; rumor's node is asyncio. Each Libp2pTransport runs one libp2p
host in its own thread (``trio.run``). The asyncio side talks to it only through an
explicit bridge:

- asyncio -> trio: ``TrioToken.run_sync_soon`` starts a task in the host's nursery; the
  task settles an asyncio future with ``loop.call_soon_threadsafe``. Cancelling the
  awaiting asyncio task cancels the trio task (its CancelScope).
- trio -> asyncio: events are put on the transport's asyncio.Queue with
  ``loop.call_soon_threadsafe``. At most ``max_pending`` Received events wait there; the
  stream readers block beyond that, which backpressures the senders through yamux flow
  control instead of growing memory.

Wire (the lead copies this into docs/wire-transport.md)
-------------------------------------------------------
Connections: TCP, secured with Noise (``/noise``), multiplexed with yamux
(``/yamux/1.0.0``); mplex is never offered. At most one connection per peer pair. Peer IDs
are libp2p Ed25519 identity PeerIDs built from the rumor Identity's seed, so the rumor
PeerId text and the libp2p PeerID are the same string.

Model updates and every other rumor message: protocol ``/rumor/update/1``, negotiated
with multistream-select on a yamux stream opened by the *sender*. The stream carries a
sequence of frames, sender -> receiver only::

    frame   = length payload
    length  = 4 bytes, unsigned big-endian, number of payload bytes (0 allowed)
    payload = ``length`` opaque bytes (a rumor msgpack envelope; the transport never
              looks inside)

- The sender keeps one outbound stream per peer open and writes every message to it,
  one whole frame at a time (a lock per peer), so messages arrive in send order. A new
  stream is opened when none is open or the previous one was closed/reset by the
  receiver. The receiver never writes on the stream.
- The receiver reads frames until the stream ends. A frame whose length exceeds the
  receiver's ``max_message`` is refused: the receiver resets the stream without reading
  the payload and counts ``oversize`` (it does not crash or drop its other streams).
  A stream that ends inside a frame delivers nothing of that frame (``truncated``).
- Reads are bounded: at most 1 MiB per read call, never more than ``length`` in total.
- A closed stream (FIN) at a frame boundary is a clean end.
- Partially received frames are bounded (the bytes of frames begun and not yet handed
  to the asyncio side): at most ``max_inflight_per_peer`` per peer (all its streams and
  connections together) and ``max_inflight_total`` per transport. A chunk that would
  pass either bound resets its stream (``inflight_limit``) and frees the frame's bytes.
- A frame that makes no progress for ``frame_stall_timeout`` seconds once begun (its
  first header byte arrived), or takes longer than ``frame_stall_timeout + length /
  min_frame_rate``, resets its stream (``stalled``). Idle time between frames is fine.
- Every refused frame is counted in ``frame_rejects[reason]`` (oversize, truncated,
  stalled, inflight_limit) and logged as one WARNING line.

Inbound connection slots (py-libp2p 0.8.1 workaround, docs/upstream-libp2p.md): the swarm
takes a slot of its inbound limiter for each inbound connection and gives it back only
when the host stops, so a host refuses every inbound peer after 250 lifetime connections.
``_release_inbound_slots_on_close`` makes the slot (and the handler task that holds it)
go when the connection closes.

Discovery: the standard Kademlia DHT (``/ipfs/kad/1.0.0``, server mode). Every swarm
member ``provide``s the key ``swarm_cid(swarm)`` = CIDv1(raw, sha256("rumor/swarm/v1/" +
swarm)) (base32 text ``bafkrei...``) and looks for the others with GET_PROVIDERS on that
key, asking the bootstrap peers and the peers of its routing table. Identify and ping are
the libp2p defaults.

Events
------
``PeerConnected(peer, addrs)`` is emitted when a swarm member (a provider of the swarm key,
a peer passed to ``connect()``, or a peer that opened ``/rumor/update/1`` to us) has a live
connection and was not announced yet; ``PeerDisconnected(peer)`` when its last
connection closes. ``addrs`` are the dialled addresses, or what the peerstore knows (may
be empty for a peer that dialled us). Connections to non-members opened by DHT queries
are closed once they are older than ``query_conn_grace`` seconds.

Choice measured (benchmarks/transfer.py, two processes, loopback, a loaded 2-core box):
one reused stream per peer rather than a stream per message. A new stream costs a
multistream-select round trip: a 1 KiB message + ack took ~25 ms on a new stream vs
~6.5 ms on a reused one (~10-12 ms through this transport's bridge); for 10 MB updates
the two are within noise (~17-26 MB/s either way). A stream per message also could not
keep send order, since the receiver serves streams concurrently.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import hashlib
import logging
import math
import random
import socket
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import trio
from libp2p import new_host
from libp2p.abc import INotifee
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr
from multiaddr.protocols import P_P2P

from rumor.node.transport.addresses import advertised
from rumor.node.transport.base import (
    DEFAULT_MAX_MESSAGE,
    PeerConnected,
    PeerDisconnected,
    PeerId,
    Received,
    TransportEvent,
    new_frame_rejects,
)
from rumor.node.transport.mdns import MdnsDiscovery
from rumor.node.transport.peer_book import PeerBook
from rumor.node.transport.reachability import (
    Reachability,
    ReachabilityConfig,
    is_circuit,
    link_kind,
)
from rumor.protocols.errors import TransportError
from rumor.protocols.identity import Identity

__all__ = [
    "DEFAULT_LISTEN",
    "FRAME_HEADER_BYTES",
    "UPDATE_PROTOCOL",
    "Libp2pTransport",
    "TransportStats",
    "decode_frame_header",
    "encode_frame_header",
    "swarm_cid",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

UPDATE_PROTOCOL: Final = TProtocol("/rumor/update/1")
FRAME_HEADER_BYTES: Final = 4
DEFAULT_LISTEN: Final = "/ip4/127.0.0.1/tcp/0"
_READ_CHUNK: Final = 1 << 20
_MAX_FRAME_FIELD: Final = (1 << 32) - 1
DEFAULT_FRAME_STALL_TIMEOUT: Final = 15.0
DEFAULT_MIN_FRAME_RATE: Final = 64 * 1024.0
DEFAULT_TARGET_MEMBERS: Final = 24
# py-libp2p's ConnectionPruner closes every connection older than its 20 s grace that
# has no open stream whenever the host holds more than high_watermark connections
# (network/connection_pruner.py). high_watermark=0, as we had to switch the auto-connector
# off, kept it pruning all the time: a member between two update streams could lose its
# link. Prune only above py-libp2p's own connection limit; our discovery bounds the
# links (target_members) and closes DHT query connections itself. The auto-connector
# stays off (low_watermark=0).
PRUNE_ABOVE: Final = 300


def encode_frame_header(length: int) -> bytes:
    """The 4-byte big-endian length prefix of a ``/rumor/update/1`` frame."""
    if not 0 <= length <= _MAX_FRAME_FIELD:
        raise ValueError(f"frame length {length} does not fit 4 bytes")
    return length.to_bytes(FRAME_HEADER_BYTES, "big")


def decode_frame_header(header: bytes) -> int:
    if len(header) != FRAME_HEADER_BYTES:
        raise ValueError("a frame header is exactly 4 bytes")
    return int.from_bytes(header, "big")


def swarm_cid(swarm: str) -> str:
    """CIDv1 (raw codec, sha2-256) of ``"rumor/swarm/v1/" + swarm``, base32 text.

    Its multihash is the Kademlia key swarm members provide and look up.
    """
    digest = hashlib.sha256(b"rumor/swarm/v1/" + swarm.encode("utf-8")).digest()
    cid = b"\x01\x55\x12\x20" + digest  # version 1, raw (0x55), sha2-256 (0x12), 32 bytes
    return "b" + base64.b32encode(cid).decode("ascii").lower().rstrip("=")


def _swarm_key(swarm: str) -> bytes:
    """The DHT key (the CID's multihash) for ``swarm``."""
    return b"\x12\x20" + hashlib.sha256(b"rumor/swarm/v1/" + swarm.encode("utf-8")).digest()


@dataclass
class TransportStats:
    """Counters of one transport (read them from the asyncio side; ints are atomic)."""

    sent: int = 0
    received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    oversize: int = 0
    truncated: int = 0
    streams_opened: int = 0
    dial_failures: int = 0
    discovery_rounds: int = 0
    dht_failures: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class _Closed:
    """Queue sentinel: the transport closed; wakes every waiter of next_event."""


_CLOSED = _Closed()


def _split_p2p(addr: str) -> tuple[Multiaddr, str | None]:
    """Parse a multiaddr; return it without its last /p2p part, and that part's PeerID.

    The *last* one: in a relay address ``.../p2p/RELAY/p2p-circuit/p2p/PEER`` the peer
    is PEER and the rest (``.../p2p/RELAY/p2p-circuit``) is how to reach it.
    """
    maddr = Multiaddr(addr)
    try:
        pid = maddr.get_peer_id()
    except Exception:
        pid = None
    if pid and str(maddr).endswith(f"/p2p/{pid}"):
        return maddr.decapsulate_code(P_P2P), str(pid)
    return maddr, None


def _check_port_free(maddr: Multiaddr) -> None:
    """Raise TransportError when a fixed TCP listen port is already taken.

    py-libp2p 0.8.1 listens with SO_REUSEPORT (for hole punching), so a second host on a
    busy port starts "fine" and the kernel then splits incoming dials between the two.
    A plain bind (no SO_REUSEPORT) fails on such a port, which is what we want.
    """
    protos = {p.name for p in maddr.protocols()}
    if "tcp" not in protos:
        return
    port = int(maddr.value_for_protocol("tcp"))
    if port == 0:
        return
    if "ip6" in protos:
        family, host = socket.AF_INET6, str(maddr.value_for_protocol("ip6"))
    elif "ip4" in protos:
        family, host = socket.AF_INET, str(maddr.value_for_protocol("ip4"))
    else:
        return
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise TransportError(f"cannot listen on {maddr}: {exc.strerror}") from None


def _parse_peer(peer: PeerId) -> Any:
    try:
        return ID.from_base58(peer)
    except Exception as exc:
        raise TransportError(f"malformed peer id {peer!r}") from exc


class _Notifee(INotifee):
    """Connection events of the swarm, forwarded to the transport (trio side)."""

    def __init__(self, transport: Libp2pTransport) -> None:
        self._transport = transport

    async def opened_stream(self, network: Any, stream: Any) -> None:
        return None

    async def closed_stream(self, network: Any, stream: Any) -> None:
        return None

    async def connected(self, network: Any, conn: Any) -> None:
        self._transport._on_connected(conn)

    async def disconnected(self, network: Any, conn: Any) -> None:
        self._transport._on_disconnected(conn)

    async def listen(self, network: Any, multiaddr: Any) -> None:
        return None

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        return None


class _FrameReject(Exception):
    """An incoming frame is refused (trio side); ``reason`` is a FRAME_REJECT_REASONS key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


#: Set around the spawn of one inbound-connection handler: called with the muxed
#: connection once the swarm upgraded it (see _release_inbound_slots_on_close).
_ON_INBOUND_UPGRADED: contextvars.ContextVar[Callable[[Any], None] | None] = (
    contextvars.ContextVar("rumor_on_inbound_upgraded", default=None)
)


async def _cancel_when_closed(muxed_conn: Any, scope: Any) -> None:
    event = getattr(muxed_conn, "event_closed", None)
    if isinstance(event, trio.Event):
        await event.wait()
    else:  # another muxer: no event to wait on
        while not getattr(muxed_conn, "is_closed", True):
            await trio.sleep(1.0)
    scope.cancel()


def _release_inbound_slots_on_close(swarm: Any) -> bool:
    """Work around py-libp2p 0.8.1 keeping an inbound slot per connection forever.

    ``Swarm._handle_inbound_connection`` takes a slot of ``_inbound_limiter`` and calls
    ``_do_handle_inbound_connection``, which upgrades the connection and then awaits
    ``self.manager.wait_finished()`` (the whole swarm's lifetime) so that trio does not
    close the socket; the slot is released only after that. We wrap both methods on this
    swarm instance: the upstream handler runs unchanged in a child nursery, the upgrade
    reports the muxed connection, and when that connection closes we cancel the child,
    so the upstream ``finally`` releases the slot and the handler task ends. Outbound
    upgrades (DCUtR's dial-as-responder) are not inside a handler and pass through.

    Returns False (and logs) when the internals are not the ones this was written for.
    """
    handle = getattr(swarm, "_do_handle_inbound_connection", None)
    upgrade = getattr(swarm, "upgrade_inbound_raw_conn", None)
    if handle is None or upgrade is None or not hasattr(swarm, "_inbound_limiter"):
        logger.warning(
            "py-libp2p swarm internals changed: inbound-slot workaround not applied "
            "(see docs/upstream-libp2p.md)"
        )
        return False

    async def upgrade_and_report(raw_conn: Any, maddr: Any) -> Any:
        muxed_conn = await upgrade(raw_conn, maddr)
        report = _ON_INBOUND_UPGRADED.get()
        if report is not None:
            report(muxed_conn)
        return muxed_conn

    async def handle_until_closed(*args: Any) -> None:
        async with trio.open_nursery() as nursery:

            def upgraded(muxed_conn: Any) -> None:
                nursery.start_soon(_cancel_when_closed, muxed_conn, nursery.cancel_scope)

            token = _ON_INBOUND_UPGRADED.set(upgraded)
            try:
                nursery.start_soon(handle, *args)  # the child copies the context now
            finally:
                _ON_INBOUND_UPGRADED.reset(token)

    swarm.upgrade_inbound_raw_conn = upgrade_and_report
    swarm._do_handle_inbound_connection = handle_until_closed
    return True


class Libp2pTransport:
    """A libp2p host in its own trio thread, behind the asyncio Transport interface.

    Parameters
    ----------
    identity: the peer's Ed25519 identity; the libp2p PeerID equals ``identity.peer_id``.
    listen: multiaddrs to listen on (default ``/ip4/127.0.0.1/tcp/0``).
    swarm: swarm name; members provide and look up ``swarm_cid(swarm)`` on the DHT.
    bootstrap: multiaddrs with a ``/p2p/<id>`` part of DHT peers to join through.
    max_message: largest payload sent or accepted, in bytes.
    discovery_interval: seconds between background discovery rounds (+-20% jitter);
        ``None`` disables the background loop (call ``discover_once()`` yourself).
    announce: provide the swarm key (be discoverable as a member). A pure bootstrap node
        may set it to False.
    join_stagger: the first discovery round starts after a random delay in
        [0, join_stagger] s, so that many peers started together do not hit the
        bootstrap's ~12 concurrent DHT streams at once.
    query_timeout / connect_timeout / send_timeout: bounds of one DHT query, one dial,
        one send.
    reprovide_interval: seconds between re-announcements of the swarm key.
    max_pending: Received events queued for the asyncio side before readers block.
    max_inflight_per_peer: bytes of partially received frames one peer may have in
        flight, over all its streams (default 2 x max_message: an honest sender writes
        one frame at a time, and a replacement stream may begin while the old one's
        reader still holds its frame).
    max_inflight_total: the same bound over all peers (default 4 x max_message: four
        maximal frames at once, 256 MiB at the default max_message; model updates are
        usually far smaller, so it binds only under attack or for very large models).
    frame_stall_timeout: seconds without a byte inside a begun frame before its stream
        is reset (``stalled``).
    announce_addrs: extra addresses others should dial (a public IP, a port forward),
        advertised before the listen addresses; an unspecified listen IP (0.0.0.0, ::)
        is advertised as this machine's interface addresses (node.transport.addresses).
    target_members: discovery dials new members only while fewer than this many are
        connected (members that dial us count too and are always accepted): in a swarm
        of hundreds every peer keeps a random ~24-48 neighbours, not hundreds of
        connections (each costs memory, yamux and identify traffic).
    members: multiaddrs (with ``/p2p/<id>``) of peers known to be swarm members (a
        launcher knows its peers): dialled as members in the first discovery round, like
        the peer book's, without waiting for the DHT.
    peer_book: a file (``DATA_DIR/known_peers.json``) where the swarm members met are
        remembered (node.transport.peer_book); a restarted peer dials them in its first
        discovery round, and again whenever it has no member left, so it rejoins
        without any bootstrap.
    min_frame_rate: bytes/s below which a frame counts as stalled even if it trickles
        (the frame may take ``frame_stall_timeout + length / min_frame_rate`` s);
        ``None`` disables this.
    """

    def __init__(
        self,
        identity: Identity,
        listen: Sequence[str] = (DEFAULT_LISTEN,),
        swarm: str = "rumor",
        bootstrap: Sequence[str] = (),
        max_message: int = DEFAULT_MAX_MESSAGE,
        *,
        discovery_interval: float | None = 5.0,
        announce: bool = True,
        join_stagger: float = 1.0,
        query_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        send_timeout: float = 60.0,
        reprovide_interval: float = 60.0,
        query_conn_grace: float = 30.0,
        max_pending: int = 64,
        retry_attempts: int = 3,
        backoff_base: float = 0.25,
        close_timeout: float = 10.0,
        max_inflight_per_peer: int | None = None,
        max_inflight_total: int | None = None,
        frame_stall_timeout: float = DEFAULT_FRAME_STALL_TIMEOUT,
        min_frame_rate: float | None = DEFAULT_MIN_FRAME_RATE,
        announce_addrs: Sequence[str] = (),
        peer_book: Path | None = None,
        target_members: int = DEFAULT_TARGET_MEMBERS,
        members: Sequence[str] = (),
        reachability: ReachabilityConfig | None = None,
        mdns: bool = False,
    ) -> None:
        if max_message <= 0 or max_message > _MAX_FRAME_FIELD:
            raise ValueError("max_message must be in 1 .. 2**32-1")
        per_peer = 2 * max_message if max_inflight_per_peer is None else max_inflight_per_peer
        total = 4 * max_message if max_inflight_total is None else max_inflight_total
        if not max_message <= per_peer <= total:
            raise ValueError("need max_message <= max_inflight_per_peer <= max_inflight_total")
        if frame_stall_timeout <= 0:
            raise ValueError("frame_stall_timeout must be positive")
        if min_frame_rate is not None and min_frame_rate <= 0:
            raise ValueError("min_frame_rate must be positive or None")
        if discovery_interval is not None and discovery_interval <= 0:
            raise ValueError("discovery_interval must be positive or None")
        self.max_message = max_message
        self.stats = TransportStats()
        #: frames refused before they became messages, by reason (read from any thread)
        self.frame_rejects: Counter[str] = new_frame_rejects()
        self.max_inflight_per_peer = per_peer
        self.max_inflight_total = total
        #: the most partially received bytes held at once since start
        self.inflight_peak = 0
        self._frame_stall_timeout = frame_stall_timeout
        self._min_frame_rate = min_frame_rate
        self._identity = identity
        self._id: PeerId = identity.peer_id
        self._listen = [Multiaddr(a) for a in listen]
        self._announce_addrs: list[Multiaddr] = []
        for addr in announce_addrs:
            maddr, pid = _split_p2p(addr)
            if pid is not None and pid != self._id:
                raise ValueError(f"announce address {addr!r} names another peer")
            self._announce_addrs.append(maddr)
        self._swarm = swarm
        self._key = _swarm_key(swarm)
        self._bootstrap: list[tuple[Multiaddr, str]] = []
        for addr in bootstrap:
            maddr, pid = _split_p2p(addr)
            if pid is None:
                raise ValueError(f"bootstrap address {addr!r} lacks /p2p/<peer id>")
            if pid != self._id:
                self._bootstrap.append((maddr, pid))
        self._book = None if peer_book is None else PeerBook(peer_book, identity, swarm)
        self._remembered = [] if self._book is None else self._book.load()
        known = {peer for peer, _ in self._remembered}
        for addr in members:  # known members first: dialled like remembered ones
            maddr, pid = _split_p2p(addr)
            if pid is None:
                raise ValueError(f"member address {addr!r} lacks /p2p/<peer id>")
            if pid != self._id and pid not in known:
                known.add(pid)
                self._remembered.insert(0, (pid, (str(maddr),)))
        self._isolated_warned = False
        if target_members < 1:
            raise ValueError("target_members must be at least 1")
        self._target_members = target_members
        self._discovery_interval = discovery_interval
        self._announce = announce
        self._join_stagger = join_stagger
        self._query_timeout = query_timeout
        self._connect_timeout = connect_timeout
        self._send_timeout = send_timeout
        self._reprovide_interval = reprovide_interval
        self._query_conn_grace = query_conn_grace
        self._max_pending = max_pending
        self._retry_attempts = max(1, retry_attempts)
        self._backoff_base = backoff_base
        self._close_timeout = close_timeout
        self._reach_config = reachability
        self._reach: Reachability | None = None
        self._mdns_enabled = mdns
        self._mdns: MdnsDiscovery | None = None
        self._network_snapshot: dict[str, Any] = {}

        # asyncio side
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: asyncio.Queue[TransportEvent | _Closed] = asyncio.Queue()
        self._thread: threading.Thread | None = None
        self._started_fut: asyncio.Future[list[str]] | None = None
        self._exited_fut: asyncio.Future[None] | None = None
        self._addrs: list[str] = []
        self._closed = False

        # trio side (touched only in the host thread once it runs)
        self._token: Any = None
        self._nursery: Any = None
        self._stop: Any = None
        self._pending: Any = None
        self._host: Any = None
        self._dht: Any = None
        self._members: set[str] = set()
        self._live: set[str] = set()
        self._inbound_only: set[str] = set()  # live, but only because they dialled us
        self._conn_since: dict[str, float] = {}
        self._out_streams: dict[str, Any] = {}
        self._send_locks: dict[str, Any] = {}
        self._dial_locks: dict[str, Any] = {}
        self._dial_backoff: dict[str, tuple[float, int, frozenset[str]]] = {}
        self._last_provide = -1e18
        self._bootstrap_connected: set[str] = set()
        self._inflight_by_peer: dict[str, int] = {}
        self._inflight_total = 0

    # ------------------------------------------------------------------ asyncio API

    @property
    def local_id(self) -> PeerId:
        return self._id

    def remembered_peers(self) -> list[PeerId]:
        """Members loaded from the peer book at construction (most recent first)."""
        return [peer for peer, _ in self._remembered]

    def listen_addrs(self) -> list[str]:
        """Where others dial us, each with our ``/p2p/<id>`` part."""
        return list(self._addrs)

    @property
    def swarm(self) -> str:
        return self._swarm

    @property
    def inflight_bytes(self) -> int:
        """Bytes of partially received frames held now, over all peers."""
        return self._inflight_total

    async def start(self) -> None:
        if self._closed:
            raise TransportError("transport is closed")
        if self._thread is not None:
            return
        for maddr in self._listen:
            _check_port_free(maddr)
        self._loop = asyncio.get_running_loop()
        self._started_fut = self._loop.create_future()
        self._exited_fut = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._thread_main, name=f"rumor-libp2p-{self._id[-8:]}", daemon=True
        )
        self._thread.start()
        try:
            self._addrs = await self._started_fut
        except BaseException:
            await self.close()
            raise

    async def connect(self, peer: PeerId, addrs: list[str]) -> None:
        """Dial ``peer`` (a swarm member) at ``addrs``; fresh addrs replace stale ones."""
        self._check_open()
        if peer == self._id:
            return
        pid = _parse_peer(peer)
        maddrs = []
        for addr in addrs:
            try:
                maddr, addr_pid = _split_p2p(addr)
            except Exception as exc:
                raise TransportError(f"bad multiaddr {addr!r}") from exc
            if addr_pid is not None and addr_pid != peer:
                raise TransportError(f"address {addr} belongs to {addr_pid}, not {peer}")
            maddrs.append(maddr)
        await self._call(lambda: self._connect_member(pid, maddrs), self._connect_timeout + 1)

    async def send(self, to: PeerId, data: bytes) -> None:
        self._check_open()
        if len(data) > self.max_message:
            raise TransportError(
                f"message of {len(data)} bytes exceeds max_message={self.max_message}"
            )
        if to == self._id:
            raise TransportError("cannot send to self")
        pid = _parse_peer(to)
        await self._call(lambda: self._send_frame(pid, data), self._send_timeout)

    async def next_event(self) -> TransportEvent:
        if self._closed:
            raise TransportError("transport is closed")
        item = await self._events.get()
        if isinstance(item, _Closed):
            self._events.put_nowait(item)
            raise TransportError("transport is closed")
        if isinstance(item, Received):
            self._to_trio(self._release_pending)
        return item

    async def discover_once(self) -> list[PeerId]:
        """Run one discovery round now; return the swarm members found (not self)."""
        self._check_open()
        timeout = 4 * self._query_timeout + 2 * self._connect_timeout + 5
        found: list[str] = await self._call(self._discover_round, timeout)
        return found

    def network_status(self) -> dict[str, Any]:
        """Reachability (AutoNAT verdict, relay reservations, direct/relayed link per
        neighbour) and LAN discovery, as GET /status shows them under ``network``."""
        return dict(self._network_snapshot)

    def connected_peers(self) -> list[PeerId]:
        """Members currently announced with PeerConnected (a snapshot)."""
        return sorted(self._live.copy())  # set.copy is atomic under the GIL

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._events.put_nowait(_CLOSED)
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._to_trio(self._request_stop)
        exited = self._exited_fut
        if exited is not None and thread.is_alive():
            try:
                await asyncio.wait_for(asyncio.shield(exited), self._close_timeout)
            except TimeoutError:
                logger.warning("libp2p host of %s did not stop in %.0f s", self._id, 10)
        thread.join(timeout=1.0)
        if thread.is_alive():
            logger.warning("libp2p thread of %s is still alive after close", self._id)

    # ------------------------------------------------------------------ bridge

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("transport is closed")
        if self._token is None or self._thread is None:
            raise TransportError("transport is not started")

    def _post(self, fn: Callable[..., object], *args: object) -> None:
        """trio -> asyncio: run ``fn(*args)`` on the asyncio loop."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed
            logger.debug("asyncio loop closed; dropped a callback from the libp2p thread")

    def _to_trio(self, fn: Callable[[], object]) -> bool:
        """asyncio -> trio: run the sync ``fn`` in the host thread soon."""
        token = self._token
        if token is None:
            return False
        try:
            token.run_sync_soon(fn)
        except trio.RunFinishedError:
            return False
        return True

    async def _call(self, fn: Callable[[], Awaitable[T]], timeout: float) -> T:
        """Run ``fn()`` in the host's nursery, bounded by ``timeout``; await its result."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        scopes: list[Any] = []

        def settle_ok(value: T) -> None:
            if not fut.done():
                fut.set_result(value)

        def settle_exc(exc: BaseException) -> None:
            if not fut.done():
                fut.set_exception(exc)

        async def runner() -> None:
            settled = False
            try:
                with trio.CancelScope() as scope:
                    scopes.append(scope)
                    with trio.fail_after(timeout):
                        value = await fn()
                    self._post(settle_ok, value)
                    settled = True
            except TransportError as exc:
                self._post(settle_exc, exc)
                settled = True
            except trio.TooSlowError:
                self._post(settle_exc, TransportError(f"timed out after {timeout:.1f} s"))
                settled = True
            except Exception as exc:
                logger.debug("libp2p call failed", exc_info=True)
                self._post(settle_exc, TransportError(f"{type(exc).__name__}: {exc}"))
                settled = True
            finally:
                if not settled:
                    self._post(settle_exc, TransportError("transport closed or call cancelled"))

        def submit() -> None:
            nursery = self._nursery
            if nursery is None or self._stop is None or self._stop.is_set():
                self._post(settle_exc, TransportError("transport is closed"))
                return
            try:
                nursery.start_soon(runner)
            except RuntimeError:
                self._post(settle_exc, TransportError("transport is closed"))

        if not self._to_trio(submit):
            raise TransportError("transport is closed")
        try:
            return await fut
        except asyncio.CancelledError:

            def cancel() -> None:
                for scope in scopes:
                    scope.cancel()

            self._to_trio(cancel)
            raise

    def _release_pending(self) -> None:
        if self._pending is not None:
            self._pending.release()

    def _request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    # ------------------------------------------------------------------ host thread

    def _thread_main(self) -> None:
        try:
            trio.run(self._trio_main)
        except BaseException as exc:
            logger.warning("libp2p host of %s stopped with %r", self._id, exc)
            err = exc if isinstance(exc, TransportError) else TransportError(repr(exc))
            self._post(self._fail_start, err)
        finally:
            self._token = None
            self._post(self._on_thread_exit)

    def _fail_start(self, exc: BaseException) -> None:
        fut = self._started_fut
        if fut is not None and not fut.done():
            fut.set_exception(exc)

    def _on_thread_exit(self) -> None:
        self._fail_start(TransportError("libp2p host exited during start"))
        if not self._closed:
            logger.warning("libp2p host of %s exited unexpectedly", self._id)
            self._closed = True
            self._events.put_nowait(_CLOSED)
        if self._exited_fut is not None and not self._exited_fut.done():
            self._exited_fut.set_result(None)

    async def _trio_main(self) -> None:
        key_pair = create_new_key_pair(self._identity.seed_bytes())
        host = new_host(
            key_pair=key_pair,
            listen_addrs=self._listen,
            muxer_preference="YAMUX",
            # No auto-connector: by default 0.8.1 dials peer-store entries (every DHT
            # peer ever heard of) until ~200 connections are open, every 30 s; a 256-peer
            # launch then ran near-cliques. Discovery (target_members) decides instead.
            connection_config=ConnectionConfig(max_connections_per_peer=1, min_connections=0,
                                               low_watermark=0, high_watermark=PRUNE_ABOVE),
            addrs_factory=lambda found: advertised(found, self._announce_addrs),
        )
        if str(host.get_id()) != self._id:
            raise TransportError(f"libp2p PeerID {host.get_id()} differs from identity {self._id}")
        dht = KadDHT(host, DHTMode.SERVER, enable_random_walk=False)
        self._host, self._dht = host, dht
        self._stop = trio.Event()
        self._pending = trio.Semaphore(self._max_pending)
        host.set_stream_handler(UPDATE_PROTOCOL, self._handle_update_stream)
        host.get_network().register_notifee(_Notifee(self))
        _release_inbound_slots_on_close(host.get_network())
        if self._reach_config is not None:
            self._reach = Reachability(host, self._reach_config, self._reannounce)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(host.run(listen_addrs=self._listen))
            await stack.enter_async_context(background_trio_service(dht))
            if self._reach is not None:
                await stack.enter_async_context(self._reach.running())
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self._token = trio.lowlevel.current_trio_token()
                    if self._mdns_enabled:
                        self._mdns = MdnsDiscovery(host, self._on_lan_peer)
                        await self._mdns.start()
                    addrs = [str(a) for a in host.get_addrs()]
                    self._post(self._started, addrs)
                    if self._discovery_interval is not None:
                        nursery.start_soon(self._discovery_loop)
                    nursery.start_soon(self._network_status_loop)
                    await self._stop.wait()
                    nursery.cancel_scope.cancel()
            finally:
                self._nursery = None
                if self._mdns is not None:
                    with trio.move_on_after(self._close_timeout) as scope:
                        scope.shield = True
                        await trio.to_thread.run_sync(self._mdns.stop)
                with trio.move_on_after(self._close_timeout) as scope:
                    scope.shield = True
                    self._save_book(force=True)
                    await self._close_streams()
                    await host.close()

    def _started(self, addrs: list[str]) -> None:
        fut = self._started_fut
        if fut is not None and not fut.done():
            fut.set_result(addrs)

    async def _close_streams(self) -> None:
        streams, self._out_streams = list(self._out_streams.values()), {}
        for stream in streams:
            try:
                await stream.close()
            except Exception:
                logger.debug("closing an update stream failed", exc_info=True)

    # ------------------------------------------------------------------ events (trio)

    def _emit(self, event: TransportEvent) -> None:
        self._post(self._events.put_nowait, event)

    def _is_connected(self, peer: str) -> bool:
        network = self._host.get_network()
        try:
            conns = network.get_connections(ID.from_base58(peer))
        except Exception:
            return False
        return any(not c.is_closed for c in conns)

    def _peer_addrs(self, peer: str) -> tuple[str, ...]:
        try:
            return tuple(str(a) for a in self._host.get_peerstore().addrs(ID.from_base58(peer)))
        except Exception:
            return ()

    def _mark_live(self, peer: str, addrs: Iterable[str] = (), *, inbound: bool = False) -> None:
        if peer == self._id or not self._is_connected(peer):
            return
        if peer in self._live:
            if not inbound and peer in self._inbound_only:  # found it ourselves now
                self._inbound_only.discard(peer)
                self._emit(PeerConnected(peer, tuple(addrs) or self._peer_addrs(peer)))
            return
        self._live.add(peer)
        if inbound:
            self._inbound_only.add(peer)
        shown = tuple(addrs) or self._peer_addrs(peer)
        if self._book is not None:
            self._book.met(peer, shown)
        logger.info("peer %s connected (%s)%s", peer, ", ".join(shown),
                    " inbound" if inbound else "")
        self._emit(PeerConnected(peer, shown, inbound=inbound))

    def _on_connected(self, conn: Any) -> None:
        peer = str(conn.muxed_conn.peer_id)
        self._conn_since.setdefault(peer, trio.current_time())
        self._dial_backoff.pop(peer, None)
        if peer in self._members:
            self._mark_live(peer)

    def _on_disconnected(self, conn: Any) -> None:
        peer = str(conn.muxed_conn.peer_id)
        network = self._host.get_network()
        try:
            rest = [
                c
                for c in network.get_connections(conn.muxed_conn.peer_id)
                if c is not conn and not c.is_closed
            ]
        except Exception:
            rest = []
        if rest:
            return
        self._conn_since.pop(peer, None)
        self._out_streams.pop(peer, None)
        if peer in self._live:
            self._live.discard(peer)
            self._inbound_only.discard(peer)
            logger.info("peer %s disconnected", peer)
            self._emit(PeerDisconnected(peer))

    # ------------------------------------------------------------------ update streams

    async def _open_update_stream(self, pid: Any) -> Any:
        stream = await self._host.new_stream(pid, [UPDATE_PROTOCOL])
        self.stats.streams_opened += 1
        peer = str(pid)
        self._out_streams[peer] = stream
        self._nursery.start_soon(self._watch_outbound, peer, stream)
        return stream

    async def _watch_outbound(self, peer: str, stream: Any) -> None:
        """Read our outbound stream (the receiver never writes) to notice its end."""
        try:
            while True:
                data = await stream.read(_READ_CHUNK)
                if not data:
                    break
        except Exception as exc:  # a reset or closed stream: its end, noticed
            logger.debug("outbound stream to %s ended: %r", peer, exc)
        if self._out_streams.get(peer) is stream:
            del self._out_streams[peer]

    async def _ensure_stream(self, pid: Any) -> None:
        """Open our update stream to ``pid`` now; the receiver then knows we are a member."""
        peer = str(pid)
        lock = self._send_locks.setdefault(peer, trio.Lock())
        async with lock:
            if peer not in self._out_streams:
                await self._open_update_stream(pid)

    async def _open_back(self, pid: Any) -> None:
        """Open our update stream to a member that opened one to us, now rather than at
        our first send. A launch's ``go`` otherwise made every peer open its streams to
        the peers that had dialled it at once (64 peers: ~500 stream negotiations in the
        same second), and many of them timed out after 10 s: round 1 ended by timeout
        for the peers whose updates were stuck. Bounded: at most 2 x target_members
        outbound streams are opened this way, and a failure only means the first send
        opens it (as before)."""
        with trio.move_on_after(self._connect_timeout):
            try:
                await self._ensure_stream(pid)
            except Exception as exc:
                logger.debug("opening our update stream to %s failed: %r", pid, exc)

    async def _send_frame(self, pid: Any, data: bytes) -> None:
        peer = str(pid)
        network = self._host.get_network()
        if not self._is_connected(peer):
            try:
                known = self._host.get_peerstore().addrs(pid)
            except Exception:
                known = []
            if not known:
                raise TransportError(f"unknown peer {peer}: no connection and no address")
            network.unblock_peer(pid)
        lock = self._send_locks.setdefault(peer, trio.Lock())
        header = encode_frame_header(len(data))
        async with lock:
            stream = self._out_streams.get(peer)
            if stream is not None:
                try:
                    await stream.write(header)
                except Exception:
                    # A stale reused stream: nothing of this frame arrived; reopen once.
                    logger.debug("stale update stream to %s; reopening", peer)
                    self._out_streams.pop(peer, None)
                    stream = None
            if stream is None:
                try:
                    stream = await self._open_update_stream(pid)
                    await stream.write(header)
                except Exception as exc:
                    self._out_streams.pop(peer, None)
                    cause = f" ({exc.__cause__!r})" if exc.__cause__ is not None else ""
                    raise TransportError(f"cannot reach {peer}: {exc}{cause}") from exc
            try:
                if data:
                    await stream.write(data)
            except Exception as exc:
                self._out_streams.pop(peer, None)
                with contextlib.suppress(Exception):
                    await stream.reset()
                raise TransportError(f"send to {peer} failed mid-frame: {exc}") from exc
        self.stats.sent += 1
        self.stats.bytes_sent += len(data)
        if peer in self._members:
            self._mark_live(peer)

    async def _read_chunk(self, stream: Any, n: int, timeout: float | None) -> bytes | None:
        """Up to ``n`` bytes; b"" when the stream ended or failed, None after ``timeout``."""
        with trio.move_on_after(math.inf if timeout is None else max(0.0, timeout)):
            try:
                return bytes(await stream.read(n))
            except Exception:
                return b""
        return None

    def _take_inflight(self, peer: str, n: int) -> None:
        """Count ``n`` more partially received bytes of ``peer``, or refuse them."""
        mine = self._inflight_by_peer.get(peer, 0) + n
        total = self._inflight_total + n
        if mine > self.max_inflight_per_peer or total > self.max_inflight_total:
            raise _FrameReject(
                "inflight_limit",
                f"{mine} B in flight from this peer (max {self.max_inflight_per_peer}), "
                f"{total} B in this node (max {self.max_inflight_total})",
            )
        self._inflight_by_peer[peer] = mine
        self._inflight_total = total
        self.inflight_peak = max(self.inflight_peak, total)

    def _give_inflight(self, peer: str, n: int) -> None:
        if n == 0:
            return
        mine = self._inflight_by_peer.get(peer, 0) - n
        if mine > 0:
            self._inflight_by_peer[peer] = mine
        else:
            self._inflight_by_peer.pop(peer, None)
        self._inflight_total -= n

    async def _read_frame(self, stream: Any, peer: str) -> bytes | None:
        """The next frame's payload; None at a clean end; _FrameReject when refused.

        The returned payload has already taken a slot of ``_pending``; its bytes count as
        in flight until then.
        """
        stall = self._frame_stall_timeout
        header = await self._read_chunk(stream, FRAME_HEADER_BYTES, None)  # idle is fine
        if not header:
            return None
        began = trio.current_time()
        while len(header) < FRAME_HEADER_BYTES:
            more = await self._read_chunk(stream, FRAME_HEADER_BYTES - len(header), stall)
            if more is None:
                raise _FrameReject("stalled", f"no header byte for {stall:g} s")
            if not more:
                raise _FrameReject("truncated", "stream ended inside a frame header")
            header += more
        length = decode_frame_header(header)
        if length > self.max_message:
            raise _FrameReject("oversize", f"{length} B frame > max {self.max_message} B")
        deadline = math.inf
        if self._min_frame_rate is not None:
            deadline = began + stall + length / self._min_frame_rate
        chunks: list[bytes] = []
        got = 0
        try:
            while got < length:
                wait = min(stall, deadline - trio.current_time())
                chunk = await self._read_chunk(stream, min(length - got, _READ_CHUNK), wait)
                if chunk is None:
                    why = "too slow" if wait < stall else f"no progress for {stall:g} s"
                    raise _FrameReject("stalled", f"{why} after {got} of {length} B")
                if not chunk:
                    raise _FrameReject("truncated", f"stream ended after {got} of {length} B")
                self._take_inflight(peer, len(chunk))
                got += len(chunk)
                chunks.append(chunk)
            payload = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            await self._pending.acquire()
            return payload
        finally:
            self._give_inflight(peer, got)

    def _reject_frame(self, peer: str, rej: _FrameReject) -> None:
        self.frame_rejects[rej.reason] += 1
        if rej.reason == "oversize":
            self.stats.oversize += 1
        elif rej.reason == "truncated":
            self.stats.truncated += 1
        logger.warning(
            "%s: frame reject %s from %s: %s; stream reset", self._id, rej.reason, peer, rej.detail
        )

    async def _handle_update_stream(self, stream: Any) -> None:
        pid = stream.muxed_conn.peer_id
        peer = str(pid)
        if peer not in self._members:
            self._members.add(peer)
        self._mark_live(peer, inbound=True)
        if (peer not in self._out_streams and self._nursery is not None
                and len(self._out_streams) < 2 * self._target_members):
            self._nursery.start_soon(self._open_back, pid)
        try:
            while True:
                payload = await self._read_frame(stream, peer)
                if payload is None:
                    break
                self.stats.received += 1
                self.stats.bytes_received += len(payload)
                self._emit(Received(peer, payload))
        except _FrameReject as rej:
            self._reject_frame(peer, rej)
            with contextlib.suppress(Exception):
                await stream.reset()
            return
        except Exception:
            logger.debug("update stream from %s failed", peer, exc_info=True)
            with contextlib.suppress(Exception):
                await stream.reset()
            return
        with contextlib.suppress(Exception):
            await stream.close()

    # ------------------------------------------------------------------ dialing

    def _replace_addrs(self, pid: Any, maddrs: Sequence[Multiaddr]) -> None:
        """Fresh addresses replace stale ones; lift libp2p's dial backoff for the peer."""
        peerstore = self._host.get_peerstore()
        peerstore.clear_addrs(pid)
        peerstore.add_addrs(pid, list(maddrs), 0)
        self._host.get_network().unblock_peer(pid)

    async def _dial(self, pid: Any, maddrs: Sequence[Multiaddr]) -> None:
        """Connect to ``pid``; with ``maddrs``, at exactly those addresses.

        Dials of one peer are serialized (a lock per peer), and given direct addresses
        are dialled directly (``Swarm.dial_addr``), not through the peer store: a DHT
        response or another dial may put a restarted peer's stale address back into
        the store at any moment, and libp2p's negative dial cache may hold the peer,
        so dialling "whatever the store says" raced with them (issue 10). Only a dial
        without addresses (a peer that dialled us) uses the store. A peer with relay
        (``/p2p-circuit``) addresses is behind NAT: we go through the relay first and
        let DCUtR find a direct link; its own addresses would only stall us.
        """
        peer = str(pid)
        lock = self._dial_locks.setdefault(peer, trio.Lock())
        async with lock:
            if self._is_connected(peer):
                return
            self._host.get_network().unblock_peer(pid)
            direct = [m for m in maddrs if not is_circuit(m)]
            circuits = [
                Multiaddr(f"{m}/p2p/{peer}") for m in maddrs if is_circuit(m)
            ] if self._reach is not None else []
            try:
                if circuits and self._reach is not None:
                    if maddrs:
                        self._replace_addrs(pid, maddrs)
                    try:
                        with trio.fail_after(self._connect_timeout * 2):
                            await self._reach.dial_circuit(pid, circuits)
                        return
                    except Exception:
                        if not direct:
                            raise
                with trio.fail_after(self._connect_timeout):
                    if direct:
                        await self._dial_addrs(pid, direct)
                    else:
                        await self._host.connect(PeerInfo(pid, []))
            except Exception:
                self.stats.dial_failures += 1
                raise
            if maddrs:  # they work: later dials (sends, DHT) find them in the store
                self._replace_addrs(pid, maddrs)

    async def _dial_addrs(self, pid: Any, maddrs: Sequence[Multiaddr]) -> None:
        """Dial the given addresses in turn until one connects (the store is not read)."""
        network = self._host.get_network()
        last: Exception | None = None
        for maddr in maddrs:
            try:
                conn = await network.dial_addr(maddr, pid)
            except Exception as exc:
                last = exc
                continue
            started = getattr(conn, "event_started", None)
            if isinstance(started, trio.Event):
                await started.wait()
            return
        raise TransportError(f"no address of {pid} answered: {last!r}")

    async def _connect_member(self, pid: Any, maddrs: Sequence[Multiaddr]) -> None:
        peer = str(pid)
        self._members.add(peer)
        self._dial_backoff.pop(peer, None)
        try:
            await self._dial(pid, maddrs)
            await self._ensure_stream(pid)
        except trio.TooSlowError:
            raise TransportError(f"dial to {peer} timed out") from None
        except Exception as exc:
            raise TransportError(f"cannot connect to {peer}: {exc}") from exc
        self._mark_live(peer, [str(a) for a in maddrs])

    # ------------------------------------------------------------------ discovery

    async def _retry(self, what: str, fn: Callable[[], Awaitable[T]], timeout: float) -> T | None:
        """``fn()`` bounded by ``timeout``, retried with exponential backoff and jitter."""
        delay = self._backoff_base
        for attempt in range(self._retry_attempts):
            with trio.move_on_after(timeout):
                try:
                    return await fn()
                except Exception as exc:
                    logger.debug("%s failed (attempt %d): %r", what, attempt + 1, exc)
            if attempt + 1 < self._retry_attempts:
                await trio.sleep(delay * random.uniform(0.5, 1.5))
                delay *= 2
        self.stats.dht_failures += 1
        logger.info("%s failed after %d attempts", what, self._retry_attempts)
        return None

    async def _discovery_loop(self) -> None:
        await trio.sleep(random.uniform(0.0, self._join_stagger))
        interval = self._discovery_interval or 5.0
        while True:
            try:
                await self._discover_round()
            except Exception:
                logger.warning("discovery round failed", exc_info=True)
            await trio.sleep(interval * random.uniform(0.8, 1.2))

    async def _ensure_bootstrap(self) -> bool:
        """Connect to the bootstrap peers; True when one of them was (re)joined now."""
        rejoined = False
        for maddr, peer in self._bootstrap:
            if self._is_connected(peer):
                continue
            pid = ID.from_base58(peer)

            async def dial(pid: Any = pid, maddr: Multiaddr = maddr) -> bool:
                await self._dial(pid, [maddr])
                return True

            if await self._retry(f"bootstrap dial {peer}", dial, self._connect_timeout):
                rejoined = True
                await self._dht.routing_table.add_peer(pid, skip_server_mode_check=True)
        if self._remembered and (self.stats.discovery_rounds == 1 or not self._live):
            rejoined = await self._rejoin_remembered() or rejoined
        isolated = (self._announce and not self._live
                    and bool(self._bootstrap or self._remembered)
                    and not any(self._is_connected(p) for _, p in self._bootstrap))
        if isolated and not self._isolated_warned:
            logger.warning(
                "%s: no bootstrap peer and no remembered member reachable (%s); "
                "still trying every %.0f s", self._id,
                ", ".join(str(m) for m, _ in self._bootstrap) or "no bootstrap",
                self._discovery_interval or 5.0)
        self._isolated_warned = isolated
        return rejoined

    async def _rejoin_remembered(self) -> bool:
        """Dial the members of the peer book; they join the DHT routing table."""
        joined = False
        limiter = trio.CapacityLimiter(8)

        async def one(peer: str, addrs: tuple[str, ...]) -> None:
            nonlocal joined
            if peer == self._id:
                return
            async with limiter:
                self._members.add(peer)
                await self._adopt(peer, [addrs] if addrs else [])
            if self._is_connected(peer):
                joined = True
                with contextlib.suppress(Exception):
                    await self._dht.routing_table.add_peer(
                        ID.from_base58(peer), skip_server_mode_check=True)

        async with trio.open_nursery() as nursery:
            for peer, addrs in self._remembered[: self._target_members]:
                nursery.start_soon(one, peer, addrs)
        return joined

    def _save_book(self, *, force: bool = False) -> None:
        """Refresh the live members' addresses in the peer book and write it if changed."""
        book = self._book
        if book is None:
            return
        for peer in list(self._live):
            book.met(peer, self._peer_addrs(peer))
        if book.dirty or force:
            book.save()

    async def _discover_round(self) -> list[str]:
        """One round: join, announce, look up the swarm key, dial, tidy connections."""
        self.stats.discovery_rounds += 1
        t0 = trio.current_time()
        rejoined = await self._ensure_bootstrap()
        now = trio.current_time()
        if self._announce and (rejoined or now - self._last_provide >= self._reprovide_interval):

            async def provide() -> bool:
                ok = bool(await self._dht.provide(swarm_cid(self._swarm)))
                if not ok and (self._bootstrap or self._dht.routing_table.size()):
                    raise TransportError("no peer accepted the provider record")
                return True

            if await self._retry("provide", provide, self._query_timeout):
                self._last_provide = now
        t1 = trio.current_time()
        found = await self._find_providers()
        t2 = trio.current_time()
        async with trio.open_nursery() as nursery:
            for peer, addr_sets in self._to_adopt(found):
                nursery.start_soon(self._adopt, peer, addr_sets)
        await self._close_query_connections()
        self._save_book()
        logger.debug(
            "discovery round: %d members; join+provide %.2f s, lookup %.2f s, dial %.2f s",
            len(found),
            t1 - t0,
            t2 - t1,
            trio.current_time() - t2,
        )
        return sorted(found)

    async def _find_providers(self) -> dict[str, list[tuple[str, ...]]]:
        """Providers of the swarm key: peer -> distinct address sets (deduped, no self).

        0.8.1's find_providers returns only the local store once it holds any record
        (it always holds our own after provide), so we ask the bootstrap peers and our
        routing table directly, with GET_PROVIDERS, each query bounded and retried.
        """
        store = self._dht.provider_store
        results: dict[str, list[tuple[str, ...]]] = {}

        def add(infos: Iterable[Any]) -> None:
            for info in infos:
                peer = str(info.peer_id)
                if peer == self._id:
                    continue
                addrs = tuple(sorted({str(_split_p2p(str(a))[0]) for a in info.addrs}))
                sets = results.setdefault(peer, [])
                if addrs and addrs not in sets:
                    sets.append(addrs)

        add(store.get_providers(self._key))
        targets: list[Any] = [ID.from_base58(p) for _, p in self._bootstrap]
        for pid in self._dht.routing_table.find_local_closest_peers(self._key, 20):
            if pid not in targets and str(pid) != self._id:
                targets.append(pid)
        limiter = trio.CapacityLimiter(3)

        async def ask(pid: Any) -> None:
            async with limiter:

                async def query() -> list[Any]:
                    providers, _closer = await store._get_providers_from_peer_with_closers(
                        pid, self._key
                    )
                    return list(providers)

                infos = await self._retry(f"GET_PROVIDERS at {pid}", query, self._query_timeout)
                if infos:
                    add(infos)

        async with trio.open_nursery() as nursery:
            for pid in targets:
                nursery.start_soon(ask, pid)
        return results

    def _to_adopt(self, found: dict[str, list[tuple[str, ...]]]
                  ) -> list[tuple[str, list[tuple[str, ...]]]]:
        """The found members to (re)connect: the live ones (to refresh them), plus random
        others while fewer than ``target_members`` are live (inbound ones count), so a
        big swarm is a random graph of bounded degree instead of a clique.

        Only those chosen become members. A provider we merely hold a connection to (a
        DHT query reached it) is not one: before, every provider found became a member
        and any such connection a neighbour, so the peers that provided first (found by
        everyone) grew to 25-32 neighbours at 64 peers, against a target of 12.
        Connected ones come first among the others (no dial needed).
        """
        live: list[tuple[str, list[tuple[str, ...]]]] = []
        connected: list[tuple[str, list[tuple[str, ...]]]] = []
        new: list[tuple[str, list[tuple[str, ...]]]] = []
        for item in found.items():
            peer = item[0]
            (live if peer in self._live
             else connected if self._is_connected(peer) else new).append(item)
        random.shuffle(connected)
        random.shuffle(new)
        room = max(0, self._target_members - len(self._live))
        chosen = (connected + new)[:room]
        for peer, _ in chosen:
            self._members.add(peer)
        return live + chosen

    async def _adopt(self, peer: str, addr_sets: list[tuple[str, ...]]) -> None:
        """Connect to a discovered member unless connected or backing off."""
        if not self._announce:
            return  # a pure bootstrap node serves the DHT but joins no swarm
        if self._is_connected(peer) and peer in self._out_streams:
            self._mark_live(peer)
            return
        now = trio.current_time()
        offered = frozenset(a for s in addr_sets for a in s)
        backoff = self._dial_backoff.get(peer)
        if backoff is not None and now < backoff[0] and offered <= backoff[2]:
            return
        pid = ID.from_base58(peer)
        for addrs in addr_sets or [()]:
            try:
                await self._dial(pid, [Multiaddr(a) for a in addrs])
                await self._ensure_stream(pid)
            except Exception as exc:
                logger.debug("dial %s at %s failed: %r", peer, addrs, exc)
                continue
            self._dial_backoff.pop(peer, None)
            self._mark_live(peer, addrs)
            return
        fails = backoff[1] + 1 if backoff is not None else 1
        delay = min(30.0, self._backoff_base * 2**fails) * random.uniform(0.5, 1.5)
        self._dial_backoff[peer] = (now + delay, fails, offered)

    def _on_lan_peer(self, pid: Any, maddrs: list[Multiaddr]) -> None:
        """mDNS found a libp2p peer on the LAN (trio side): treat it as a DHT peer.

        It is dialled and put in the routing table, so the next discovery round asks it
        for the swarm key's providers; only providers become members. No bootstrap is
        needed when every peer of the swarm is on the LAN.
        """
        if self._nursery is None or str(pid) == self._id:
            return

        async def join() -> None:
            try:
                await self._dial(pid, maddrs)
                await self._dht.routing_table.add_peer(pid, skip_server_mode_check=True)
            except Exception as exc:
                logger.debug("LAN peer %s at %s: %r", pid, maddrs, exc)
                return
            if self._mdns is not None:
                self._mdns.joined.add(str(pid))
            if self._discovery_interval is not None:
                await self._discover_round()

        self._nursery.start_soon(join)

    def _reannounce(self) -> None:
        """Our addresses changed (a relay reservation came or went): provide again soon,
        so the swarm key's provider records carry the new /p2p-circuit address."""
        self._last_provide = -1e18
        if self._nursery is not None and self._discovery_interval is not None:
            self._nursery.start_soon(self._discover_round)

    async def _network_status_loop(self) -> None:
        """Refresh what network_status() returns, every second (trio side)."""
        while True:
            links: dict[str, str] = {}
            for pid, conns in list(self._host.get_network().connections.items()):
                kind = link_kind(list(conns))
                if kind is not None and str(pid) in self._live:
                    links[str(pid)] = kind
            snap: dict[str, Any] = (
                self._reach.snapshot(links) if self._reach is not None
                else {"reachability": "unknown", "links": links}
            )
            snap["mdns"] = self._mdns.snapshot() if self._mdns is not None else None
            self._network_snapshot = snap
            await trio.sleep(1.0)

    async def _close_query_connections(self) -> None:
        """Close connections DHT queries left to non-members (not bootstrap peers)."""
        keep = self._members | {p for _, p in self._bootstrap}
        now = trio.current_time()
        for pid in list(self._host.get_connected_peers()):
            peer = str(pid)
            if peer in keep:
                continue
            since = self._conn_since.get(peer, now)
            if now - since < self._query_conn_grace:
                continue
            with trio.move_on_after(self._connect_timeout):
                try:
                    await self._host.disconnect(pid)
                    logger.debug("closed DHT query connection to %s", peer)
                except Exception:
                    logger.debug("closing connection to %s failed", peer, exc_info=True)
