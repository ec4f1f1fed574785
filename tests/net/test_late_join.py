"""A peer that joins a running real mesh late has its updates accepted within 2 rounds.

The mesh is a real launch (bootstrap node + worker processes on loopback); the joiner
is a separate ``rumor join`` process started once a launched peer finished round
JOIN_AT. It learns the round from its neighbours (PULL -> signed STATE) and jumps
there; before that catch-up existed, every launched peer rejected ~340 of its
updates as ``stale``. Waits are conditions with deadlines (the Mesh's own).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rumor import aggregation
from rumor.node.assembly import NodeConfig
from rumor.node.mesh.late_join import run_late_join
from rumor.node.mesh.launcher import mesh_config

pytestmark = pytest.mark.net

AGGREGATOR = "variance-corrected" if "variance-corrected" in aggregation.names() else "mean"


async def _late_join(tmp_path: Path, peers: int, join_at: int, per_process: int) -> None:
    node = NodeConfig(swarm=f"late-join-{os.getpid()}-{peers}", aggregator=AGGREGATOR,
                      round_timeout=10.0)
    cfg = mesh_config(node, peers, tmp_path / "run", per_process=per_process, wall_cap=600.0)
    res = await run_late_join(cfg, join_at, tmp_path / "joiner")
    assert res.mesh.stopped == "done", (res.mesh.errors, res.joiner_log)
    rep = res.report
    assert rep is not None, res.joiner_log
    assert rep.joined_round is not None and rep.joined_round >= join_at
    assert rep.caught_up_to is not None and rep.caught_up_to >= join_at - 1, rep
    # A launched peer gets at most one update per joiner round, so its stale rejects
    # of the joiner count the joiner's rounds it refused: at most 2 (was ~340).
    assert rep.max_stale_rejects_per_peer <= 2, rep
    assert rep.merged_by >= 1 and rep.first_merged_round is not None, rep
    # In mesh rounds it depends on the joiner's latency against the round length (on
    # a 2-core box at load 30 its first update took ~17 s, mesh rounds ~2 s): reported
    # in catch_up.json and docs/launch.md, not asserted.
    assert rep.rounds_to_accept is not None


@pytest.mark.timeout(420)
async def test_a_peer_joining_at_round_6_is_accepted_within_2_rounds(tmp_path: Path) -> None:
    # 4 peers in one process (one torch import, not two); it runs rounds as fast as it
    # can on one core, which leaves the other to the joiner's start-up
    await _late_join(tmp_path, peers=4, join_at=6, per_process=4)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_a_peer_joining_a_16_peer_mesh_at_round_30_is_accepted_within_2_rounds(
        tmp_path: Path) -> None:
    await _late_join(tmp_path, peers=16, join_at=30, per_process=8)
