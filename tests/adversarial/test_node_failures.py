"""Faults inside a real node runtime (issue 9, classes 4 and 5), over MemoryTransport.

Class 5 "silent hangs": training, merge and checkpoint work used to be fire-and-forget,
so a failure there left a node alive but stuck forever. Now each one ends
``NodeRuntime.run()`` with NodeFailure within a deadline, and ``rumor join`` exits 1
with one line. A start round outside what the wire can carry does the same.

Class 4 "poison through overflow", end to end: a node fed two finite updates of 3.4e38
per round keeps its own model, counts ``poisoned_merge`` and checkpoints finite values.

Every wait is ``asyncio.wait_for`` with a deadline; nothing sleeps to wait.
"""

from __future__ import annotations

import asyncio
import errno
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rumor.node import runtime as runtime_mod
from rumor.node.assembly import NodeConfig, build_runtime
from rumor.node.checkpoint import CHECKPOINT_FILE, read_checkpoint
from rumor.node.runtime import NodeFailure, NodeRuntime
from rumor.node.transport.memory import MemoryHub, MemoryTransport
from rumor.protocols.events import Merge, TrainingHints, Vector
from rumor.protocols.hooks import MergeOutcome
from tests.helpers import ident, update_bytes

SWARM = "faults"
CFG = NodeConfig(swarm=SWARM, rounds=3, round_timeout=0.5, shards=4, aggregator="mean")
DEADLINE = 60.0  # a failure must end run() well within this (it takes ~1 s here)


def _node(tmp: Path, cfg: NodeConfig = CFG, i: int = 0,
          hub: MemoryHub | None = None) -> tuple[NodeRuntime, int, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    me = ident(i)
    tr = MemoryTransport(hub or MemoryHub(), me.peer_id)
    rt, start = build_runtime(cfg, me, tr, data_dir=tmp / f"p{i}", on_event=events.append)
    return rt, start, events


async def _fails(rt: NodeRuntime, start: int, match: str) -> float:
    """run() ends with NodeFailure naming ``match``; returns how long it took."""
    t0 = time.monotonic()
    with pytest.raises(NodeFailure, match=match):
        await asyncio.wait_for(rt.run(start), DEADLINE)
    return time.monotonic() - t0


@pytest.mark.timeout(120)
async def test_training_that_raises_ends_run_with_node_failure(tmp_path: Path) -> None:
    rt, start, events = _node(tmp_path)

    def broken(round_: int, hints: TrainingHints | None = None) -> tuple[Vector, Vector]:
        raise RuntimeError("CUDA out of memory (injected)")

    rt.learner.train = broken  # type: ignore[method-assign]
    await _fails(rt, start, "RuntimeError: CUDA out of memory")
    assert [e["what"] for e in events if e["event"] == "failure"] == ["task"]
    assert not rt.finished and rt.history == []


@pytest.mark.timeout(120)
async def test_a_merger_that_raises_ends_run_with_node_failure(tmp_path: Path) -> None:
    rt, start, events = _node(tmp_path)
    assert rt.peer.merger is not None

    def broken(own: Vector, cmd: Merge) -> MergeOutcome:
        raise ValueError("rule exploded (injected)")

    rt.peer.merger.merge = broken  # type: ignore[method-assign]
    # alone, the peer trains, waits round_timeout for neighbours, then merges: boom
    await _fails(rt, start, "ValueError: rule exploded")
    assert [e["what"] for e in events if e["event"] == "failure"] == ["engine"]
    assert rt.history == []


@pytest.mark.timeout(120)
async def test_a_full_disk_at_checkpoint_ends_run_with_node_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, start, _ = _node(tmp_path)
    calls: list[Path] = []

    def disk_full(data_dir: Path, ckpt: object) -> Path:
        calls.append(data_dir)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runtime_mod, "save_checkpoint", disk_full)
    await _fails(rt, start, "No space left on device")
    assert len(calls) == 1  # the first checkpoint failed and nothing went on after it
    assert not (tmp_path / "p0" / CHECKPOINT_FILE).exists()
    assert rt.history == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("start", [-1, 2**63, 2**70])
async def test_a_start_round_the_wire_cannot_carry_ends_run_with_node_failure(
    tmp_path: Path, start: int
) -> None:
    rt, _, _ = _node(tmp_path)
    took = await _fails(rt, start, "round")
    assert took < 10.0  # at once, not after a round of training and waiting
    assert rt.history == []


@pytest.mark.timeout(120)
def test_join_exits_1_with_one_line_when_the_disk_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``rumor join`` (in this process, real libp2p on loopback) with no space for its
    checkpoint: exit code 1 and one line naming the failure, within the deadline."""
    from rumor.scripts import cli

    def disk_full(data_dir: Path, ckpt: object) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runtime_mod, "save_checkpoint", disk_full)
    argv = ["join", "--node-dir", str(tmp_path / "d"), "--swarm", SWARM, "--rounds", "3",
            "--round-timeout", "0.5", "--aggregator", "mean", "--json"]
    t0 = time.monotonic()
    code = cli.main(argv)  # its own asyncio.run, in the main thread (signal handlers)
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("rumor:")]
    assert code == 1, err
    assert lines == ["rumor: NodeFailure: peer stopped: OSError: [Errno 28] "
                     "No space left on device"], err
    assert took < DEADLINE


# ------------------------------------------------------ class 4, end to end


@pytest.mark.timeout(120)
@pytest.mark.parametrize("aggregator", ["mean", "variance-corrected"])
async def test_a_node_fed_overflowing_updates_keeps_its_model_and_checkpoints_finite(
    tmp_path: Path, aggregator: str
) -> None:
    hub = MemoryHub()
    cfg = NodeConfig(swarm=SWARM, rounds=3, round_timeout=5.0, shards=4,
                     aggregator=aggregator, min_updates=2)
    rt, start, events = _node(tmp_path, cfg, hub=hub)
    await rt.transport.start()
    evil = [MemoryTransport(hub, ident(100 + k).peer_id) for k in range(2)]
    for t in evil:
        await t.start()
        await t.connect(rt.peer.peer_id, [])
    dim = rt.learner.dimension
    trained: list[np.ndarray] = []
    train = rt.learner.train

    def spy(round_: int, hints: TrainingHints | None = None) -> tuple[Vector, Vector]:
        base, vec = train(round_, hints)
        trained.append(np.array(vec, copy=True))
        return base, vec

    rt.learner.train = spy  # type: ignore[method-assign]

    async def poison() -> None:
        """Each round, both hostile peers send one valid, signed, finite 3.4e38 update."""
        sent = -1
        seq = 1
        while True:
            r = rt.peer.round
            if r != sent:
                for k, t in enumerate(evil):
                    data = update_bytes(ident(100 + k), np.full(dim, 3.4e38, np.float32),
                                        round_=r, seq=seq, swarm=SWARM)
                    await t.send(rt.peer.peer_id, data)
                seq += 1
                sent = r
            await asyncio.sleep(0.01)  # polling the peer's round, not waiting on time

    task = asyncio.ensure_future(poison())
    try:
        await asyncio.wait_for(rt.run(start), DEADLINE)
    finally:
        task.cancel()
        for t in evil:
            await t.close()
    assert rt.finished and len(rt.history) == 3
    poisoned = [e for e in events if e["event"] == "poisoned_merge"]
    assert len(poisoned) == 3 and rt.peer.counters["poisoned_merge"] == 3
    assert rt.peer.counters["merge_rejected"] == 3
    assert all(h["received"] == 2 and not h["timed_out"] for h in rt.history)
    # the model after each round is the one it trained: the poison was not adopted
    final = rt.learner.params.numpy()
    assert np.isfinite(final).all() and float(np.abs(final).max()) < 1e3
    np.testing.assert_array_equal(final, trained[-1])
    ckpt = read_checkpoint(tmp_path / "p0" / CHECKPOINT_FILE)
    assert ckpt is not None and ckpt.round == 3
    assert np.isfinite(ckpt.params).all()
    np.testing.assert_array_equal(ckpt.params, trained[-1])
