"""Simulator at scale: wall time, peer-rounds/s and peak RSS from 1k to 10k peers.

Run:  python -m benchmarks.sim_scale [--quick] [--peers 1000 2000 5000 10000]
          [--rounds 5] [--topology regular:8] [--eval-peers 200] [--threads 1]

MNIST, MLP 784-32-10, IID, the simulator's default rule (variance-corrected) unless
``--aggregator``; SGD lr 0.1, batch 8, one local epoch (60,000 / P samples per peer).
Each size runs in its own process, so its peak RSS is its own. "build": data,
topology, identities, peers. "run": every round to completion (training, messages,
merges, the per-round evaluation of a seeded sample of ``--eval-peers`` peers on
``--test-subset`` test samples). "final eval": every peer's final model, after the
run. The column us/peer-round stays flat when the cost is linear in P.
``--quick``: 1k and 2k peers. Needs ``rumor data fetch mnist`` first.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any


def one(args: argparse.Namespace, peers: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    from rumor.node.simulation import Simulation, SimulationConfig

    cfg = SimulationConfig(peers=peers, rounds=args.rounds, topology=args.topology,
                           aggregator=args.aggregator, dataset="mnist", model="mlp",
                           eval_peers=args.eval_peers, test_subset=args.test_subset,
                           seed=args.seed)
    t0 = time.perf_counter()
    sim = Simulation(cfg)
    t1 = time.perf_counter()

    def progress(m: Any) -> None:
        if args.progress:
            el = time.perf_counter() - t1
            eta = el / m.round * (cfg.rounds - m.round)
            print(f"  round {m.round}/{cfg.rounds} acc {m.acc_mean:.3f} "
                  f"{el:.0f} s, ETA {eta:.0f} s", file=sys.stderr, flush=True)

    rows = sim.run(progress)
    t2 = time.perf_counter()
    final = sim.final_evaluation()
    t3 = time.perf_counter()
    return {"peers": peers, "rounds": len(rows), "build_s": t1 - t0, "run_s": t2 - t1,
            "final_eval_s": t3 - t2, "acc_sample": rows[-1].acc_mean if rows else None,
            "acc_all": final.get("acc_mean"),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    ap.add_argument("--quick", action="store_true", help="1k and 2k peers only")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--topology", default="regular:8", help="regular:8 | ba:3 | ...")
    ap.add_argument("--aggregator", default="variance-corrected")
    ap.add_argument("--eval-peers", type=int, default=200)
    ap.add_argument("--test-subset", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--progress", action="store_true", help="print every round (stderr)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child: run one size
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args, args.one)))
        return
    sizes = [1000, 2000] if args.quick else args.peers
    print(f"MNIST MLP 784-32-10, {args.topology}, {args.aggregator}, {args.rounds} rounds, "
          f"eval {args.eval_peers} peers x {args.test_subset} test samples per round, "
          f"{args.threads} torch thread(s)")
    print(f"{'peers':>6} {'build s':>8} {'run s':>8} {'final eval s':>12} "
          f"{'peer-rounds/s':>13} {'us/peer-round':>13} {'peak RSS MB':>11} "
          f"{'KB/peer':>8} {'acc sample':>10} {'acc all':>8}")
    for p in sizes:
        cmd = [sys.executable, "-m", "benchmarks.sim_scale", "--one", str(p),
               "--rounds", str(args.rounds), "--topology", args.topology,
               "--aggregator", args.aggregator, "--eval-peers", str(args.eval_peers),
               "--test-subset", str(args.test_subset), "--threads", str(args.threads),
               "--seed", str(args.seed), *(["--progress"] if args.progress else [])]
        # the child's progress lines (stderr) go straight to ours, as they happen
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE,
                             stderr=None if args.progress else subprocess.PIPE, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        pr = r["peers"] * r["rounds"]
        print(f"{p:6d} {r['build_s']:8.1f} {r['run_s']:8.1f} {r['final_eval_s']:12.1f} "
              f"{pr / r['run_s']:13.0f} {r['run_s'] / pr * 1e6:13.0f} "
              f"{r['peak_rss_mb']:11.0f} {r['peak_rss_mb'] * 1024 / p:8.0f} "
              f"{r['acc_sample']:10.4f} {r['acc_all']:8.4f}", flush=True)


if __name__ == "__main__":
    main()
