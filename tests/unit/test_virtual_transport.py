"""The virtual network under the simulator's transport: clock, latency, loss, blocks."""

from __future__ import annotations

import pytest

from rumor.node.simnet import LinkModel, SimNetwork
from rumor.node.transport.base import Received
from rumor.node.transport.virtual import VirtualHub, VirtualTransport
from rumor.protocols.errors import TransportError


def _pair(link: LinkModel) -> tuple[VirtualHub, VirtualTransport, VirtualTransport]:
    hub = VirtualHub(SimNetwork(link, seed=1))
    a, b = VirtualTransport(hub, "a"), VirtualTransport(hub, "b")
    a.start_nowait()
    b.start_nowait()
    return hub, a, b


def test_a_message_arrives_after_the_links_latency_on_the_virtual_clock() -> None:
    hub, a, b = _pair(LinkModel(latency=0.5, bandwidth=100.0))
    got: list[tuple[float, Received]] = []
    b.on_receive = lambda r: got.append((hub.network.clock.now(), r))
    assert a.send_nowait("b", b"x" * 50)
    assert hub.run_until(lambda: bool(got))
    assert got[0][0] == pytest.approx(0.5 + 50 / 100.0)
    assert got[0][1] == Received("a", b"x" * 50)


def test_blocked_links_and_lossy_links_drop_and_the_idle_network_says_so() -> None:
    hub, a, b = _pair(LinkModel(latency=0.1, loss=0.0))
    hub.network.block(a.index, b.index)
    assert not a.send_nowait("b", b"lost")
    assert hub.network.dropped == 1
    assert not hub.run_until(lambda: False)  # idle: nothing will arrive


async def test_next_event_runs_the_clock_until_something_arrives() -> None:
    hub, a, b = _pair(LinkModel(latency=3.0))
    await a.send("b", b"hello")
    assert hub.network.clock.now() == 0.0
    assert await b.next_event() == Received("a", b"hello")
    assert hub.network.clock.now() == pytest.approx(3.0)
    with pytest.raises(TransportError):
        await b.next_event()  # nothing else is scheduled
