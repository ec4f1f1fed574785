"""A hostile py-libp2p client against a real Libp2pTransport on loopback (issue 9).

Class 2: a node must keep admitting peers after many short-lived inbound connections
(py-libp2p 0.8.1 keeps an inbound slot per connection until the host stops).
Class 3: frames that announce much and stall are bounded in bytes and timed out.
Class 7: every frame-level reject is counted in ``frame_rejects``.

Waits are conditions with deadlines; the stall timeouts are configured short.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio

from rumor.node.transport.base import Received, TransportEvent
from rumor.node.transport.libp2p import Libp2pTransport, encode_frame_header
from rumor.protocols.identity import Identity
from tests.adversarial.hostile import HostileHost, churn_in_subprocess, rss_bytes

pytestmark = pytest.mark.net

MiB = 1024 * 1024
DEADLINE = 45.0


async def poll_until(cond: Callable[[], bool], deadline: float = DEADLINE) -> None:
    """Await ``cond`` (state of the libp2p thread, no event to wait on) with a deadline."""
    async with asyncio.timeout(deadline):
        while not cond():
            await asyncio.sleep(0.02)


async def next_matching(
    t: Libp2pTransport, match: Callable[[TransportEvent], bool], deadline: float = DEADLINE
) -> TransportEvent:
    async with asyncio.timeout(deadline):
        while True:
            event = await t.next_event()
            if match(event):
                return event


@contextlib.asynccontextmanager
async def started(**kwargs: Any) -> AsyncIterator[Libp2pTransport]:
    t = Libp2pTransport(Identity.generate(), discovery_interval=None, **kwargs)
    await t.start()
    try:
        yield t
    finally:
        await t.close()


@contextlib.asynccontextmanager
async def hostile() -> AsyncIterator[HostileHost]:
    h = HostileHost()
    await h.start()
    try:
        yield h
    finally:
        await h.close()


async def assert_honest_peer_gets_through(node: Libp2pTransport) -> None:
    """A fresh peer connects, sends one message and gets one back."""
    async with started() as honest:
        await honest.connect(node.local_id, node.listen_addrs())
        await honest.send(node.local_id, b"hello from an honest peer")
        got = await next_matching(node, lambda e: isinstance(e, Received))
        assert isinstance(got, Received)
        assert (got.sender, got.data) == (honest.local_id, b"hello from an honest peer")
        await node.send(honest.local_id, b"welcome")
        back = await next_matching(honest, lambda e: isinstance(e, Received))
        assert isinstance(back, Received) and back.data == b"welcome"


async def stall_stream(h: HostileHost, addrs: list[str], announce: int, send: int) -> Any:
    """Open an update stream, announce ``announce`` bytes, send ``send`` of them, stop."""

    async def go() -> Any:
        stream = await h.open_update_stream(addrs)
        await stream.write(encode_frame_header(announce))
        chunk = b"\x00" * MiB
        sent = 0
        with contextlib.suppress(Exception):  # the node may reset the stream meanwhile
            while sent < send:
                n = min(MiB, send - sent)
                await stream.write(chunk[:n])
                sent += n
        return stream

    return await h.run(go)


# ---------------------------------------------------------------- class 2: slots


@pytest.mark.timeout(120)
async def test_a_thousand_closed_inbound_connections_leave_room_for_an_honest_peer() -> None:
    async with started() as node:
        result = await churn_in_subprocess(node.listen_addrs(), 1000, clients=32)
        assert result.failures == 0, result.first_failure
        assert result.opened == 1000
        swarm = node._host.get_network()
        # every slot of the inbound limiter comes back once its connection closed
        await poll_until(lambda: swarm._inbound_limiter.borrowed_tokens == 0)
        await assert_honest_peer_gets_through(node)


# ---------------------------------------------------------------- class 3: stalls


@pytest.mark.timeout(60)
async def test_a_stalled_partial_frame_is_reset_counted_and_frees_its_bytes() -> None:
    async with started(max_message=4 * MiB, frame_stall_timeout=0.5) as node, hostile() as h:
        addrs = node.listen_addrs()
        await stall_stream(h, addrs, announce=4 * MiB, send=3 * MiB)
        await poll_until(lambda: node.frame_rejects["stalled"] == 1)
        assert node.inflight_bytes == 0
        assert node.inflight_peak <= 3 * MiB
        # a header cut short and left hanging is a stalled frame too
        await h.run(lambda: _write_raw(h, addrs, b"\x00\x00"))
        await poll_until(lambda: node.frame_rejects["stalled"] == 2)
        # the same attacker may still send a proper frame on a new stream
        await h.run(lambda: _write_raw(h, addrs, encode_frame_header(5) + b"fine!"))
        got = await next_matching(node, lambda e: isinstance(e, Received))
        assert isinstance(got, Received) and got.data == b"fine!"
        assert node.frame_rejects["inflight_limit"] == 0
        await assert_honest_peer_gets_through(node)


async def _write_raw(h: HostileHost, addrs: list[str], data: bytes) -> None:
    stream = await h.open_update_stream(addrs)
    await stream.write(data)


@pytest.mark.timeout(60)
async def test_a_trickling_frame_slower_than_the_minimum_rate_is_reset() -> None:
    async with started(
        max_message=4 * MiB, frame_stall_timeout=0.5, min_frame_rate=1 * MiB
    ) as node, hostile() as h:
        addrs = node.listen_addrs()

        async def trickle() -> None:
            stream = await h.open_update_stream(addrs)
            await stream.write(encode_frame_header(4 * MiB))
            with contextlib.suppress(Exception):
                while node.frame_rejects["stalled"] == 0:  # a byte every 0.1 s, forever
                    await stream.write(b"\x00" * 1000)
                    await trio.sleep(0.1)

        t0 = time.monotonic()
        await h.run(trickle, timeout=DEADLINE)
        # deadline = 0.5 s + 4 MiB / (1 MiB/s) = 4.5 s; generous upper bound for load
        assert time.monotonic() - t0 < 30
        assert node.frame_rejects["stalled"] == 1
        assert node.inflight_bytes == 0


@pytest.mark.timeout(60)
async def test_twelve_stalled_streams_from_one_connection_stay_within_the_peer_bound() -> None:
    max_message = 16 * MiB  # per peer 32 MiB, per node 64 MiB by default
    async with started(max_message=max_message, frame_stall_timeout=5.0) as node, hostile() as h:
        addrs = node.listen_addrs()
        await h.run(lambda: h.connect(addrs))
        rss0 = rss_bytes()
        peak_rss = rss0

        async def sample() -> None:
            nonlocal peak_rss
            while True:
                peak_rss = max(peak_rss, rss_bytes())
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        try:
            # 12 x 14 MiB = 168 MiB would be buffered without the bound
            await asyncio.gather(
                *(stall_stream(h, addrs, announce=15 * MiB, send=14 * MiB) for _ in range(12))
            )
            rejects = node.frame_rejects
            await poll_until(lambda: rejects["inflight_limit"] + rejects["stalled"] == 12)
        finally:
            sampler.cancel()
        assert rejects["inflight_limit"] >= 1
        assert node.inflight_peak <= node.max_inflight_per_peer == 2 * max_message
        assert node.inflight_bytes == 0
        assert peak_rss - rss0 < 150 * MiB, f"RSS grew {(peak_rss - rss0) / MiB:.0f} MiB"
        await assert_honest_peer_gets_through(node)


@pytest.mark.timeout(60)
async def test_many_peers_together_stay_within_the_node_bound() -> None:
    async with started(
        max_message=4 * MiB,
        max_inflight_per_peer=8 * MiB,
        max_inflight_total=12 * MiB,
        frame_stall_timeout=3.0,
    ) as node:
        addrs = node.listen_addrs()
        async with hostile() as h1, hostile() as h2, hostile() as h3:
            await asyncio.gather(
                *(
                    stall_stream(h, addrs, announce=4 * MiB, send=int(3.5 * MiB))
                    for h in (h1, h2, h3)
                    for _ in range(2)
                )
            )
            rejects = node.frame_rejects
            await poll_until(lambda: rejects["inflight_limit"] + rejects["stalled"] == 6)
        assert rejects["inflight_limit"] >= 1
        assert node.inflight_peak <= 12 * MiB
        assert node.inflight_bytes == 0


# ---------------------------------------------------------------- class 7: counted


@pytest.mark.timeout(60)
async def test_oversize_and_truncated_frames_are_counted_by_reason() -> None:
    async with started(max_message=1 * MiB) as node, hostile() as h:
        addrs = node.listen_addrs()
        await h.run(lambda: _write_raw(h, addrs, encode_frame_header(1 * MiB + 1)))
        await poll_until(lambda: node.frame_rejects["oversize"] == 1)

        async def truncate() -> None:
            stream = await h.open_update_stream(addrs)
            await stream.write(encode_frame_header(1000) + b"x" * 10)
            await stream.close()

        await h.run(truncate)
        await poll_until(lambda: node.frame_rejects["truncated"] == 1)
        assert dict(node.frame_rejects) == {
            "oversize": 1,
            "truncated": 1,
            "stalled": 0,
            "inflight_limit": 0,
        }
        assert node.stats.oversize == 1 and node.stats.truncated == 1
        assert node.inflight_bytes == 0
