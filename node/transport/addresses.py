"""Addresses a peer tells others: dialable ones, never ``0.0.0.0``.

A host listening on ``/ip4/0.0.0.0/tcp/P`` (every interface) reports that address,
which nobody can dial. :func:`advertised` turns it into one ``/ip4/IP/tcp/P`` per
IPv4 address of this machine's interfaces that are up (``/ip6/::`` likewise for IPv6),
routable ones first and loopback last, and puts the ``--announce`` addresses (a public
IP, a port forward) in front. The result is what identify and the DHT provider records
carry (py-libp2p's ``addrs_factory``), so what ``rumor join`` prints is what the others
dial.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path

import psutil
from multiaddr import Multiaddr

__all__ = ["MULTIADDR_FILE", "advertised", "interface_ips", "write_multiaddr_file"]

MULTIADDR_FILE = "multiaddr"

_UNSPECIFIED = {"ip4": "0.0.0.0", "ip6": "::"}


def interface_ips(family: str) -> list[str]:
    """IP addresses (``"ip4"`` or ``"ip6"``) of the interfaces that are up.

    Routable addresses first, then link-local-free private ones, loopback last;
    IPv6 link-local addresses (they need a zone) are left out.
    """
    want = socket.AF_INET if family == "ip4" else socket.AF_INET6
    try:
        stats = psutil.net_if_stats()
        addrs = psutil.net_if_addrs()
    except (OSError, RuntimeError):
        return ["127.0.0.1"] if family == "ip4" else ["::1"]
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for name, entries in addrs.items():
        if name in stats and not stats[name].isup:
            continue
        for entry in entries:
            if entry.family != want:
                continue
            try:
                ip = ipaddress.ip_address(entry.address.split("%", 1)[0])
            except ValueError:
                continue
            if ip.is_link_local or ip in found:
                continue
            found.append(ip)
    found.sort(key=lambda ip: (ip.is_loopback, ip.is_private, ip.packed))
    return [str(ip) for ip in found]


def _expand(addr: Multiaddr) -> list[Multiaddr]:
    protos = [p.name for p in addr.protocols()]
    if not protos or protos[0] not in _UNSPECIFIED:
        return [addr]
    family = protos[0]
    if str(addr.value_for_protocol(family)) != _UNSPECIFIED[family]:
        return [addr]
    rest = str(addr).split("/", 3)[3]  # "/ip4/0.0.0.0/tcp/P" -> "tcp/P"
    return [Multiaddr(f"/{family}/{ip}/{rest}") for ip in interface_ips(family)]


def advertised(candidates: Iterable[Multiaddr], announce: Sequence[Multiaddr] = ()
               ) -> list[Multiaddr]:
    """``announce`` first, then ``candidates`` with unspecified IPs expanded; no duplicates."""
    out: list[Multiaddr] = []
    seen: set[str] = set()
    for addr in [*announce, *(a for c in candidates for a in _expand(c))]:
        key = str(addr)
        if key not in seen:
            seen.add(key)
            out.append(addr)
    return out


def write_multiaddr_file(data_dir: Path, addrs: Sequence[str]) -> Path:
    """Write ``addrs`` (with /p2p/ID), one per line, to DATA_DIR/multiaddr (atomically).

    Others can then ``rumor join --bootstrap-file DATA_DIR/multiaddr``.
    """
    path = data_dir / MULTIADDR_FILE
    tmp = path.with_name(f".{MULTIADDR_FILE}.{os.getpid()}.tmp")
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp.write_text("".join(f"{a}\n" for a in addrs), encoding="utf-8")
    os.replace(tmp, path)
    return path
