"""Zero-config LAN discovery for a Libp2pTransport: libp2p mDNS (py-libp2p 0.8.1).

Each peer registers the standard libp2p mDNS service (``_p2p._udp.local.``, TXT records
``dnsaddr=<multiaddr>/p2p/<id>``, multicast 224.0.0.251:5353, via zeroconf) and
listens for the others'. A peer found this way is only a *libp2p* peer on the LAN;
the transport dials it and puts it in its DHT routing table, and the next discovery
round asks it for the providers of the swarm key, so only members of the same swarm
become neighbours (other swarms and other libp2p software on the LAN are ignored).

Threads: zeroconf runs its own thread and 0.8.1 reports found peers through a
process-wide handler list (``peerDiscovery``); the handler posts each find to the
transport's trio thread. Registering and unregistering block (zeroconf sends its
announcements), so they run in a worker thread.

When to use it (``rumor join --mdns`` / ``--no-mdns``; default: on when a listen
address is a private LAN address; see ``default_mdns``): on loopback there is nobody
to find, and on a public address a multicast service announcement is noise at best.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import trio
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.discovery.mdns.mdns import MDNSDiscovery
from multiaddr import Multiaddr

__all__ = ["MdnsDiscovery", "default_mdns"]

logger = logging.getLogger(__name__)


def default_mdns(listen: Sequence[str]) -> bool:
    """True when any listen address is a private (RFC 1918, ULA, link-local) IP.

    A wildcard (0.0.0.0 / ::) counts as private: such a peer listens on its LAN too.
    """
    for addr in listen:
        m = Multiaddr(addr)
        for proto in ("ip4", "ip6"):
            try:
                ip = ipaddress.ip_address(m.value_for_protocol(proto))
            except Exception:
                continue
            if ip.is_unspecified:
                return True
            if ip.is_loopback:
                continue
            if ip.is_private or ip.is_link_local:
                return True
    return False


class MdnsDiscovery:
    """mDNS announce + listen for one host; ``on_found(pid, maddrs)`` runs on trio."""

    def __init__(self, host: Any, on_found: Callable[[Any, list[Multiaddr]], None]) -> None:
        self._host = host
        self._on_found = on_found
        self._token = trio.lowlevel.current_trio_token()
        self._id = host.get_id()
        self._mdns: MDNSDiscovery | None = None
        self._lock = threading.Lock()
        self.found: set[str] = set()  # written on trio only
        self.joined: set[str] = set()  # LAN peers dialled and in the routing table
        self.error: str | None = None

    def _handler(self, info: Any) -> None:  # zeroconf's thread
        if info.peer_id == self._id:
            return
        addrs = [Multiaddr(str(a)) for a in info.addrs]
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._deliver, info.peer_id, addrs)

    def _deliver(self, pid: Any, addrs: list[Multiaddr]) -> None:
        clean = []
        for a in addrs:
            if a.get_peer_id():
                a = a.decapsulate(Multiaddr(f"/p2p/{a.get_peer_id()}"))
            clean.append(a)
        fresh = str(pid) not in self.found
        self.found.add(str(pid))
        if fresh or str(pid) not in self.joined:
            logger.info("mDNS: found %s at %s", pid, ", ".join(map(str, clean)))
            self._on_found(pid, clean)

    async def start(self) -> None:
        port = 0
        for a in self._host.get_transport_addrs():
            try:
                port = int(a.value_for_protocol("tcp"))
                break
            except Exception:
                continue

        def start() -> None:
            # not MDNSDiscovery.start(): it must run on trio (a system task that only
            # expires stale entries) but also blocks in register(); we register here
            with self._lock:
                self._mdns = MDNSDiscovery(self._host.get_network(), port=port, host=self._host)
                peerDiscovery.register_peer_discovered_handler(self._handler)
                self._mdns.broadcaster.register()

        try:
            await trio.to_thread.run_sync(start)
        except Exception as exc:  # no multicast route, no interface, ...
            self.error = f"{type(exc).__name__}: {exc}"
            logger.warning("mDNS discovery could not start: %s", self.error)

    def stop(self) -> None:
        """Unregister and close (blocking: call from a worker thread or at exit)."""
        with self._lock:
            peerDiscovery.unregister_peer_discovered_handler(self._handler)
            mdns, self._mdns = self._mdns, None
        if mdns is not None:
            try:
                mdns.stop()
            except Exception:
                logger.debug("mDNS stop failed", exc_info=True)

    def snapshot(self) -> dict[str, Any]:
        return {"found": len(self.found), "joined": len(self.joined), "error": self.error}
