"""Hostile payloads over a real Libp2pTransport, decoded and validated (issue 9, class 1).

A 35 MiB frame of nested small containers crossed the transport and then cost the old
decoder ~2.3 GB and 20-60 s. It must now be refused fast, with memory bounded by the
frame itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from rumor.node.transport.base import Received
from rumor.node.transport.libp2p import Libp2pTransport, encode_frame_header
from rumor.protocols.identity import Identity
from rumor.protocols.validation import ValidationConfig, Validator
from tests.adversarial.frames import MiB, nested_frame, top_level_array, wide_maps
from tests.adversarial.hostile import HostileHost, rss_bytes
from tests.helpers import SWARM

pytestmark = pytest.mark.net


@contextlib.asynccontextmanager
async def node_and_attacker() -> AsyncIterator[tuple[Libp2pTransport, HostileHost]]:
    node = Libp2pTransport(Identity.generate(), discovery_interval=None)
    attacker = HostileHost()
    await node.start()
    try:
        await attacker.start()
        try:
            yield node, attacker
        finally:
            await attacker.close()
    finally:
        await node.close()


@pytest.mark.timeout(60)
async def test_a_35_mib_nested_container_frame_is_refused_fast_with_bounded_memory() -> None:
    frames = [nested_frame(35 * MiB), top_level_array(35 * MiB), wide_maps(8 * MiB)]
    validator = Validator(ValidationConfig(swarm=SWARM, shape=(10,)))
    async with node_and_attacker() as (node, attacker):
        addrs = node.listen_addrs()

        async def send_all() -> None:
            stream = await attacker.open_update_stream(addrs)
            for raw in frames:
                await HostileHost.write_frame(stream, raw)

        await attacker.run(send_all, timeout=45)
        for raw in frames:
            async with asyncio.timeout(45):
                event = await node.next_event()
                while not isinstance(event, Received):
                    event = await node.next_event()
            assert event.data == raw
            rss0 = rss_bytes()
            t0 = time.perf_counter()
            env = validator.check(event.data, now=0.0, current_round=0)
            elapsed = time.perf_counter() - t0
            grown = rss_bytes() - rss0
            assert env is None
            assert elapsed < 5.0, f"{len(raw) / MiB:.0f} MiB refused in {elapsed:.1f} s"
            assert grown < 200 * MiB, f"RSS grew {grown / MiB:.0f} MiB"
            del event
        assert validator.rejects["malformed"] == len(frames)
        assert sum(validator.rejects.values()) == len(frames)
        assert sum(node.frame_rejects.values()) == 0  # well-framed: the decoder's job


@pytest.mark.timeout(60)
async def test_length_prefix_beyond_max_message_is_refused_unread() -> None:
    async with node_and_attacker() as (node, attacker):
        addrs = node.listen_addrs()

        async def announce_four_gib() -> None:
            stream = await attacker.open_update_stream(addrs)
            await stream.write(encode_frame_header((1 << 32) - 1))

        await attacker.run(announce_four_gib)
        async with asyncio.timeout(45):
            while node.frame_rejects["oversize"] == 0:
                await asyncio.sleep(0.02)
        assert node.inflight_peak == 0
