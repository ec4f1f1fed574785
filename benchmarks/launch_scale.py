"""How many real peers ``rumor launch`` fits on this machine, and what a peer costs.

For each case (N peers, K per process, R rounds) it runs the real launcher, samples
the resident memory of the worker processes every 0.5 s (psutil, the sum over all
workers; the launcher with its bootstrap node is reported apart) and reads the run's
summary.json. Reported per case: peak worker RSS / N (MB per peer), launcher RSS, time
until all peers were up, wall time, rounds done, final mean accuracy, the fewest
neighbours any peer found, and the exit code.

    python -m benchmarks.launch_scale                      # K in (1, 4, 8) at N=8; N=32, 64
    python -m benchmarks.launch_scale --cases 16x4x30      # N x K x R
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

DEFAULT_CASES = ("8x1x3", "8x4x3", "8x8x3", "32x4x3", "64x8x3")


def _rss(proc: psutil.Process) -> tuple[int, int]:
    """(launcher RSS, sum of the workers' RSS) in bytes."""
    try:
        own = proc.memory_info().rss
        kids = proc.children(recursive=True)
    except psutil.Error:
        return 0, 0
    total = 0
    for k in kids:
        with contextlib.suppress(psutil.Error):
            total += k.memory_info().rss
    return own, total


def run_case(n: int, k: int, rounds: int, out: Path, extra: list[str],
             timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "rumor.scripts.cli", "launch", "--peers", str(n),
           "--per-process", str(k), "--rounds", str(rounds), "--out", str(out), "--quiet",
           *extra]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ps = psutil.Process(proc.pid)
    peak_workers = peak_launcher = 0
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
        own, workers = _rss(ps)
        peak_launcher, peak_workers = max(peak_launcher, own), max(peak_workers, workers)
        if up_at is None and (out / "peers.json").exists():
            up_at = time.monotonic() - t0
        time.sleep(0.5)
    wall = time.monotonic() - t0
    summary: dict[str, Any] = {}
    if (out / "summary.json").exists():
        summary = json.loads((out / "summary.json").read_text())
    return {
        "peers": n,
        "per_process": k,
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
    p.add_argument("extra", nargs=argparse.REMAINDER,
                   help="after --, flags passed to rumor launch (e.g. -- --aggregator mean)")
    args = p.parse_args(argv)
    extra = [a for a in args.extra if a != "--"]
    results = []
    for case in args.cases:
        n, k, r = (int(x) for x in case.split("x"))
        res = run_case(n, k, r, args.out / case, extra, args.timeout)
        results.append(res)
        print(
            f"N={n:3d} K={k:2d}: {res['mb_per_peer']:6.1f} MB/peer (workers "
            f"{res['workers_mb']:7.0f} MB, launcher {res['launcher_mb']:5.0f} MB), up in "
            f"{res['all_up_s'] or float('nan'):5.1f} s, wall {res['wall_s']:6.1f} s, rounds "
            f"{res['rounds_done']}/{r}, acc {res['final_acc_mean'] or float('nan'):.4f}, "
            f"min nbrs {res['min_neighbours_found']}, exit {res['exit_code']}",
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
