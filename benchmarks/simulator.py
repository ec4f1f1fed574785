"""Simulator throughput: peer-rounds per second at 100 and 500 peers, and peak RSS.

Run: python -m benchmarks.simulator [--peers 100 500] [--rounds 5] [--naive-peers 100]
Baseline in the same process: a naive loop (one nn.Module + torch.optim.SGD per peer,
trained one after another, then plain averaging with neighbours), the way gossip
simulators are commonly written. Printed as ratios; nothing asserted.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from rumor.node.data import load_dataset, split_indices
from rumor.node.models import build_model, flatten_params, unflatten_into
from rumor.node.simulation import Simulation, SimulationConfig
from rumor.node.threads import DEFAULT_THREADS, apply_threads
from rumor.topology import build_topology


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ours(peers: int, rounds: int) -> float:
    cfg = SimulationConfig(peers=peers, rounds=rounds, topology="regular:8", aggregator="mean",
                           eval_peers=min(peers, 50))
    sim = Simulation(cfg)
    t0 = time.perf_counter()
    sim.run()
    return peers * rounds / (time.perf_counter() - t0)


def naive(peers: int, rounds: int, batch_size: int = 8, lr: float = 0.1) -> float:
    ds = load_dataset("digits")
    parts = split_indices(ds.y_train.numpy(), peers, "iid", 1)
    g = build_topology("regular:8", peers, 1)
    models = [build_model("mlp", ds.input_shape, ds.num_classes) for _ in range(peers)]
    opts = [torch.optim.SGD(m.parameters(), lr=lr) for m in models]
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(rounds):
        for m, opt, ix in zip(models, opts, parts, strict=True):
            perm = rng.permutation(ix)
            for s in range(0, len(perm), batch_size):
                b = torch.from_numpy(perm[s:s + batch_size])
                opt.zero_grad()
                torch.nn.functional.cross_entropy(m(ds.x_train[b]), ds.y_train[b]).backward()
                opt.step()
        vecs = [flatten_params(m) for m in models]
        for i, m in enumerate(models):
            nb = [vecs[j] for j in g.neighbors(i)] + [vecs[i]]
            unflatten_into(m, torch.stack(nb).mean(0))
        for m in models:
            m.eval()
            with torch.no_grad():
                m(ds.x_test)
    return peers * rounds / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--naive-peers", type=int, default=100)
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch threads")
    args = ap.parse_args()
    apply_threads(args.threads)
    ours(20, 1)  # warm up torch.func once, outside the timings
    base = naive(args.naive_peers, args.rounds)
    print(f"naive per-peer loop, {args.naive_peers} peers: {base:8.0f} peer-rounds/s (baseline)")
    for p in args.peers:
        r = ours(p, args.rounds)
        print(f"rumor simulator, {p:5d} peers: {r:8.0f} peer-rounds/s  "
              f"ratio vs naive {r / base:5.1f}x  peak RSS {peak_rss_mb():7.0f} MB")


if __name__ == "__main__":
    main()
