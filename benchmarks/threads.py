"""torch threads: 1 vs 2 on this machine, alone and next to a second simulation.

Run: python -m benchmarks.threads [--repeats 3] [--workloads mlp lenet5]

Each measurement is a fresh ``rumor simulate ... --threads N`` process; the figure is
the wall time the command itself reports (building the swarm + running it; the
interpreter's start and torch's import are left out because they do not depend on N).
"alone": one simulation at a time (whatever else the shared machine runs);
"loaded": the same simulation with a second, identical one started next to it, which is
what two users, two helpers or ``rumor compare`` plus an editor do to a 2-core box.
Runs are interleaved (1, 2, 1, 2, ...) so that load drift hits both counts alike; the
table shows medians and the 2-thread/1-thread ratio. It also checks that metrics.csv
is byte-identical across thread counts (it must be: the count changes only speed).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WORKLOADS: dict[str, list[str]] = {
    # the simulator's message-bound case (gossipy's scenario)
    "mlp": ["--peers", "50", "--rounds", "5", "--topology", "regular:8",
            "--aggregator", "mean", "--eval-peers", "10"],
    # the compute-bound case (the paper's LeNet-5 on MNIST)
    "lenet5": ["--dataset", "mnist", "--model", "lenet5", "--peers", "10", "--rounds", "1",
               "--batch-size", "64", "--lr", "0.05", "--eval-peers", "10",
               "--test-subset", "2000"],
}
_WALL = re.compile(r"([0-9.]+) s wall")


def _rumor() -> str:
    return shutil.which("rumor", path=os.path.dirname(sys.executable)) or "rumor"


def _start(args: list[str], threads: int, out: Path) -> subprocess.Popen[str]:
    cmd = [_rumor(), "simulate", *args, "--threads", str(threads), "--quiet", "--out", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wall(proc: subprocess.Popen[str]) -> float:
    text, _ = proc.communicate(timeout=1800)
    m = _WALL.search(text)
    if proc.returncode != 0 or m is None:
        raise SystemExit(f"rumor simulate failed ({proc.returncode}): {text[-500:]}")
    return float(m.group(1))


def measure(args: list[str], threads: int, loaded: bool, tmp: Path) -> tuple[float, str]:
    """Wall seconds of one run (the first of the pair when loaded) and its csv digest."""
    out = tmp / f"t{threads}-{'l' if loaded else 'a'}"
    main = _start(args, threads, out)
    other = _start(args, threads, tmp / "other") if loaded else None
    wall = _wall(main)
    if other is not None:
        _wall(other)
    return wall, hashlib.sha256((out / "metrics.csv").read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), default=["mlp", "lenet5"])
    a = ap.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; "
          f"median of {a.repeats}, seconds of `rumor simulate` wall")
    print(f"{'workload':>8} | {'condition':>9} | {'1 thread':>8} | {'2 threads':>9} | 2/1")
    with tempfile.TemporaryDirectory(prefix="rumor-threads-") as name:
        tmp = Path(name)
        for w in a.workloads:
            digests: set[str] = set()
            for loaded in (False, True):
                walls: dict[int, list[float]] = {1: [], 2: []}
                for _ in range(a.repeats):
                    for n in (1, 2):
                        wall, digest = measure(WORKLOADS[w], n, loaded, tmp)
                        walls[n].append(wall)
                        digests.add(digest)
                one, two = statistics.median(walls[1]), statistics.median(walls[2])
                cond = "loaded" if loaded else "alone"
                print(f"{w:>8} | {cond:>9} | {one:8.1f} | {two:9.1f} | {two / one:.2f}x",
                      flush=True)
            same = "byte-identical" if len(digests) == 1 else f"{len(digests)} DIFFERENT"
            print(f"{w:>8} | metrics.csv across all runs: {same}")
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
