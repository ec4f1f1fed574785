"""``rumor launch`` end to end on loopback: results, DHT discovery, no orphan processes.

Each test starts the real launcher (a bootstrap node + worker processes hosting real
peers). Waits are conditions with deadlines (polled files and process states), never
fixed sleeps. The 4-peer run is the CI one (well under 90 s); bigger runs are `slow`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from rumor import aggregation

pytestmark = pytest.mark.net

AGGREGATOR = "variance-corrected" if "variance-corrected" in aggregation.names() else "mean"


# Starting worker processes means importing torch in each; on a loaded 2-core box that
# alone has taken over a minute, so startup waits are generous (they end as soon as the
# condition holds).
STARTUP = 180.0


def wait_for(cond: Callable[[], bool], deadline: float, what: str) -> None:
    """Poll ``cond`` until it holds; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:.0f} s waiting for {what}")
        time.sleep(0.1)


def launch(out: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "rumor.scripts.cli", "launch", "--out", str(out), "--quiet",
        "--aggregator", AGGREGATOR, "--swarm", f"test-launch-{os.getpid()}-{out.name}",
        *extra,
    ]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def launch_rows(out: Path, *extra: str) -> list[dict[str, str]]:
    """Run a launch to its end (exit code 0 asserted) and return its metrics.csv rows."""
    proc = launch(out, *extra)
    try:
        log, _ = proc.communicate(timeout=STARTUP + 120)
    finally:
        proc.kill()
    assert proc.returncode == 0, log.decode(errors="replace")[-3000:]
    with (out / "metrics.csv").open() as fh:
        return list(csv.DictReader(fh))


def events(out: Path) -> list[dict[str, object]]:
    path = out / "events.jsonl"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    result = []
    for line in lines:
        with contextlib.suppress(ValueError):  # a line being written
            result.append(json.loads(line))
    return result


def worker_pids(out: Path) -> set[int]:
    return {int(e["pid"]) for e in events(out) if e.get("event") == "ready"}  # type: ignore[call-overload]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_no_processes_left(pids: set[int]) -> None:
    wait_for(lambda: not any(alive(p) for p in pids), 30, f"worker processes {pids} to exit")
    children = [c for c in psutil.Process().children(recursive=True) if c.is_running()
                and c.status() != psutil.STATUS_ZOMBIE]
    assert children == [], f"processes left behind: {children}"


def check_finished_run(out: Path, peers: int, rounds: int) -> dict[str, object]:
    with (out / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["round"]) for r in rows] == list(range(1, rounds + 1))
    assert all(int(r["peers_alive"]) == peers for r in rows)
    assert all(float(r["consensus_distance"]) >= 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == rounds and summary["peers"] == peers
    assert summary["stopped"] == "done" and summary["errors"] == []
    # Every peer knew only the bootstrap address: its neighbours came from the DHT.
    need = min(2, peers - 1)
    for i, n in summary["neighbours"].items():
        assert n["max"] >= need, f"peer {i} found only {n['max']} neighbours"
        assert n["last_round"] == rounds
    assert summary["min_neighbours_found"] >= need
    ready = [e for e in events(out) if e.get("event") == "ready"]
    assert sorted(int(e["i"]) for e in ready) == list(range(peers))  # type: ignore[call-overload]
    assert len({e["peer"] for e in ready}) == peers
    return dict(summary)


@pytest.mark.timeout(300)
def test_launch_of_four_peers_finishes_with_results_and_no_processes_left(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    proc = launch(out, "--peers", "4", "--rounds", "3", "--per-process", "2",
                  "--round-timeout", "10")
    try:
        log, _ = proc.communicate(timeout=STARTUP + 60)
    finally:
        proc.kill()
    assert proc.returncode == 0, log.decode(errors="replace")[-3000:]
    check_finished_run(out, peers=4, rounds=3)
    assert_no_processes_left(worker_pids(out))


@pytest.mark.timeout(300)
def test_a_stopped_launcher_leaves_no_processes(tmp_path: Path) -> None:
    """Ctrl-C and SIGTERM, each to its own launch; both run at once (their start-ups,
    mostly torch imports, overlap instead of adding up)."""
    stops = {"ctrl-c": signal.SIGINT, "sigterm": signal.SIGTERM}
    # no --rounds: runs until stopped
    procs = {name: launch(tmp_path / name, "--peers", "2", "--per-process", "1")
             for name in stops}
    pids: dict[str, set[int]] = {}
    try:
        for name, sig in stops.items():
            out = tmp_path / name
            wait_for(lambda out=out: any(e.get("event") == "round" for e in events(out)),
                     STARTUP, f"the first round of the {name} launch")
            pids[name] = worker_pids(out)
            assert len(pids[name]) == 2
            procs[name].send_signal(sig)
        for proc in procs.values():
            proc.communicate(timeout=45)
    finally:
        for proc in procs.values():
            proc.kill()
    for name, sig in stops.items():
        assert procs[name].returncode == 0, name  # no --rounds: stopping is the normal end
        assert_no_processes_left(pids[name])
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["stopped"] == ("interrupted" if sig == signal.SIGINT else "terminated")
        assert summary["rounds"] >= 1


@pytest.mark.timeout(300)
def test_workers_exit_when_the_launcher_is_killed_with_sigkill(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = launch(out, "--peers", "2", "--per-process", "1")
    try:
        wait_for(lambda: len(worker_pids(out)) == 2, STARTUP, "both peers to start")
        pids = worker_pids(out)
        proc.kill()  # SIGKILL: no cleanup code runs in the launcher
        proc.wait(timeout=10)
    finally:
        proc.kill()
    # Workers are in their own process group (a Ctrl-C to the terminal does not reach
    # them) and exit when their stdin, the launcher's pipe, closes.
    assert_no_processes_left(pids)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_launch_of_sixteen_peers_in_four_processes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = launch(out, "--peers", "16", "--rounds", "5", "--per-process", "4")
    try:
        log, _ = proc.communicate(timeout=360)
    finally:
        proc.kill()
    assert proc.returncode == 0, log.decode(errors="replace")[-3000:]
    check_finished_run(out, peers=16, rounds=5)
    assert_no_processes_left(worker_pids(out))


@pytest.mark.timeout(500)
def test_three_real_peers_train_with_compressed_updates(tmp_path: Path) -> None:
    """``rumor launch --compress topk:ratio=0.1``: real libp2p peers send keyframes and
    top-k differences (DIFF messages, signed) and still learn. A dense update of the
    MLP is ~9.8 kB; after the first round (int8 keyframes) a compressed one is ~1.6 kB,
    so the bytes per message show what travelled."""
    out = tmp_path / "run"
    rows = launch_rows(out, "--peers", "3", "--rounds", "4", "--per-process", "3",
                       "--round-timeout", "10", "--compress", "topk:ratio=0.1")
    assert [int(r["round"]) for r in rows] == [1, 2, 3, 4]
    later = rows[1:]
    msgs = sum(int(r["messages"]) for r in later)
    sent = sum(int(r["bytes_sent"]) for r in later)
    assert msgs > 0 and sent / msgs < 4000, (sent, msgs)
    assert float(rows[-1]["acc_mean"]) > float(rows[0]["acc_mean"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["compress"] == "topk:ratio=0.1"
    assert summary["stopped"] == "done" and summary["errors"] == []
