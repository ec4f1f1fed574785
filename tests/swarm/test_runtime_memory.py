"""The real asyncio runtime over MemoryTransport: the same Peer, no sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rumor.node.api import start_api
from rumor.node.assembly import NodeConfig, build_runtime
from rumor.node.checkpoint import CHECKPOINT_FILE, read_checkpoint
from rumor.node.identity import load_or_create_identity
from rumor.node.transport.memory import MemoryHub, MemoryTransport
from tests.helpers import ident, memory_mesh, update_bytes

CFG = NodeConfig(swarm="mem", rounds=3, round_timeout=5.0, shards=4, aggregator="mean")


@pytest.mark.timeout(120)
async def test_memory_mesh_runs_rounds_checkpoints_and_serves_status(tmp_path: Path) -> None:
    hub = MemoryHub()
    rts = await memory_mesh(hub, 3, tmp_path, CFG)
    runner = await start_api(rts[0][0])
    port = runner.addresses[0][1]
    await asyncio.wait_for(asyncio.gather(*(rt.run(s) for rt, s, _ in rts)), 90)
    for rt, _, _ in rts:
        assert rt.finished and len(rt.history) == 3
        assert all(h["received"] == 2 for h in rt.history)  # no timeouts on a healthy mesh
        ckpt = read_checkpoint(rt.data_dir / CHECKPOINT_FILE)
        assert ckpt is not None and ckpt.round == 3
    async with aiohttp.ClientSession() as s:
        status = await (await s.get(f"http://127.0.0.1:{port}/status")).json()
        metrics = await (await s.get(f"http://127.0.0.1:{port}/metrics")).text()
    await runner.cleanup()
    assert status["round"] == 3 and status["finished"]
    assert rts[0][0].history[0]["neighbours"] == 2
    got = {(smp.name, tuple(sorted(smp.labels.items()))): smp.value
           for fam in text_string_to_metric_families(metrics) for smp in fam.samples}
    rt0 = rts[0][0]
    me = (("peer", rt0.peer.peer_id),)
    assert got[("rumor_round", me)] == 3
    assert got[("rumor_accuracy", me)] == rt0.learner.last_accuracy
    assert got[("rumor_round_duration_seconds_count", me)] == 3  # one per round
    assert got[("rumor_merge_seconds_count", me)] == 3
    assert got[("rumor_train_seconds_count", me)] == 3
    assert got[("rumor_bytes_sent_total", me)] == rt0.bytes_sent > 0
    assert got[("rumor_messages_sent_total", me)] == rt0.messages_sent
    assert got[("rumor_bytes_received_total", me)] > 0
    assert got[("rumor_rejects_total", (*me, ("reason", "bad_signature")))] == 0


@pytest.mark.timeout(120)
async def test_forged_update_over_the_transport_is_rejected_and_counted(tmp_path: Path) -> None:
    hub = MemoryHub()
    rts = await memory_mesh(hub, 2, tmp_path, NodeConfig(**{**CFG.__dict__, "rounds": 1}))
    target = rts[0][0]
    attacker = MemoryTransport(hub, ident(50).peer_id)
    await attacker.start()
    forged = update_bytes(ident(1), np.zeros(target.learner.dimension, np.float32), swarm="mem")
    # signed by peer 1's key, but delivered by the attacker's link identity
    await attacker.send(target.peer.peer_id, forged)
    await attacker.send(target.peer.peer_id, b"\x00garbage")
    await asyncio.wait_for(asyncio.gather(*(rt.run(s) for rt, s, _ in rts)), 90)
    assert target.peer.validator.rejects["sender_mismatch"] == 1, target.peer.validator.rejects
    assert target.peer.validator.rejects["malformed"] == 1
    assert target.finished
    await attacker.close()


@pytest.mark.timeout(120)
async def test_restarted_peer_keeps_its_id_and_resumes_from_checkpoint(tmp_path: Path) -> None:
    d = tmp_path / "peer"
    me = load_or_create_identity(d)
    assert (d / "identity.key").stat().st_mode & 0o777 == 0o600
    hub = MemoryHub()
    tr = MemoryTransport(hub, me.peer_id)
    rt, start = build_runtime(NodeConfig(**{**CFG.__dict__, "rounds": 2}), me, tr, data_dir=d)
    assert start == 0
    await asyncio.wait_for(rt.run(start), 60)
    again = load_or_create_identity(d)
    assert again.peer_id == me.peer_id
    tr2 = MemoryTransport(MemoryHub(), again.peer_id)
    rt2, start2 = build_runtime(NodeConfig(**{**CFG.__dict__, "rounds": 4}), again, tr2,
                                data_dir=d)
    assert start2 == 2
    np.testing.assert_array_equal(rt2.learner.params.numpy(), rt.learner.params.numpy())
    await asyncio.wait_for(rt2.run(start2), 60)
    assert [h["round"] for h in rt2.history] == [3, 4]
