"""How many real peers ``rumor launch`` fits on this machine, and what a peer costs.

For each case (N peers, K per process, R rounds; K=0: the launcher's default) it runs
the real launcher, samples the resident memory of the launcher and its workers every
0.5 s (psutil) and reads the run's summary.json and events.jsonl. One line per case:

- peers, processes; total RSS (peak of launcher + workers together), RSS / peer;
- total PSS (peak, sampled every 2 s): RSS counts the pages every worker shares
  (libtorch, libpython, ... mapped from the same files, and with the zygote the pages
  it had before it forked them) once per process; PSS splits each shared page among
  the processes that map it, so the sum is what the launch really takes from the
  machine's memory; results.json also has the launcher's children's USS (private
  pages) at that peak, median and largest;
- marginal MB / peer: (total(N) - total(N0)) / (N - N0) against the first case N0 of
  the sweep (what one more peer costs, extra processes included);
- time to mesh: seconds from the launch until every peer had >= min(8, N-1)
  neighbours at once (events.jsonl ``neighbours`` / ``round`` counts);
- rounds / s after the first round (which also pays the first torch ops); min
  neighbours; exit code; worker processes still alive 30 s after the launcher exited.

    python -m benchmarks.launch_scale                         # 16, 64, 128, 256 peers
    python -m benchmarks.launch_scale --cases 16x0x3 64x0x3   # N x K x R
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

DEFAULT_CASES = ("16x0x3", "64x0x3", "128x0x3", "256x0x3")


def mesh_times(events_path: Path, n: int) -> tuple[float | None, float | None]:
    """(seconds until every peer had >= min(8, n-1) neighbours, time of ``go``)."""
    need = min(8, n - 1)
    count: dict[int, int] = {}
    meshed = go = None
    if not events_path.exists():
        return None, None
    for line in events_path.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "go" and go is None:
            go = float(e["t"])
        i = e.get("i")
        if isinstance(i, int) and e.get("event") in ("neighbours", "round"):
            count[i] = int(e.get("count", e.get("neighbours", 0)))
            if meshed is None and len(count) == n and min(count.values()) >= need:
                meshed = float(e["t"])
    return meshed, go


def _rss(proc: psutil.Process, seen: set[int]) -> tuple[int, int]:
    """(launcher RSS, sum of the workers' RSS) in bytes; adds the workers to ``seen``."""
    try:
        own = proc.memory_info().rss
        kids = proc.children(recursive=True)
    except psutil.Error:
        return 0, 0
    total = 0
    seen.update(k.pid for k in kids)
    for k in kids:
        with contextlib.suppress(psutil.Error):
            total += k.memory_info().rss
    return own, total


def _pss(proc: psutil.Process) -> tuple[int, list[int]]:
    """(sum of the PSS of ``proc`` and its descendants, the USS of each descendant),
    bytes (Linux smaps_rollup). USS is what a process holds alone: its private pages."""
    total = 0
    uss: list[int] = []
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0, []
    for q in procs:
        with contextlib.suppress(psutil.Error, AttributeError):
            info = q.memory_full_info()
            total += info.pss
            if q is not proc:
                uss.append(info.uss)
    return total, uss


def _rounds_per_s(path: Path) -> float | None:
    """Rounds per second after the first round (which also pays the peers' first torch
    ops and stream set-up): (R - 1) / (time of row R - time of row 1)."""
    try:
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
    except OSError:
        return None
    if len(rows) < 2:
        return None
    span = float(rows[-1]["time"]) - float(rows[0]["time"])
    return (len(rows) - 1) / span if span > 0 else None


def _rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except OSError:
        return 0


def run_case(n: int, k: int, rounds: int, out: Path, extra: list[str],
             timeout: float, sigint: bool = False) -> dict[str, Any]:
    """One launch; with ``sigint`` it runs without --rounds and gets a SIGINT (Ctrl-C)
    once metrics.csv has ``rounds`` rows."""
    cmd = [sys.executable, "-m", "rumor.scripts.cli", "launch", "--peers", str(n),
           *(["--per-process", str(k)] if k else []),
           *([] if sigint else ["--rounds", str(rounds)]),
           "--out", str(out), "--quiet", *extra]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ps = psutil.Process(proc.pid)
    peak_workers = peak_launcher = peak_total = peak_pss = 0
    uss_at_peak: list[int] = []
    last_pss = 0.0
    seen: set[int] = set()
    up_at: float | None = None
    code: int | None = None
    while True:
        code = proc.poll()
        if code is not None:
            break
        if time.monotonic() - t0 > timeout:
            proc.terminate()
            try:
                code = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            break
        own, workers = _rss(ps, seen)
        peak_launcher, peak_workers = max(peak_launcher, own), max(peak_workers, workers)
        peak_total = max(peak_total, own + workers)
        if time.monotonic() - last_pss >= 2.0:
            last_pss = time.monotonic()
            pss, uss = _pss(ps)
            if pss > peak_pss:
                peak_pss, uss_at_peak = pss, uss
        if up_at is None and (out / "peers.json").exists():
            up_at = time.monotonic() - t0
        if sigint and _rows(out / "metrics.csv") >= rounds:
            proc.send_signal(signal.SIGINT)
            sigint = False
        time.sleep(0.5)
    wall = time.monotonic() - t0
    summary: dict[str, Any] = {}
    if (out / "summary.json").exists():
        summary = json.loads((out / "summary.json").read_text())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in seen):
        time.sleep(0.5)
    left = 0
    for pid in seen:
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                left += 1
    meshed, _go = mesh_times(out / "events.jsonl", n)
    return {
        "peers": n,
        "per_process": summary.get("per_process", k),
        "processes": summary.get("processes"),
        "total_mb": peak_total / 2**20,
        "total_pss_mb": peak_pss / 2**20,
        # private MB of the launcher's descendants (workers, and the zygote if any) at
        # the PSS peak: median and largest
        "child_uss_median_mb": (sorted(uss_at_peak)[len(uss_at_peak) // 2] / 2**20
                                if uss_at_peak else None),
        "child_uss_max_mb": max(uss_at_peak) / 2**20 if uss_at_peak else None,
        "processes_left": left,
        "time_to_mesh_s": meshed,
        "rounds_per_s": _rounds_per_s(out / "metrics.csv"),
        "rounds_asked": rounds,
        "exit_code": code,
        "mb_per_peer": peak_workers / n / 2**20,
        "workers_mb": peak_workers / 2**20,
        "launcher_mb": peak_launcher / 2**20,
        "all_up_s": up_at,
        "wall_s": wall,
        "rounds_done": summary.get("rounds"),
        "final_acc_mean": summary.get("final_acc_mean"),
        "min_neighbours_found": summary.get("min_neighbours_found"),
        "stopped": summary.get("stopped"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--cases", nargs="*", default=list(DEFAULT_CASES), help="NxKxR ...")
    p.add_argument("--out", type=Path, default=Path("runs/bench/launch_scale"))
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    p.add_argument("--sigint", action="store_true",
                   help="stop each launch with Ctrl-C (SIGINT) after R rounds instead of "
                   "--rounds R (the 'left' column then checks Ctrl-C's cleanup)")
    p.add_argument("extra", nargs=argparse.REMAINDER,
                   help="after --, flags passed to rumor launch (e.g. -- --aggregator mean)")
    args = p.parse_args(argv)
    extra = [a for a in args.extra if a != "--"]
    results: list[dict[str, Any]] = []
    nan = float("nan")
    print(f"{'peers':>5} {'procs':>5} {'total MB':>9} {'PSS MB':>8} {'MB/peer':>8} "
          f"{'marginal':>8} {'PSS marg':>8} {'USS med':>7} "
          f"{'mesh s':>7} {'rounds/s':>8} {'rounds':>6} {'min nbrs':>8} {'exit':>4} {'left':>4}",
          flush=True)
    for case in args.cases:
        n, k, r = (int(x) for x in case.split("x"))
        res = run_case(n, k, r, args.out / case, extra, args.timeout, args.sigint)
        first = results[0] if results else None
        res["marginal_mb_per_peer"] = (
            (res["total_mb"] - first["total_mb"]) / (n - first["peers"])
            if first is not None and n != first["peers"] else None)
        res["marginal_pss_mb_per_peer"] = (
            (res["total_pss_mb"] - first["total_pss_mb"]) / (n - first["peers"])
            if first is not None and n != first["peers"] else None)
        results.append(res)
        print(
            f"{n:5d} {res['processes'] or 0:5d} {res['total_mb']:9.0f} "
            f"{res['total_pss_mb']:8.0f} {res['total_mb'] / n:8.1f} "
            f"{res['marginal_mb_per_peer'] or nan:8.1f} "
            f"{res['marginal_pss_mb_per_peer'] or nan:8.1f} "
            f"{res['child_uss_median_mb'] or nan:7.0f} "
            f"{res['time_to_mesh_s'] or nan:7.1f} {res['rounds_per_s'] or nan:8.3f} "
            f"{res['rounds_done'] or 0:3d}/{r:<2d} {res['min_neighbours_found'] or 0:8d} "
            f"{res['exit_code']!s:>4} {res['processes_left']:4d}",
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
