"""Conv models in the simulator against the compute bound, in the same run.

Run: python -m benchmarks.compute_bound [--models lenet5 cnn] [--peers 50] [--rounds 4]

The bound: one central epoch in plain torch (one nn.Module, torch.optim.SGD, batches of
64 drawn from MNIST's training set) over exactly as many samples as one simulator round
trains (peers x steps per round x batch), i.e. the forward+backward work a round cannot
avoid. The simulator: ``Simulation`` with the paper's setup (MNIST, IID, 8-regular,
batch 64, lr 0.05, 1 local epoch, evaluation of 10 seeded peers on a seeded 2,000-image
test subset each round, as in docs/results.md); a steady round is the wall time between
two consecutive round reports after the first (median), so it includes the merges, the
messages and that evaluation. Both run with the same torch thread count (``--threads``,
default 1). Ratio = steady round / central epoch; the goal is <= 1.5x. Each central
epoch is the median of ``--repeats``, measured right after the simulation of the same
model so that both see the same load.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import numpy as np
import torch

from rumor.node.data.datasets import load_dataset
from rumor.node.models import build_model
from rumor.node.simulation import Simulation, SimulationConfig
from rumor.node.threads import apply_threads

BATCH, LR = 64, 0.05


def central_epoch(model: str, samples: int, seed: int) -> float:
    """Seconds for plain-torch SGD over ``samples`` training samples in batches of 64."""
    ds = load_dataset("mnist")
    torch.manual_seed(seed)
    net = build_model(model, ds.input_shape, ds.num_classes)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    rng = np.random.default_rng(seed)
    order = torch.from_numpy(rng.permutation(len(ds.y_train)))
    steps = samples // BATCH
    t0 = time.perf_counter()
    for s in range(steps):
        b = order[(s * BATCH) % len(order):][:BATCH]
        if len(b) < BATCH:
            b = order[:BATCH]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(ds.x_train[b]), ds.y_train[b]).backward()
        opt.step()
    return time.perf_counter() - t0


def steady_round(model: str, peers: int, rounds: int, seed: int) -> tuple[float, int, float]:
    """(median steady-round seconds, samples trained per round, final acc mean)."""
    cfg = SimulationConfig(peers=peers, rounds=rounds, dataset="mnist", model=model,
                           topology="regular:8", batch_size=BATCH, lr=LR, seed=seed,
                           eval_peers=10, test_subset=2000)
    sim = Simulation(cfg)
    stamps: list[float] = []
    rows = sim.run(lambda m: stamps.append(time.perf_counter()))
    sizes = [len(ix) for ix in sim.indices[:peers]]
    samples = peers * sim.trainer.steps_per_round(sizes) * BATCH
    diffs = [b - a for a, b in itertools.pairwise(stamps)]
    return statistics.median(diffs), samples, rows[-1].acc_mean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["lenet5", "cnn"])
    ap.add_argument("--peers", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=4, help="at least 3 (2 steady rounds)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    apply_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {a.peers} peers, "
          f"{a.rounds} rounds (steady = median of rounds 2..{a.rounds})")
    print(f"{'model':>6} | {'samples/round':>13} | {'steady round s':>14} | "
          f"{'central epoch s':>15} | ratio | sim acc after {a.rounds}")
    for model in a.models:
        central_epoch(model, 20 * BATCH, a.seed)  # warm-up
        rnd, samples, acc = steady_round(model, a.peers, a.rounds, a.seed)
        base = statistics.median(central_epoch(model, samples, a.seed) for _ in range(a.repeats))
        print(f"{model:>6} | {samples:13d} | {rnd:14.2f} | {base:15.2f} | "
              f"{rnd / base:4.2f}x | {acc:.4f}", flush=True)


if __name__ == "__main__":
    main()
