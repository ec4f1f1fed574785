"""The one engine on the real mesh: a Byzantine peer and SybilWall's history gossip run
over loopback libp2p exactly as in the simulator (`rumor launch --byzantine --attack`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.net.test_launch import assert_no_processes_left, launch_rows, worker_pids

pytestmark = pytest.mark.net


@pytest.mark.timeout(400)
def test_launch_with_an_attacker_and_sybilwall_gossips_history_records_for_real(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    rows = launch_rows(out, "--peers", "4", "--rounds", "3", "--per-process", "4",
                       "--round-timeout", "10", "--byzantine", "1",
                       "--attack", "sign-flip:scale=4", "--aggregator", "sybilwall")
    assert [int(r["round"]) for r in rows] == [1, 2, 3]
    assert all(int(r["peers_alive"]) == 3 for r in rows)  # the attacker is not evaluated
    # signed HISTORY records and UPDATEs arrive in order: nothing is rejected as a replay
    assert all(int(r["rejects"]) == 0 for r in rows)
    # 4 peers x 3 neighbours = 12 UPDATEs a round; SybilWall's forwarded records on top
    assert int(rows[-1]["messages"]) > 12
    assert_no_processes_left(worker_pids(out))
