"""Reachability for a Libp2pTransport: circuit relay v2, DCUtR hole punching, AutoNAT.

Runs on the transport's trio thread, next to its host (py-libp2p 0.8.1's own protocols,
with the workarounds listed in docs/upstream-libp2p.md):

- **Relay (HOP)**, when ``relay`` is on (``rumor join --relay``): this peer serves
  ``/libp2p/circuit/relay/0.2.0/hop`` to anyone: reservations and circuits, with no
  duration cap and a 1 TiB data budget per circuit (0.8.1 treats a 0 data limit as
  "nothing may pass", not "unlimited"). Every peer serves STOP (accepts circuits).
- **AutoNAT** (``/libp2p/autonat/1.0.0``): every peer answers dial-back requests
  (with a fresh dial: 0.8.1's server answers OK from the connection the request came
  on, so it calls every peer public); every ``check_interval`` s a peer asks up to
  ``autonat_servers`` directly connected peers to dial its direct addresses back.
  Verdict: ``public`` once one server reached it (a dial-back is proof), ``private``
  once every server answered and none reached it, ``unknown`` before any answer.
- **Reservations**: a peer that is not ``public`` reserves a slot on up to
  ``max_reservations`` connected peers that speak HOP and appends
  ``<relay addr>/p2p/<relay>/p2p-circuit/p2p/<self>`` to the addresses it announces
  (identify, DHT provider records), so others reach it through the relay.
  Reservations are renewed before they expire and after the relay comes back.
- **Dialing a circuit address**: 0.8.1's swarm drops ``/p2p-circuit`` addresses from
  every dial, so ``dial_circuit`` opens the circuit with the relay transport directly.
- **DCUtR** (``/libp2p/dcutr``), when ``hole_punch`` is on: over a relayed connection
  both sides exchange observed addresses and dial each other at once from their listen
  port (TCP simultaneous open); when a direct connection verifies, new streams use it
  and the relayed one is closed (the swarm trims it, or DCUtR after 60 s).

``snapshot()`` (trio side; the transport copies it for other threads) is what
GET /status shows under ``network``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import trio
from libp2p.abc import IHost
from libp2p.host.autonat.autonat import AUTONAT_PROTOCOL_ID, AutoNATService
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr

__all__ = [
    "RELAY_LIMITS",
    "Reachability",
    "ReachabilityConfig",
    "is_circuit",
    "link_kind",
]

logger = logging.getLogger(__name__)

#: What a rumor relay grants: no duration cap (0), a data budget no model exchange
#: reaches (0 would block all data in 0.8.1), room for a mesh's worth of peers.
RELAY_LIMITS: Final = RelayLimits(
    duration=0, data=1 << 40, max_circuit_conns=64, max_reservations=256
)
_RESERVE_MARGIN: Final = 300.0  # renew a reservation this long before it expires


def is_circuit(addr: object) -> bool:
    return "/p2p-circuit" in str(addr)


def link_kind(conns: list[Any]) -> str | None:
    """``direct`` if any open connection is not relayed, ``relayed`` if all are, else None."""
    kinds = set()
    for conn in conns:
        if getattr(conn, "is_closed", False):
            continue
        try:
            addrs = conn.get_transport_addresses()
        except Exception:
            addrs = []
        kinds.add("relayed" if addrs and all(is_circuit(a) for a in addrs) else "direct")
    if not kinds:
        return None
    return "direct" if "direct" in kinds else "relayed"


@dataclass(frozen=True)
class ReachabilityConfig:
    """What a peer does about NATs (``rumor join --relay / --no-hole-punch ...``).

    relay: serve circuit relay v2 (HOP) for other peers; for publicly reachable peers.
    auto_relay: reserve slots on relays when AutoNAT does not say ``public``.
    hole_punch: run DCUtR over relayed connections.
    autonat: ask peers to dial us back; off means the status stays ``unknown``
        (and a peer with ``auto_relay`` reserves anyway).
    max_reservations: relays to hold a reservation on at once.
    check_interval: seconds between AutoNAT checks and reservation upkeep.
    autonat_servers: peers asked per AutoNAT check.
    """

    relay: bool = False
    auto_relay: bool = True
    hole_punch: bool = True
    autonat: bool = True
    max_reservations: int = 2
    check_interval: float = 30.0
    autonat_servers: int = 4
    autonat_timeout: float = 10.0


class _DialBackAutoNAT(AutoNATService):
    """AutoNAT whose server really dials back.

    0.8.1's ``_try_dial`` calls ``host.connect``, which returns at once when a
    connection to the requester exists (the one the request came on), so it answers OK
    to everyone. We open a fresh TCP connection to the address and run the Noise
    handshake, which proves that the requester's peer ID listens there, then close it
    without registering it with the swarm (a swarm connection would be subject to the
    per-peer connection cap, which may trim the requester's real connection).
    """

    def __init__(self, host: Any, timeout: float) -> None:
        super().__init__(host, serve=True, confirmations=1)
        self._timeout = timeout

    async def _try_dial(self, peer_id: ID, addrs: list[bytes]) -> bytes | None:
        network: Any = self.host.get_network()
        for raw in addrs:
            maddr = Multiaddr(raw)
            transport = network.transport_manager.transport_for_dialing(maddr)
            if transport is None or is_circuit(maddr):
                continue
            conn = None
            try:
                with trio.fail_after(self._timeout):
                    conn = await transport.dial(maddr)
                    secured = await network.upgrader.upgrade_security(conn, True, peer_id)
                    await secured.close()
                return bytes(raw)
            except Exception as exc:
                logger.debug("AutoNAT dial-back to %s at %s failed: %r", peer_id, maddr, exc)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
        return None


class _DirectAddrsView:
    """The host as DCUtR should see it: ``get_addrs()`` lists our direct addresses.

    Everything else (and attribute writes: DCUtR registers itself on the host for its
    disconnect hook) goes to the host.
    """

    def __init__(self, host: Any, reach: Reachability) -> None:
        object.__setattr__(self, "_host", host)
        object.__setattr__(self, "_reach", reach)

    def get_addrs(self) -> list[Multiaddr]:
        reach: Reachability = self._reach
        return reach._direct_addrs()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._host, name, value)


class Reachability:
    """Relay, AutoNAT, reservations and DCUtR for one host (trio side)."""

    def __init__(
        self,
        host: Any,
        config: ReachabilityConfig,
        on_addrs_changed: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        #: called (trio side) when our circuit addresses changed: re-announce them
        self._on_addrs_changed = on_addrs_changed
        self._host = host
        self._id = str(host.get_id())
        self._protocol = CircuitV2Protocol(host, limits=RELAY_LIMITS, allow_hop=config.relay)
        # STOP only: our dials do not reserve on the relay they go through.
        self._circuits = CircuitV2Transport(
            host, self._protocol, RelayConfig(roles=RelayRole.STOP, limits=RELAY_LIMITS)
        )
        self._autonat = _DialBackAutoNAT(host, config.autonat_timeout)
        self._direct_addrs: Callable[[], list[Multiaddr]] = host.get_addrs
        # DCUtR reads our listen addresses from get_addrs(), which a private peer
        # narrows to its relay addresses: give it a view with the direct ones
        self._dcutr = (
            DCUtRProtocol(cast(IHost, _DirectAddrsView(host, self))) if config.hole_punch else None
        )
        self.status = "unknown"
        self._verdicts: dict[str, bool] = {}
        #: relay peer -> (expires at, wall clock; relay addrs without /p2p)
        self._reservations: dict[str, tuple[float, list[Multiaddr]]] = {}
        self._failed_relays: dict[str, float] = {}
        self._snapshot: dict[str, Any] = {}
        self.circuit_dials = 0
        self.circuit_dial_failures = 0
        self._refresh_snapshot()

    # ------------------------------------------------------------------ running

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Serve the protocols and keep reachability up while the block runs."""
        self._install_addrs()
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(background_trio_service(self._protocol))
            if self._dcutr is not None:
                await stack.enter_async_context(background_trio_service(self._dcutr))
            nursery = await stack.enter_async_context(trio.open_nursery())
            nursery.start_soon(self._upkeep_loop)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()

    def _install_addrs(self) -> None:
        """Make ``host.get_addrs()`` (identify, DHT records) include our circuit addrs.

        Not through ``addrs_factory``: 0.8.1's get_addrs strips from the *first* /p2p
        part of each address, which cuts a circuit address down to the relay's own
        address with our PeerID.
        """
        original = self._direct_addrs

        def get_addrs() -> list[Multiaddr]:
            circuits = self.circuit_addrs()
            if self.status == "private" and circuits:
                # what others can dial: a NATed peer's own addresses only stall them
                # (SYNs into a NAT get no answer), in DHT lookups as in dials
                return circuits
            return [*original(), *circuits]

        self._host.get_addrs = get_addrs

    def circuit_addrs(self) -> list[Multiaddr]:
        """Our addresses through the relays we hold a reservation on (with /p2p/self)."""
        out = []
        now = time.time()
        for relay, (expires, addrs) in self._reservations.items():
            if expires <= now:
                continue
            for a in addrs:
                out.append(Multiaddr(f"{a}/p2p/{relay}/p2p-circuit/p2p/{self._id}"))
        return out

    async def _upkeep_loop(self) -> None:
        await trio.sleep(1.0)  # let bootstrap dials and identify finish
        while True:
            try:
                await self.upkeep()
            except Exception:
                logger.warning("reachability upkeep failed", exc_info=True)
            self._refresh_snapshot()
            # until AutoNAT has an answer, look again soon (peers may be connecting)
            unsure = self.status == "unknown" or (
                self.config.auto_relay and self.status == "private" and not self._reservations
            )
            await trio.sleep(min(5.0, self.config.check_interval) if unsure
                             else self.config.check_interval)

    async def upkeep(self) -> None:
        """One AutoNAT check, then reservations as the verdict asks."""
        if self.config.autonat:
            await self.check_autonat()
        if self.config.auto_relay and self.status != "public":
            await self.reserve_relays()
        self._refresh_snapshot()

    # ------------------------------------------------------------------ AutoNAT

    def _direct_peers(self) -> list[ID]:
        network = self._host.get_network()
        out = []
        for pid, conns in list(network.connections.items()):
            if link_kind(list(conns)) == "direct":
                out.append(pid)
        return out

    def _speaks(self, pid: ID, protocol: str) -> bool:
        try:
            return protocol in self._host.get_peerstore().get_protocols(pid)
        except Exception:
            return False

    async def check_autonat(self) -> str:
        servers = [p for p in self._direct_peers() if self._speaks(p, AUTONAT_PROTOCOL_ID)]
        servers = servers[: self.config.autonat_servers]
        if not servers:
            return self.status
        addrs = [
            a.to_bytes()
            for a in self._host.get_transport_addrs()
            if not is_circuit(a)
        ]
        answered: dict[str, bool] = {}

        async def ask(pid: ID) -> None:
            try:
                with trio.fail_after(self.config.autonat_timeout + 5):
                    code, _ = await self._autonat.query_server(
                        pid, addrs, timeout=self.config.autonat_timeout + 4
                    )
                answered[str(pid)] = code == 0  # Message.OK
            except Exception as exc:
                logger.debug("AutoNAT query to %s failed: %r", pid, exc)

        async with trio.open_nursery() as nursery:
            for pid in servers:
                nursery.start_soon(ask, pid)
        if answered:
            self._verdicts = answered
            before = self.status
            self.status = "public" if any(answered.values()) else "private"
            if self.status != before:
                logger.info("AutoNAT: this peer is %s (%d servers answered)",
                            self.status, len(answered))
        return self.status

    # ------------------------------------------------------------------ reservations

    def _relay_addrs(self, pid: ID) -> list[Multiaddr]:
        try:
            addrs = list(self._host.get_peerstore().addrs(pid))
        except Exception:
            return []
        out = []
        for a in addrs:
            if is_circuit(a):
                continue
            if a.get_peer_id():
                a = a.decapsulate(Multiaddr(f"/p2p/{a.get_peer_id()}"))
            out.append(a)
        # the address we are connected on first: we know it works
        used: set[str] = set()
        for conn in self._host.get_network().connections.get(pid, []):
            with contextlib.suppress(Exception):
                used.update(str(a) for a in conn.get_transport_addresses())
        out.sort(key=lambda x: str(x) not in used)
        return out

    async def reserve_relays(self) -> list[str]:
        """Hold reservations on up to ``max_reservations`` relays; renew the ones expiring."""
        now = time.time()
        for relay in list(self._reservations):
            expires, _ = self._reservations[relay]
            if expires <= now or not self._is_connected(relay):
                del self._reservations[relay]
                logger.info("reservation on relay %s lapsed", relay)
                self._addrs_changed()
        candidates = [
            p
            for p in self._direct_peers()
            if self._speaks(p, HOP_PROTOCOL)
            and now >= self._failed_relays.get(str(p), 0.0)
        ]
        for pid in candidates:
            relay = str(pid)
            held = self._reservations.get(relay)
            if held is not None and held[0] - now > _RESERVE_MARGIN:
                continue
            if held is None and len(self._reservations) >= self.config.max_reservations:
                continue
            if await self._reserve(pid):
                self._failed_relays.pop(relay, None)
            else:
                self._failed_relays[relay] = now + 60.0
        return sorted(self._reservations)

    async def _reserve(self, pid: ID) -> bool:
        relay = str(pid)
        try:
            with trio.fail_after(15.0):
                stream = await self._host.new_stream(pid, [HOP_PROTOCOL])
                try:
                    ok = await self._circuits._make_reservation(stream, pid)
                finally:
                    with contextlib.suppress(Exception):
                        await stream.close()
        except Exception as exc:
            logger.info("reservation on relay %s failed: %r", relay, exc)
            return False
        if not ok:
            logger.info("relay %s refused a reservation", relay)
            return False
        expires = float(self._circuits._reservations.get(pid, 0)) or time.time() + 3600
        addrs = self._relay_addrs(pid)
        fresh = relay not in self._reservations
        self._reservations[relay] = (expires, addrs)
        if fresh:
            logger.info("reserved a slot on relay %s (%d addrs, %.0f s)", relay, len(addrs),
                        expires - time.time())
            self._addrs_changed()
        self._refresh_snapshot()
        return True

    def _addrs_changed(self) -> None:
        if self._on_addrs_changed is not None:
            self._on_addrs_changed()

    def _is_connected(self, peer: str) -> bool:
        try:
            conns = self._host.get_network().get_connections(ID.from_base58(peer))
        except Exception:
            return False
        return any(not c.is_closed for c in conns)

    # ------------------------------------------------------------------ dialing

    async def dial_circuit(self, pid: ID, circuits: list[Multiaddr]) -> None:
        """Connect to ``pid`` through one of its relay addresses (first that works)."""
        errors = []
        for maddr in circuits:
            self.circuit_dials += 1
            try:
                relay_part, target = self._circuits.parse_circuit_ma(maddr)
                if target != pid:
                    raise ValueError(f"{maddr} is not an address of {pid}")
                await self._circuits.dial(maddr)
                logger.info("connected to %s through relay %s", pid, relay_part.get_peer_id())
                return
            except Exception as exc:
                self.circuit_dial_failures += 1
                errors.append(f"{maddr}: {exc!r}")
        raise ConnectionError("; ".join(errors) or f"no relay address for {pid}")

    # ------------------------------------------------------------------ status

    def links(self) -> dict[str, str]:
        out = {}
        for pid, conns in list(self._host.get_network().connections.items()):
            kind = link_kind(list(conns))
            if kind is not None:
                out[str(pid)] = kind
        return out

    def _refresh_snapshot(self) -> None:
        now = time.time()
        dcutr = self._dcutr
        self._snapshot = {
            "reachability": self.status,
            "autonat": dict(self._verdicts),
            "relay_service": self.config.relay,
            "relay_clients": (
                len(self._protocol.resource_manager._reservations) if self.config.relay else 0
            ),
            "reservations": [
                {"relay": r, "expires_in": round(exp - now), "addrs": [str(a) for a in addrs]}
                for r, (exp, addrs) in sorted(self._reservations.items())
            ],
            "circuit_addrs": [str(a) for a in self.circuit_addrs()],
            "hole_punch": dcutr is not None,
            "hole_punched": sorted(str(p) for p in dcutr._direct_connections) if dcutr else [],
            "circuit_dials": self.circuit_dials,
            "circuit_dial_failures": self.circuit_dial_failures,
        }

    def snapshot(self, links: dict[str, str]) -> dict[str, Any]:
        """The status section (trio side): reachability now, plus ``links``."""
        self._refresh_snapshot()
        snap = dict(self._snapshot)
        snap["links"] = links
        return snap
