"""Circuit relay v2 and AutoNAT on loopback (no namespaces needed).

- A relay, a peer that reserves a slot on it and announces its /p2p-circuit address,
  and a third peer that reaches it *only* through that address: messages flow both
  ways, and both report the link as ``relayed`` (DCUtR off, so it stays relayed).
- AutoNAT with a real dial-back: on loopback every peer can dial every other, so a
  peer asking the others learns that it is ``public``.

The NAT case (two private peers, MASQUERADE, hole punching) is tests/net/test_nat.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest

from rumor.node.transport.base import Received
from rumor.node.transport.libp2p import Libp2pTransport
from rumor.node.transport.reachability import ReachabilityConfig
from rumor.protocols.identity import Identity
from tests.helpers import until

pytestmark = pytest.mark.net

SWARM = "test-relay"



@contextlib.asynccontextmanager
async def started(*transports: Libp2pTransport) -> AsyncIterator[None]:
    try:
        for t in transports:
            await t.start()
        yield
    finally:
        for t in transports:
            await t.close()


def node(reach: ReachabilityConfig, bootstrap: Sequence[str] = ()) -> Libp2pTransport:
    return Libp2pTransport(
        Identity.generate(), swarm=SWARM, bootstrap=bootstrap, discovery_interval=None,
        reachability=reach,
    )


async def next_of(t: Libp2pTransport, kind: type, deadline: float = 20.0) -> object:
    async with asyncio.timeout(deadline):
        while True:
            ev = await t.next_event()
            if isinstance(ev, kind):
                return ev


async def test_a_peer_reached_only_through_its_relay_address_exchanges_messages() -> None:
    relay = node(ReachabilityConfig(relay=True, auto_relay=False, hole_punch=False,
                                    check_interval=1.0))
    async with started(relay):
        boot = relay.listen_addrs()
        # autonat off: its status stays unknown, so it reserves like a private peer
        hidden = node(ReachabilityConfig(autonat=False, hole_punch=False, check_interval=1.0),
                      boot)
        caller = node(ReachabilityConfig(autonat=False, auto_relay=False, hole_punch=False),
                      boot)
        async with started(hidden, caller):
            await hidden.discover_once()  # joins the relay (its bootstrap)
            await until("a reservation", lambda: hidden.network_status().get("circuit_addrs"))
            net = hidden.network_status()
            assert net["reservations"][0]["relay"] == relay.local_id
            circuit = net["circuit_addrs"][0]
            assert circuit.endswith(f"/p2p/{relay.local_id}/p2p-circuit/p2p/{hidden.local_id}")
            await until("the relay counts its client",
                        lambda: relay.network_status().get("relay_clients") == 1)

            await caller.connect(hidden.local_id, [circuit])
            await caller.send(hidden.local_id, b"through the relay")
            got = await next_of(hidden, Received)
            assert isinstance(got, Received) and got.data == b"through the relay"
            assert got.sender == caller.local_id
            await hidden.send(caller.local_id, b"and back")
            back = await next_of(caller, Received)
            assert isinstance(back, Received) and back.data == b"and back"
            await until("caller's link status", lambda: caller.network_status().get(
                "links", {}).get(hidden.local_id) == "relayed")
            assert caller.network_status()["circuit_dials"] >= 1
            big = bytes(range(256)) * 4096  # 1 MiB through the relay, whole and in order
            await caller.send(hidden.local_id, big)
            got = await next_of(hidden, Received, 60.0)
            assert isinstance(got, Received) and got.data == big


async def test_autonat_says_public_when_others_can_dial_back() -> None:
    relay = node(ReachabilityConfig(relay=True, auto_relay=False, hole_punch=False,
                                    check_interval=1.0))
    async with started(relay):
        other = node(ReachabilityConfig(hole_punch=False, check_interval=1.0),
                     relay.listen_addrs())
        async with started(other):
            await other.discover_once()
            await until("an AutoNAT verdict",
                        lambda: other.network_status().get("reachability") == "public")
            net = other.network_status()
            assert net["autonat"] == {relay.local_id: True}
            assert net["reservations"] == []  # public peers need no relay
