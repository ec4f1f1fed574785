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
import hashlib
import logging
import random
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
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

from rumor.node.transport.base import (
    DEFAULT_MAX_MESSAGE,
    PeerConnected,
    PeerDisconnected,
    PeerId,
    Received,
    TransportEvent,
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
    """Parse a multiaddr; return it without its /p2p part, and that part's PeerID."""
    maddr = Multiaddr(addr)
    try:
        pid = maddr.value_for_protocol("p2p")
    except Exception:
        pid = None
    if pid:
        maddr = maddr.decapsulate(Multiaddr(f"/p2p/{pid}"))
        return maddr, str(pid)
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
    ) -> None:
        if max_message <= 0 or max_message > _MAX_FRAME_FIELD:
            raise ValueError("max_message must be in 1 .. 2**32-1")
        if discovery_interval is not None and discovery_interval <= 0:
            raise ValueError("discovery_interval must be positive or None")
        self.max_message = max_message
        self.stats = TransportStats()
        self._identity = identity
        self._id: PeerId = identity.peer_id
        self._listen = [Multiaddr(a) for a in listen]
        self._swarm = swarm
        self._key = _swarm_key(swarm)
        self._bootstrap: list[tuple[Multiaddr, str]] = []
        for addr in bootstrap:
            maddr, pid = _split_p2p(addr)
            if pid is None:
                raise ValueError(f"bootstrap address {addr!r} lacks /p2p/<peer id>")
            if pid != self._id:
                self._bootstrap.append((maddr, pid))
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
        self._conn_since: dict[str, float] = {}
        self._out_streams: dict[str, Any] = {}
        self._send_locks: dict[str, Any] = {}
        self._dial_backoff: dict[str, tuple[float, int, frozenset[str]]] = {}
        self._last_provide = -1e18
        self._bootstrap_connected: set[str] = set()

    # ------------------------------------------------------------------ asyncio API

    @property
    def local_id(self) -> PeerId:
        return self._id

    def listen_addrs(self) -> list[str]:
        """Where others dial us, each with our ``/p2p/<id>`` part."""
        return list(self._addrs)

    @property
    def swarm(self) -> str:
        return self._swarm

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
            connection_config=ConnectionConfig(max_connections_per_peer=1),
        )
        if str(host.get_id()) != self._id:
            raise TransportError(f"libp2p PeerID {host.get_id()} differs from identity {self._id}")
        dht = KadDHT(host, DHTMode.SERVER, enable_random_walk=False)
        self._host, self._dht = host, dht
        self._stop = trio.Event()
        self._pending = trio.Semaphore(self._max_pending)
        host.set_stream_handler(UPDATE_PROTOCOL, self._handle_update_stream)
        host.get_network().register_notifee(_Notifee(self))
        async with host.run(listen_addrs=self._listen), background_trio_service(dht):
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self._token = trio.lowlevel.current_trio_token()
                    addrs = [str(a) for a in host.get_addrs()]
                    self._post(self._started, addrs)
                    if self._discovery_interval is not None:
                        nursery.start_soon(self._discovery_loop)
                    await self._stop.wait()
                    nursery.cancel_scope.cancel()
            finally:
                self._nursery = None
                with trio.move_on_after(self._close_timeout) as scope:
                    scope.shield = True
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

    def _mark_live(self, peer: str, addrs: Iterable[str] = ()) -> None:
        if peer == self._id or peer in self._live or not self._is_connected(peer):
            return
        self._live.add(peer)
        shown = tuple(addrs) or self._peer_addrs(peer)
        logger.info("peer %s connected (%s)", peer, ", ".join(shown))
        self._emit(PeerConnected(peer, shown))

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
        except Exception:
            pass
        if self._out_streams.get(peer) is stream:
            del self._out_streams[peer]

    async def _ensure_stream(self, pid: Any) -> None:
        """Open our update stream to ``pid`` now; the receiver then knows we are a member."""
        peer = str(pid)
        lock = self._send_locks.setdefault(peer, trio.Lock())
        async with lock:
            if peer not in self._out_streams:
                await self._open_update_stream(pid)

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
                    raise TransportError(f"cannot reach {peer}: {exc}") from exc
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

    async def _read_exactly(self, stream: Any, n: int) -> bytes | None:
        """``n`` bytes, or None when the stream ends first (at most 1 MiB per read)."""
        chunks: list[bytes] = []
        remaining = n
        while remaining > 0:
            try:
                chunk = await stream.read(min(remaining, _READ_CHUNK))
            except Exception:
                return None
            if not chunk:
                return None
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    async def _handle_update_stream(self, stream: Any) -> None:
        pid = stream.muxed_conn.peer_id
        peer = str(pid)
        if peer not in self._members:
            self._members.add(peer)
        self._mark_live(peer)
        try:
            while True:
                header = await self._read_exactly(stream, FRAME_HEADER_BYTES)
                if header is None:
                    break
                length = decode_frame_header(header)
                if length > self.max_message:
                    self.stats.oversize += 1
                    logger.warning(
                        "peer %s sent a %d-byte frame (max %d): stream reset",
                        peer,
                        length,
                        self.max_message,
                    )
                    await stream.reset()
                    return
                payload = await self._read_exactly(stream, length) if length else b""
                if payload is None:
                    self.stats.truncated += 1
                    logger.info("update stream from %s ended inside a frame", peer)
                    break
                await self._pending.acquire()
                self.stats.received += 1
                self.stats.bytes_received += length
                self._emit(Received(peer, payload))
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
        peer = str(pid)
        if self._is_connected(peer):
            return
        if maddrs:
            self._replace_addrs(pid, maddrs)
        else:
            self._host.get_network().unblock_peer(pid)
        try:
            with trio.fail_after(self._connect_timeout):
                await self._host.connect(PeerInfo(pid, list(maddrs)))
        except Exception:
            self.stats.dial_failures += 1
            raise
        if maddrs:
            # host.connect adds them with a 120 s TTL; keep them without expiry.
            self._replace_addrs(pid, maddrs)

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
        return rejoined

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
            for peer, addr_sets in found.items():
                self._members.add(peer)
                nursery.start_soon(self._adopt, peer, addr_sets)
        await self._close_query_connections()
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
