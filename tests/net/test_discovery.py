"""Real libp2p on loopback: peers find each other through the Kademlia DHT.

A bootstrap node (DHT only, not a swarm member) and three peers that know only the
bootstrap's address. Every wait is a condition with a deadline; the module stays well
under a minute on an idle machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rumor.node.transport.base import PeerConnected, PeerDisconnected, Received
from rumor.node.transport.libp2p import Libp2pTransport
from rumor.node.transport.peer_book import PeerBook
from rumor.protocols.errors import TransportError
from rumor.protocols.identity import Identity

pytestmark = pytest.mark.net

SWARM = "test-discovery"
# Generous: on a 2-core box at load 60 (a 256-peer launch next to the tests) the first
# DHT rounds of three fresh peers took over 20 s; every wait ends once its condition holds.
DEADLINE = 60.0


class Watched:
    """A transport plus a task that tracks which members it currently sees."""

    def __init__(self, transport: Libp2pTransport) -> None:
        self.transport = transport
        self.live: set[str] = set()
        self.received: list[Received] = []
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        while True:
            try:
                event = await self.transport.next_event()
            except TransportError:
                return
            if isinstance(event, PeerConnected):
                self.live.add(event.peer)
            elif isinstance(event, PeerDisconnected):
                self.live.discard(event.peer)
            else:
                self.received.append(event)
            self.changed.set()

    async def close(self) -> None:
        await self.transport.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def wait_until(watched: list[Watched], cond: object, deadline: float) -> None:
    """Await ``cond()`` becoming true, re-checking whenever an event arrives."""
    assert callable(cond)
    async with asyncio.timeout(deadline):
        while not cond():
            waiters = [asyncio.create_task(w.changed.wait()) for w in watched]
            try:
                await asyncio.wait(waiters, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            for w in watched:
                w.changed.clear()


def peer(identity: Identity, bootstrap: list[str]) -> Libp2pTransport:
    return Libp2pTransport(
        identity,
        swarm=SWARM,
        bootstrap=bootstrap,
        discovery_interval=1.0,
        join_stagger=0.5,
    )


@pytest.fixture
async def mesh() -> AsyncIterator[tuple[Libp2pTransport, list[Identity], list[Watched]]]:
    boot = Libp2pTransport(
        Identity.from_seed(b"\xb0" * 32), swarm=SWARM, announce=False, discovery_interval=None
    )
    await boot.start()
    identities = [Identity.from_seed(bytes([0xA0 + i]) * 32) for i in range(3)]
    watched: list[Watched] = []
    try:
        for identity in identities:
            transport = peer(identity, boot.listen_addrs())
            await transport.start()
            watched.append(Watched(transport))
        yield boot, identities, watched
    finally:
        for w in watched:
            await w.close()
        await boot.close()


@pytest.mark.timeout(200)
async def test_peers_knowing_only_the_bootstrap_find_each_other(
    mesh: tuple[Libp2pTransport, list[Identity], list[Watched]],
) -> None:
    boot, _, watched = mesh
    ids = {w.transport.local_id for w in watched}
    await wait_until(watched, lambda: all(len(w.live) >= 2 for w in watched), DEADLINE)
    for w in watched:
        assert w.live == ids - {w.transport.local_id}
        assert boot.local_id not in w.live  # the bootstrap is not a swarm member
    # and the discovered members are usable
    first, second = watched[0], watched[1]
    await first.transport.send(second.transport.local_id, b"found you")
    await wait_until(watched, lambda: any(r.data == b"found you" for r in second.received), 10)
    found = await first.transport.discover_once()
    assert set(found) == ids - {first.transport.local_id}


@pytest.mark.timeout(200)
async def test_a_restarted_peer_on_a_new_port_is_reached_again(
    mesh: tuple[Libp2pTransport, list[Identity], list[Watched]],
) -> None:
    boot, identities, watched = mesh
    await wait_until(watched, lambda: all(len(w.live) >= 2 for w in watched), DEADLINE)
    victim = watched.pop()
    victim_id = victim.transport.local_id
    old_addrs = victim.transport.listen_addrs()
    await victim.close()
    await wait_until(watched, lambda: all(victim_id not in w.live for w in watched), DEADLINE)

    reborn = Watched(peer(identities[-1], boot.listen_addrs()))
    watched.append(reborn)
    await reborn.transport.start()
    assert reborn.transport.local_id == victim_id
    assert reborn.transport.listen_addrs() != old_addrs  # port 0: a new port
    started = time.monotonic()
    await wait_until(watched, lambda: all(victim_id in w.live for w in watched[:2]), DEADLINE)
    assert time.monotonic() - started < DEADLINE
    for w in watched[:2]:
        await w.transport.send(victim_id, b"welcome back from " + w.transport.local_id.encode())
    await wait_until(watched, lambda: len(reborn.received) >= 2, 10)


@pytest.mark.timeout(200)
async def test_connect_with_fresh_addresses_beats_stale_ones_and_dial_backoff(
    mesh: tuple[Libp2pTransport, list[Identity], list[Watched]],
) -> None:
    _, identities, watched = mesh
    await wait_until(watched, lambda: all(len(w.live) >= 2 for w in watched), DEADLINE)
    first = watched[0]
    victim = watched.pop()
    victim_id = victim.transport.local_id
    await victim.close()
    await wait_until(watched, lambda: victim_id not in first.live, DEADLINE)
    # Dialing the dead address fails and puts the peer in libp2p's negative dial cache.
    with pytest.raises(TransportError):
        await first.transport.send(victim_id, b"anyone?")

    # Back on a new port, silent: no bootstrap, no discovery. Only connect() can help.
    reborn = Watched(Libp2pTransport(identities[-1], swarm=SWARM, discovery_interval=None))
    watched.append(reborn)
    await reborn.transport.start()
    await first.transport.connect(victim_id, reborn.transport.listen_addrs())
    await wait_until(watched, lambda: victim_id in first.live, DEADLINE)
    await first.transport.send(victim_id, b"there you are")
    await wait_until(watched, lambda: any(r.data == b"there you are" for r in reborn.received), 10)


@pytest.mark.timeout(30)
async def test_a_busy_fixed_port_is_refused_despite_so_reuseport() -> None:
    first = Libp2pTransport(Identity.from_seed(b"\xc0" * 32), discovery_interval=None)
    await first.start()
    try:
        port = first.listen_addrs()[0].split("/")[4]
        second = Libp2pTransport(
            Identity.from_seed(b"\xc1" * 32),
            listen=[f"/ip4/127.0.0.1/tcp/{port}"],
            discovery_interval=None,
        )
        with pytest.raises(TransportError, match="cannot listen"):
            await second.start()
        await second.close()
    finally:
        await first.close()


@pytest.mark.timeout(240)
async def test_a_restarted_first_peer_on_a_new_port_rejoins_from_its_peer_book(
    tmp_path: Path,
) -> None:
    """No bootstrap node: A is the others' only bootstrap. A restarts on a new port
    with no --bootstrap at all; from its peer book it dials the members it met, and
    they (whose only bootstrap address for A is now stale) talk to it again."""
    ids = [Identity.from_seed(bytes([0xD0 + i]) * 32) for i in range(3)]
    books = [tmp_path / f"book-{i}.json" for i in range(3)]

    def member(i: int, bootstrap: list[str]) -> Libp2pTransport:
        return Libp2pTransport(ids[i], swarm=SWARM, bootstrap=bootstrap,
                               discovery_interval=1.0, join_stagger=0.5, peer_book=books[i])

    first = Watched(member(0, []))
    watched = [first]
    try:
        await first.transport.start()
        old_addrs = first.transport.listen_addrs()
        for i in (1, 2):
            w = Watched(member(i, old_addrs))
            watched.append(w)
            await w.transport.start()
        await wait_until(watched, lambda: all(len(w.live) >= 2 for w in watched), DEADLINE)
        await watched[0].close()
        others = watched[1:]
        await wait_until(others, lambda: all(ids[0].peer_id not in w.live for w in others),
                         DEADLINE)
        assert {p for p, _ in PeerBook(books[0], ids[0], SWARM).load()} == {
            ids[1].peer_id, ids[2].peer_id}

        reborn = Watched(member(0, []))
        watched[0] = reborn
        await reborn.transport.start()
        assert reborn.transport.listen_addrs() != old_addrs
        assert set(reborn.transport.remembered_peers()) == {ids[1].peer_id, ids[2].peer_id}
        await wait_until(watched, lambda: len(reborn.live) == 2 and all(
            ids[0].peer_id in w.live for w in others), DEADLINE)
        for w in others:
            await w.transport.send(ids[0].peer_id, b"hello " + w.transport.local_id.encode())
        await reborn.transport.send(ids[1].peer_id, b"back")
        await wait_until(watched, lambda: len(reborn.received) >= 2 and any(
            r.data == b"back" for r in others[0].received), 10)
    finally:
        for w in watched:
            await w.close()


@pytest.mark.timeout(200)
async def test_a_known_member_is_a_neighbour_without_any_dht_lookup() -> None:
    """``members=``: a launcher's peer dials the members it was given at once."""
    a = Watched(Libp2pTransport(Identity.from_seed(b"\xe0" * 32), swarm=SWARM,
                                discovery_interval=None))
    watched = [a]
    try:
        await a.transport.start()
        b = Watched(Libp2pTransport(Identity.from_seed(b"\xe1" * 32), swarm=SWARM,
                                    members=a.transport.listen_addrs(),
                                    discovery_interval=1.0, join_stagger=0.1))
        watched.append(b)
        await b.transport.start()
        await wait_until(watched, lambda: a.transport.local_id in b.live
                         and b.transport.local_id in a.live, DEADLINE)
    finally:
        for w in watched:
            await w.close()
