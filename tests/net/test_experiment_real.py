"""``rumor experiment --mode real`` end to end: a scenario file as real faults on loopback.

experiments/real-faults.toml with 4 peers instead of 6 (its timeline, rounds and
learning settings unchanged; one process each, and each process pays its own torch
import, so two fewer save ~10 s of CPU): a complete graph of 4 (3-regular); peer 1 is
killed with SIGKILL at round 3 and restarted from its data dir at round 6; the mesh is
cut in halves at round 14 and healed at round 20 (40 rounds). The run must
show the faults (peers alive drops and recovers, blocks applied on both sides of
the cut), keep completing rounds after every event, keep the simulator's PeerIDs,
and leave no process behind, also when it is interrupted. Waits are conditions with
deadlines on the run's files and processes, never fixed sleeps.
"""

from __future__ import annotations

import contextlib
import csv
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from rumor.node.scenario import load_scenario
from rumor.node.simulation import peer_identity

pytestmark = pytest.mark.net

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "experiments" / "real-faults.toml"


def wait_for(cond: Callable[[], bool], deadline: float, what: str) -> None:
    end = time.monotonic() + deadline
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:.0f} s waiting for {what}")
        time.sleep(0.1)


PEERS = 4


def scenario(tmp: Path, peers: int = PEERS) -> Path:
    """experiments/real-faults.toml with ``peers`` peers (all else as in the file)."""
    text = SCENARIO.read_text()
    assert "\npeers = 6\n" in text
    path = tmp / SCENARIO.name
    path.write_text(text.replace("\npeers = 6\n", f"\npeers = {peers}\n"))
    return path


def experiment(out: Path, scenario: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "rumor.scripts.cli", "experiment", "--mode", "real",
           str(scenario), "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=ROOT)


def events(run: Path) -> list[dict[str, Any]]:
    path = run / "events.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line being written
            out.append(json.loads(line))
    return out


def pids(run: Path) -> set[int]:
    return {int(e["pid"]) for e in events(run) if e.get("event") in ("ready", "kill")}


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_no_processes_left(run: Path) -> None:
    left = pids(run)
    wait_for(lambda: not any(alive(p) for p in left), 30, f"worker processes {left} to exit")
    children = [c for c in psutil.Process().children(recursive=True)
                if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert children == [], f"processes left behind: {children}"


@pytest.mark.timeout(240)
def test_real_mode_turns_the_timeline_into_kill_restart_and_partition(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    sc_path = scenario(tmp_path)
    proc = experiment(out, sc_path, "--wall-cap", "200")
    try:
        log, _ = proc.communicate(timeout=220)
    finally:
        proc.kill()
    text = log.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    run = out / "real-faults"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped"] == "done", (summary["stopped"], summary["errors"], text[-2000:])
    assert summary["mode"] == "real" and summary["errors"] == []

    with (run / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    rounds = [int(r["round"]) for r in rows]
    alive_by_round = {int(r["round"]): int(r["peers_alive"]) for r in rows}
    assert rounds == sorted(set(rounds)) and rounds[-1] == 40
    assert len(rounds) >= 30  # a peer catching up may skip a round, the mesh does not

    fired = summary["timeline_fired"]
    assert [e["event"] for e in fired] == ["RemovePeers", "AddPeers", "Partition", "Heal"]
    kill, rejoin, cut, heal = (int(e["median_round"]) for e in fired)
    assert 3 <= kill <= rejoin <= cut < heal
    for r in (kill, rejoin, cut, heal):  # rounds continue after every event
        assert any(x > r for x in rounds), f"no round completed after round {r}"
    # peers alive drops after the kill and recovers after the restart
    assert max(alive_by_round.values()) == PEERS
    assert PEERS - 1 in [alive_by_round[x] for x in rounds if kill < x <= rejoin + 1]
    assert alive_by_round[rounds[-1]] == PEERS
    assert any(alive_by_round[x] == PEERS for x in rounds if rejoin < x <= heal)

    evs = events(run)
    kinds = [e.get("event") for e in evs]
    assert "kill" in kinds and "restart" in kinds
    assert any(e.get("event") == "worker_exit" and e.get("code") == -signal.SIGKILL
               for e in evs)
    # same PeerIDs as the simulator; the restarted peer came back with its own
    sc = load_scenario(sc_path)
    assert sc.config.peers == PEERS
    ready = [e for e in evs if e.get("event") == "ready"]
    for e in ready:
        assert e["peer"] == peer_identity(sc.config.seed, int(e["i"])).peer_id
    assert len([e for e in ready if e["i"] == 1]) == 2
    # the partition was applied on both sides of the cut, and healed
    blocked = {e["i"] for e in evs if e.get("event") == "blocked" and e["applied"]}
    unblocked = {e["i"] for e in evs if e.get("event") == "unblocked" and e["applied"]}
    (part,) = [e for e in evs if e.get("event") == "Partition"]
    assert part["components"] == 2
    a, b = (set(g) for g in part["groups"])
    # each side of a partition runs at its own pace: a fast side may finish all its
    # rounds before the slower side's median reaches the heal, and a finished peer has
    # nothing left to unblock; every peer still running at the heal is unblocked
    (heal_ev,) = [e for e in evs if e.get("event") == "Heal"]
    done_before_heal = {e["i"] for e in evs
                        if e.get("event") == "finished" and e["t"] <= heal_ev["t"]}
    assert blocked & a and blocked & b
    assert blocked - done_before_heal <= unblocked <= blocked
    for name in ("accuracy.png", "scenario.toml", "peers.json"):
        assert (run / name).exists(), name
    assert_no_processes_left(run)


@pytest.mark.timeout(240)
def test_an_interrupted_real_run_leaves_no_process_and_writes_its_summary(
    tmp_path: Path,
) -> None:
    out = tmp_path / "exp"
    run = out / "real-faults"
    proc = experiment(out, scenario(tmp_path))
    try:
        wait_for(lambda: any(e.get("event") == "go" for e in events(run)), 180,
                 "the rounds to start")
        wait_for(lambda: any(e.get("event") == "round" for e in events(run)), 60,
                 "a first round")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped"] == "interrupted"
    assert_no_processes_left(run)
