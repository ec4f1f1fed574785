"""Address handling of the NAT/LAN pieces: relay addresses, mDNS default, link kinds."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from multiaddr import Multiaddr

from rumor.node.transport.libp2p import _split_p2p
from rumor.node.transport.mdns import default_mdns
from rumor.node.transport.reachability import is_circuit, link_kind

RELAY = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"
PEER = "12D3KooWRndVhVZPCiQwHBBBdg769GyrPUW13zxwqQyf9r3ANaba"


def test_a_relay_address_belongs_to_the_peer_after_the_circuit_not_to_the_relay() -> None:
    addr, pid = _split_p2p(f"/ip4/10.0.0.1/tcp/4001/p2p/{RELAY}/p2p-circuit/p2p/{PEER}")
    assert pid == PEER
    assert str(addr) == f"/ip4/10.0.0.1/tcp/4001/p2p/{RELAY}/p2p-circuit"
    assert is_circuit(addr)


def test_a_plain_address_splits_off_its_peer_id() -> None:
    addr, pid = _split_p2p(f"/ip4/127.0.0.1/tcp/5/p2p/{PEER}")
    assert (str(addr), pid) == ("/ip4/127.0.0.1/tcp/5", PEER)
    assert _split_p2p("/ip4/127.0.0.1/tcp/5") == (Multiaddr("/ip4/127.0.0.1/tcp/5"), None)
    assert not is_circuit(addr)


@pytest.mark.parametrize(("listen", "on"), [
    (["/ip4/127.0.0.1/tcp/0"], False),          # loopback: nobody to find
    (["/ip4/192.168.1.20/tcp/4001"], True),     # a home LAN
    (["/ip4/10.78.0.1/tcp/4001"], True),
    (["/ip4/0.0.0.0/tcp/4001"], True),          # every interface, the LAN included
    (["/ip4/8.8.8.8/tcp/4001"], False),         # a public address: no multicast noise
    (["/ip6/::1/tcp/0"], False),
    (["/ip6/fe80::1/tcp/0"], True),
    (["/ip4/127.0.0.1/tcp/0", "/ip4/172.16.0.5/tcp/1"], True),
])
def test_mdns_is_on_by_default_only_on_private_networks(listen: list[str], on: bool) -> None:
    assert default_mdns(listen) is on


@dataclass
class FakeConn:
    addrs: list[str]
    is_closed: bool = False

    def get_transport_addresses(self) -> list[Multiaddr]:
        return [Multiaddr(a) for a in self.addrs]


def test_a_link_is_direct_once_any_open_connection_is_not_relayed() -> None:
    relayed = FakeConn([f"/p2p/{RELAY}/p2p-circuit/p2p/{PEER}"])
    direct = FakeConn(["/ip4/10.77.0.3/tcp/4001"])
    assert link_kind([relayed]) == "relayed"
    assert link_kind([relayed, direct]) == "direct"
    assert link_kind([relayed, FakeConn(["/ip4/1.2.3.4/tcp/1"], is_closed=True)]) == "relayed"
    assert link_kind([]) is None
