"""FilteredTransport over MemoryTransport: only allowed, unblocked peers get through.

Every wait is an awaited event with a deadline; absence of an event is checked by the
filter's counters after a later event has passed through (the queue is ordered).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from rumor.node.transport.base import (
    PeerConnected,
    PeerDisconnected,
    Received,
    Transport,
    TransportEvent,
)
from rumor.node.transport.filtered import FilteredTransport
from rumor.node.transport.memory import MemoryHub, MemoryTransport
from rumor.protocols.errors import TransportError

DEADLINE = 5.0


async def next_event(t: Transport) -> TransportEvent:
    return await asyncio.wait_for(t.next_event(), DEADLINE)


async def next_matching(t: Transport, match: Callable[[TransportEvent], bool]) -> TransportEvent:
    async def find() -> TransportEvent:
        while True:
            ev = await t.next_event()
            if match(ev):
                return ev

    return await asyncio.wait_for(find(), DEADLINE)


@pytest.fixture
async def mesh() -> AsyncIterator[dict[str, FilteredTransport]]:
    """a-b, a-c allowed; a-d not (a triangle b-c-d is unfiltered among themselves)."""
    hub = MemoryHub()
    inner = {n: MemoryTransport(hub, n) for n in "abcd"}
    allowed = {"a": {"b", "c"}, "b": {"a", "c", "d"}, "c": {"a", "b", "d"}, "d": {"b", "c"}}
    wrapped = {n: FilteredTransport(inner[n], allowed[n]) for n in "abcd"}
    for t in wrapped.values():
        await t.start()
    try:
        yield wrapped
    finally:
        for t in wrapped.values():
            await t.close()


async def test_only_allowed_peers_are_seen_and_the_rest_are_counted(
    mesh: dict[str, FilteredTransport],
) -> None:
    a, d = mesh["a"], mesh["d"]
    for other in "bcd":  # a's inner transport connects to everyone underneath
        await a.inner.connect(other, [])
    seen = [await next_event(a), await next_event(a)]
    assert {e.peer for e in seen if isinstance(e, PeerConnected)} == {"b", "c"}
    await d.inner.send("a", b"from d")  # unfiltered underneath
    await mesh["b"].send("a", b"from b")
    ev = await next_event(a)
    assert ev == Received("b", b"from b")
    assert a.stats.hidden_connects == 1 and a.stats.hidden_messages == 1
    assert a.connected_peers() == ["b", "c"]
    with pytest.raises(TransportError):
        await a.send("d", b"x")
    with pytest.raises(TransportError):
        await d.send("a", b"x")  # both ends filter
    assert a.stats.refused_sends == 1 and d.stats.refused_sends == 1


async def test_block_disconnects_and_unblock_reconnects_a_still_connected_peer(
    mesh: dict[str, FilteredTransport],
) -> None:
    a, b = mesh["a"], mesh["b"]
    await a.connect("b", [])
    assert await next_event(a) == PeerConnected("b", ("memory://b",))
    assert await next_event(b) == PeerConnected("a", ("memory://a",))
    a.block(["b"])
    b.block(["a"])
    assert await next_event(a) == PeerDisconnected("b")
    assert await next_event(b) == PeerDisconnected("a")
    with pytest.raises(TransportError):
        await a.send("b", b"across the cut")
    with pytest.raises(TransportError):
        await b.send("a", b"across the cut")
    await b.inner.send("a", b"sneaked")  # in flight across the cut: dropped on arrival
    await mesh["c"].send("a", b"marker")  # arrives after it (one ordered queue)
    assert await next_event(a) == Received("c", b"marker")
    a.block(["b"])  # blocking twice is a no-op
    a.unblock(["b"])
    b.unblock(["a"])
    assert await next_event(a) == PeerConnected("b", ("memory://b",))
    assert await next_event(b) == PeerConnected("a", ("memory://a",))
    assert a.stats.hidden_messages == 1 and a.stats.blocks == 1 and a.stats.unblocks == 1
    await b.send("a", b"healed")
    assert await next_event(a) == Received("b", b"healed")


async def test_unblocking_a_peer_that_left_meanwhile_shows_nothing(
    mesh: dict[str, FilteredTransport],
) -> None:
    a, b, c = mesh["a"], mesh["b"], mesh["c"]
    await a.connect("b", [])
    await a.connect("c", [])
    await next_matching(a, lambda e: isinstance(e, PeerConnected) and e.peer == "c")
    a.block(["b"])
    assert await next_event(a) == PeerDisconnected("b")
    await b.close()  # its PeerDisconnected underneath is not shown again
    a.unblock(["b"])
    await c.send("a", b"after")
    assert await next_event(a) == Received("c", b"after")
    assert a.connected_peers() == ["c"]


async def test_a_peer_blocked_before_it_connects_is_never_shown(
    mesh: dict[str, FilteredTransport],
) -> None:
    a, c = mesh["a"], mesh["c"]
    a.block(["b"])
    await a.inner.connect("b", [])
    await a.connect("c", [])
    assert await next_event(a) == PeerConnected("c", ("memory://c",))
    assert a.stats.hidden_connects == 1
    a.unblock(["b"])
    assert await next_event(a) == PeerConnected("b", ("memory://b",))
    await c.send("a", b"x")
    assert await next_event(a) == Received("c", b"x")


async def test_a_cancelled_wait_loses_no_event_and_close_ends_next_event() -> None:
    hub = MemoryHub()
    a = FilteredTransport(MemoryTransport(hub, "a"), None)
    b = MemoryTransport(hub, "b")
    await a.start()
    await b.start()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(a.next_event(), 0.01)
    await b.connect("a", [])
    assert await next_event(a) == PeerConnected("b", ("memory://b",))
    await b.send("a", b"hi")
    assert await next_event(a) == Received("b", b"hi")
    waiter = asyncio.ensure_future(a.next_event())
    await asyncio.sleep(0)  # let it start waiting (not a wait for a condition)
    await a.close()
    with pytest.raises(TransportError):
        await asyncio.wait_for(waiter, DEADLINE)
    with pytest.raises(TransportError):
        await a.send("b", b"x")
    await b.close()
