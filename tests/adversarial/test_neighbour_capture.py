"""Neighbour capture and flooding (issue 9, class 8) against a real node on loopback.

A real node (build_runtime + Libp2pTransport, in this process) with one honest
neighbour is hit by many fresh libp2p identities, each sending one valid, signed UPDATE
for the node's current round over ``/rumor/update/1``. Its neighbours must stay within
its real neighbours plus ``max_adopted`` strangers, its pushes must go to neighbours
only (the honest one among them every round), and a round near 2**62 is rejected and
counted as ``too_far_ahead``. Waits are conditions with deadlines.

Protocol tier (sans-IO Peers, virtual clock): a sole neighbour that sends a message per
millisecond gets at most one merge per local training round and cannot set the round
rate (the Peer buffers the newest update per sender and merges only after its own
training); a STATE for round 2**62 (unsolicited, or answering a PULL) is rejected and
counted instead of dragging the peer there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import PeerInfo
from multiaddr import Multiaddr

from rumor.node.assembly import NodeConfig, build_runtime
from rumor.node.runtime import NodeRuntime
from rumor.node.transport.libp2p import UPDATE_PROTOCOL, Libp2pTransport, encode_frame_header
from rumor.protocols.events import (
    Merge,
    MergeDone,
    MessageReceived,
    PeerDiscovered,
    Send,
    Start,
    TrainingDone,
)
from rumor.protocols.identity import Identity
from rumor.protocols.messages import Kind
from rumor.protocols.peer import Peer, PeerConfig
from rumor.protocols.validation import ValidationConfig
from tests.adversarial.hostile import HostileHost
from tests.helpers import SWARM as PSWARM
from tests.helpers import ident, update_bytes

SWARM = "capture"
SYBILS = 200
DEADLINE = 90.0
MAX_ADOPTED = 8


@dataclass
class SybilResult:
    sent: int = 0
    failures: int = 0
    first_failure: str = ""
    seconds: float = 0.0


def sybil_flood(addrs: list[str], count: int, dim: int, round_now: Callable[[], int],
                clients: int = 8) -> SybilResult:
    """``count`` fresh identities, ``clients`` at a time: each connects, sends one valid
    signed UPDATE for the node's current round, and disconnects. Blocking (trio)."""
    result = SybilResult()
    pid, maddrs = HostileHost.target(addrs)
    vec = np.zeros(dim, np.float32)

    async def one(n: int) -> None:
        me = Identity.generate()
        listen = [Multiaddr("/ip4/127.0.0.1/tcp/0")]
        host = new_host(key_pair=create_new_key_pair(me.seed_bytes()), listen_addrs=listen,
                        muxer_preference="YAMUX",
                        connection_config=ConnectionConfig(max_connections_per_peer=1))
        try:
            async with host.run(listen_addrs=listen):
                with trio.fail_after(15):
                    await host.connect(PeerInfo(pid, maddrs))
                    stream = await host.new_stream(pid, [UPDATE_PROTOCOL])
                    data = update_bytes(me, vec, round_=round_now(), seq=1, swarm=SWARM)
                    await stream.write(encode_frame_header(len(data)) + data)
                    result.sent += 1
                    with contextlib.suppress(Exception):
                        await stream.close()
                with contextlib.suppress(Exception), trio.move_on_after(5):
                    await host.disconnect(pid)
        except Exception as exc:
            result.failures += 1
            result.first_failure = result.first_failure or f"#{n}: {exc!r}"[:300]

    async def main() -> None:
        t0 = trio.current_time()
        limit = trio.CapacityLimiter(clients)

        async def bounded(n: int) -> None:
            async with limit:
                await one(n)

        async with trio.open_nursery() as nursery:
            for n in range(count):
                nursery.start_soon(bounded, n)
        result.seconds = trio.current_time() - t0

    trio.run(main)
    return result


@dataclass
class Node:
    rt: NodeRuntime
    task: asyncio.Task[None]
    events: list[dict[str, Any]]
    sent_to: list[str]

    @property
    def transport(self) -> Libp2pTransport:
        t = self.rt.transport
        assert isinstance(t, Libp2pTransport)
        return t


@contextlib.asynccontextmanager
async def real_node(tmp: Path, name: str, shard: int) -> AsyncIterator[Node]:
    me = Identity.generate()
    t = Libp2pTransport(me, listen=["/ip4/127.0.0.1/tcp/0"], swarm=SWARM,
                        discovery_interval=None, announce=False)
    events: list[dict[str, Any]] = []
    cfg = NodeConfig(swarm=SWARM, rounds=None, round_timeout=3.0, shards=4, shard=shard,
                     aggregator="mean")
    rt, start = build_runtime(cfg, me, t, data_dir=tmp / name, on_event=events.append)
    assert rt.peer.config.max_adopted == MAX_ADOPTED
    sent_to: list[str] = []
    send = t.send

    async def recording_send(to: str, data: bytes) -> None:
        sent_to.append(to)
        await send(to, data)

    t.send = recording_send  # type: ignore[method-assign]
    task = asyncio.ensure_future(rt.run(start))
    try:
        await until(lambda: bool(t.listen_addrs()) or task.done(), 60, f"{name} to listen")
        yield Node(rt, task, events, sent_to)
    finally:
        rt.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)


async def until(cond: Callable[[], bool], deadline: float, what: str) -> None:
    """Await ``cond()`` (state of another thread, no event to wait on) with a deadline."""
    end = time.monotonic() + deadline
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.net
@pytest.mark.timeout(240)
async def test_many_sybil_identities_cannot_capture_a_real_nodes_neighbours(
    tmp_path: Path,
) -> None:
    async with real_node(tmp_path, "target", 0) as node, \
            real_node(tmp_path, "honest", 1) as honest:
        target = node.rt.peer
        await honest.transport.connect(target.peer_id, node.transport.listen_addrs())
        await until(lambda: honest.rt.peer.peer_id in target.neighbours
                    and target.peer_id in honest.rt.peer.neighbours, 30, "the two to meet")
        before = target.round
        dim = node.rt.learner.dimension
        peak = 0

        async def watch_peak() -> None:
            nonlocal peak
            while True:
                peak = max(peak, len(target.neighbours))
                await asyncio.sleep(0.01)  # sampling, not waiting for a condition

        watcher = asyncio.ensure_future(watch_peak())
        try:
            flood = await asyncio.to_thread(sybil_flood, node.transport.listen_addrs(),
                                            SYBILS, dim, lambda: target.round)
        finally:
            watcher.cancel()
        print(f"sybil flood: {flood}, peak neighbours {peak}")  # shown with -s
        assert flood.sent >= SYBILS * 0.95, flood
        assert flood.seconds < 120.0, flood  # ~30 s alone on 2 shared cores
        # every Sybil message has been handled: accepted (adopted) or dropped and counted
        await until(lambda: target.validator.accepted
                    + target.validator.rejects["not_neighbour"] >= flood.sent, 30,
                    "the node to handle every Sybil message")
        real = {honest.rt.peer.peer_id}
        strangers = target.neighbours - real
        assert len(target.neighbours) <= len(real) + MAX_ADOPTED, len(target.neighbours)
        assert len(strangers) <= MAX_ADOPTED
        # while connected, a Sybil is reported as a swarm member (the transport announces
        # any peer that opens /rumor/update/1): at most ``clients`` (8) at once here
        assert peak <= len(real) + MAX_ADOPTED + 8, peak
        # the node keeps training with its honest neighbour, and pushes only to neighbours
        pushes_from, now_round = len(node.sent_to), target.round
        assert now_round >= before
        await until(lambda: target.round >= now_round + 2, 60, "two more rounds")
        pushed = set(node.sent_to[pushes_from:])
        assert honest.rt.peer.peer_id in pushed
        assert pushed <= target.neighbours | real
        assert node.task.done() is False


@pytest.mark.net
@pytest.mark.timeout(180)
async def test_a_round_near_2_62_over_the_wire_is_rejected_and_counted(tmp_path: Path) -> None:
    async with real_node(tmp_path, "target", 0) as node:
        target = node.rt.peer
        attacker = Identity.generate()
        t = Libp2pTransport(attacker, swarm=SWARM, discovery_interval=None, announce=False)
        await t.start()
        try:
            await t.connect(target.peer_id, node.transport.listen_addrs())
            vec = np.zeros(node.rt.learner.dimension, np.float32)
            await t.send(target.peer_id, update_bytes(attacker, vec, round_=2**62, seq=1,
                                                      swarm=SWARM))
            await until(lambda: target.validator.rejects["too_far_ahead"] >= 1, 30,
                        "the far-ahead update to be rejected")
            assert target.round < 1000
            assert node.rt.status()["rejects"]["too_far_ahead"] == 1
        finally:
            await t.close()


# ------------------------------------------------------------ protocol tier


def _peer(i: int) -> Peer:
    cfg = PeerConfig(validation=ValidationConfig(swarm=PSWARM, shape=(4,), flood_rate=1e9,
                                                 flood_burst=1e9))
    return Peer(ident(i), cfg)


def test_a_sole_neighbour_gets_one_merge_per_training_round_however_fast_it_sends() -> None:
    a, b = _peer(1), ident(2)
    a.handle(PeerDiscovered(b.peer_id, 0.0))
    a.handle(Start(0.0))
    merges, now, seq = 0, 0.0, 0
    for r in range(5):
        # 200 valid updates during a's training, rounds up to 400 ahead: all buffered
        for k in range(200):
            seq += 1
            now += 0.001
            data = update_bytes(b, np.full(4, float(k), np.float32), round_=r + 2 * k,
                                seq=seq)
            cmds = a.handle(MessageReceived(b.peer_id, data, now))
            merges += sum(isinstance(c, Merge) for c in cmds)
        assert merges == r  # nothing merged while a trains
        cmds = a.handle(TrainingDone(r, np.zeros(4, np.float32), 10, now))
        got = [c for c in cmds if isinstance(c, Merge)]
        assert len(got) == 1 and len(got[0].updates) == 1  # the newest update only
        merges += 1
        a.handle(MergeDone(r, np.zeros(4, np.float32), now))
        assert a.round == r + 1  # one round per own training, not per message
    assert a.validator.rejects["too_far_ahead"] == 0 and merges == 5


def test_a_state_for_round_2_62_is_rejected_and_counted_solicited_or_not() -> None:
    a, b = _peer(1), ident(2)
    a.handle(Start(0.0))
    vec = np.zeros(4, np.float32)
    # unsolicited: b was never PULLed
    a.adopted.add(b.peer_id)
    out = a.handle(MessageReceived(b.peer_id, update_bytes(b, vec, round_=2**62, seq=1,
                                                           kind=Kind.STATE), 1.0))
    assert not any(isinstance(c, Merge) for c in out)
    assert a.validator.rejects["unsolicited_state"] == 1
    # solicited: a meets b, PULLs it, b answers with round 2**62
    a.adopted.discard(b.peer_id)
    pulls = [c for c in a.handle(PeerDiscovered(b.peer_id, 2.0)) if isinstance(c, Send)]
    assert len(pulls) == 1
    out = a.handle(MessageReceived(b.peer_id, update_bytes(b, vec, round_=2**62, seq=2,
                                                           kind=Kind.STATE), 3.0))
    assert not any(isinstance(c, Merge) for c in out)
    assert a.validator.rejects["too_far_ahead"] == 1 and a.round == 0
    # an honest neighbour's answer within max_ahead is still taken for a catch-up
    c = ident(3)
    a.handle(PeerDiscovered(c.peer_id, 4.0))
    a.handle(MessageReceived(c.peer_id, update_bytes(c, vec, round_=7, seq=1,
                                                     kind=Kind.STATE), 5.0))
    assert a._states[c.peer_id].round == 7
