"""Bristle on the real mesh: `rumor launch --model bristle-head --aggregator bristle`
runs the same defense as the simulator over loopback libp2p; only the 650-number head
travels, in the normal signed UPDATE envelope."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.net.test_launch import assert_no_processes_left, launch_rows, worker_pids

pytestmark = pytest.mark.net


@pytest.mark.timeout(400)
def test_launch_bristle_head_with_the_bristle_defense_finishes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    rows = launch_rows(out, "--peers", "4", "--rounds", "3", "--per-process", "4",
                       "--round-timeout", "10", "--aggregator", "bristle",
                       "--model", "bristle-head", "--split", "dirichlet:0.5")
    assert [int(r["round"]) for r in rows] == [1, 2, 3]
    assert all(int(r["peers_alive"]) == 4 for r in rows)
    assert all(int(r["rejects"]) == 0 for r in rows)
    # a head is 650 float32 = 2,600 bytes: an UPDATE is far below a 64-32-10 MLP's 9.6 kB
    last = rows[-1]
    assert int(last["bytes_sent"]) / max(1, int(last["messages"])) < 4000
    assert float(last["acc_mean"]) > 0.2
    assert_no_processes_left(worker_pids(out))
