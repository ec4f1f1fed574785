"""gossipy-dfl 0.0.1 vs rumor's simulator on gossipy's own scenario, back to back.

Run (after ``make bench-gossipy``, which installs the ``bench`` extra)::

    python -m benchmarks.gossipy_vs_rumor [--peers 100 500] [--rounds 20] [--repeats 3]

The scenario (gossipy's classic gossip-learning setup): scikit-learn digits (rumor's
fixed 1,438 / 359 train/test split, given to both), IID split over P peers (rumor's
``split_indices``, the same shards on both sides), MLP 64-32-10, SGD lr 0.1, batch 8,
1 local epoch per training call, a random 8-regular graph (rumor's ``build_topology``,
the same graph on both sides, handed to gossipy as its adjacency matrix), each peer
starting from its own random init, one torch thread in this process and in every
subprocess (``rumor.node.threads.apply_threads(1)`` / ``rumor simulate --threads 1``).

What a round is (they differ; both are each tool's standard protocol):

- gossipy (``GossipSimulator``, PUSH, ``CreateModelMode.MERGE_UPDATE``, delta = 100
  timesteps per round as in gossipy's examples): each node sends its model to ONE random
  neighbour once per round; every received model is averaged with the receiver's (2
  models) and the receiver trains 1 local epoch. A node trains once per message it
  receives (0, 1 or more times a round; P training calls a round in all) plus once in
  ``init_nodes``.
- rumor (``rumor simulate``, aggregator ``mean``, defaults otherwise): each peer trains 1
  local epoch, sends its update to ALL 8 neighbours, waits for all 8 and merges the 9
  models (plain mean). P training calls and 8 P messages a round (8x gossipy's).

What is counted:

- peer-rounds/s = P x rounds / wall seconds of the run loop alone (gossipy's
  ``sim.start``; rumor's ``Simulation.run``), median of ``--repeats``. Building the
  peers (and gossipy's ``init_nodes`` training) is outside that time for both.
  Evaluation IS inside it for both, at the same setting: every round a sample of
  ``--eval-fraction`` of the peers is evaluated on the whole test set (gossipy's
  ``sampling_eval``, which also computes sklearn precision/recall/F1; rumor's
  ``eval_peers``).
- local SGD steps are counted, not assumed: gossipy's by counting
  ``TorchModelHandler._local_step`` calls (the init epoch included), rumor's as rounds x
  sum over peers of ceil(shard / batch) x epochs. rumor runs ``rounds + 1`` rounds so
  that both do the same number of steps (gossipy's extra init epoch); the table prints
  both counts.
- final accuracy: mean over all peers of each peer's model on the whole test set, the
  same torch argmax code for both, computed after the run (outside the timing).
- whole command: wall time of ``rumor simulate ...`` as a user types it, against this
  script's ``--only gossipy`` mode (imports gossipy, builds the same data, runs the same
  rounds, evaluates every peer at the end), both as fresh subprocesses, median of
  ``--repeats``. The gossipy script also imports rumor's data/topology helpers (for the
  identical split and graph; they cost well under a second, printed as "helper import").

Nothing is asserted; the numbers are printed (and go to docs/results.md).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rumor.node.threads import apply_threads

DELTA = 100  # gossipy timesteps per round (its examples' value)
LR, BATCH, EPOCHS, HIDDEN = 0.1, 8, 1, 32


@dataclass
class Scenario:
    peers: int
    rounds: int
    seed: int
    eval_fraction: float

    @property
    def eval_peers(self) -> int:
        return max(1, round(self.peers * self.eval_fraction))


@dataclass
class Outcome:
    wall: float  # run loop seconds
    peer_rounds: int
    steps: int
    acc: float

    @property
    def rate(self) -> float:
        return self.peer_rounds / self.wall


def _data(sc: Scenario) -> tuple[Any, list[np.ndarray], Any]:
    from rumor.node.data.datasets import load_dataset
    from rumor.node.data.splits import split_indices
    from rumor.topology import build_topology

    ds = load_dataset("digits")
    parts = split_indices(ds.y_train.numpy(), sc.peers, "iid", sc.seed)
    graph = build_topology("regular:8", sc.peers, sc.seed)
    return ds, parts, graph


def _accuracy(models: list[torch.nn.Module], x: torch.Tensor, y: torch.Tensor) -> float:
    accs = []
    with torch.no_grad():
        for m in models:
            accs.append(float((m(x).argmax(1) == y).float().mean()))
    return float(np.mean(accs))


def _import_gossipy() -> types.ModuleType:
    """Import gossipy; its data module imports torchvision at the top for its CIFAR10 /
    FashionMNIST loaders, which this scenario does not use. Where torchvision is not
    installed (it would pull a CUDA torch), a stand-in module whose every attribute is
    missing (AttributeError, so ``hasattr`` probes such as torch's own keep working)
    is put in its place, so a use of it fails loudly."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        stub = types.ModuleType("torchvision")

        def refuse(name: str) -> Any:
            raise AttributeError(f"torchvision is not installed (asked for {name!r})")

        stub.__getattr__ = refuse  # type: ignore[method-assign]
        sys.modules["torchvision"] = stub
    try:
        import gossipy
        import gossipy.simul
    except ImportError as exc:
        raise SystemExit(f"gossipy-dfl is not installed ({exc}); run: make bench-gossipy") from None
    return gossipy


def run_gossipy(sc: Scenario) -> Outcome:
    gossipy = _import_gossipy()
    from gossipy.core import AntiEntropyProtocol, CreateModelMode, StaticP2PNetwork
    from gossipy.data import DataDispatcher
    from gossipy.data.handler import ClassificationDataHandler
    from gossipy.model.handler import TorchModelHandler
    from gossipy.model.nn import TorchMLP
    from gossipy.node import GossipNode
    from gossipy.simul import GossipSimulator, SimulationReport

    steps = [0]

    class CountingHandler(TorchModelHandler):  # type: ignore[misc]
        def _local_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
            steps[0] += 1
            super()._local_step(x, y)

    ds, parts, graph = _data(sc)
    gossipy.set_seed(sc.seed)
    x_train, x_test = ds.x_train.flatten(1), ds.x_test.flatten(1)  # 8x8 images -> 64
    handler = ClassificationDataHandler(x_train, ds.y_train, x_test, ds.y_test)
    dispatcher = DataDispatcher(handler, n=sc.peers, eval_on_user=False, auto_assign=False)
    dispatcher.set_assignments([p.tolist() for p in parts], None)
    adjacency = np.zeros((sc.peers, sc.peers), dtype=np.int8)
    for a, b in graph.edges():
        adjacency[a, b] = adjacency[b, a] = 1
    net = StaticP2PNetwork(sc.peers, adjacency)
    proto = CountingHandler(
        net=TorchMLP(x_train.shape[1], ds.num_classes, (HIDDEN,)),
        optimizer=torch.optim.SGD,
        optimizer_params={"lr": LR},
        criterion=torch.nn.CrossEntropyLoss(),
        local_epochs=EPOCHS,
        batch_size=BATCH,
        create_model_mode=CreateModelMode.MERGE_UPDATE,
    )
    nodes = GossipNode.generate(data_dispatcher=dispatcher, p2p_net=net, model_proto=proto,
                                round_len=DELTA, sync=True)
    sim = GossipSimulator(nodes=nodes, data_dispatcher=dispatcher, delta=DELTA,
                          protocol=AntiEntropyProtocol.PUSH,
                          sampling_eval=sc.eval_peers / sc.peers)
    report = SimulationReport()
    sim.add_receiver(report)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # gossipy's progress bar
            sim.init_nodes(seed=sc.seed)
            t0 = time.perf_counter()
            sim.start(n_rounds=sc.rounds)
            wall = time.perf_counter() - t0
    finally:
        sim.remove_receiver(report)  # gossipy keeps receivers in a class-level list
    models = [n.model_handler.model for n in nodes.values()]
    return Outcome(wall, sc.peers * sc.rounds, steps[0],
                   _accuracy(models, x_test, ds.y_test))


def rumor_config(sc: Scenario, rounds: int) -> Any:
    from rumor.node.simulation import SimulationConfig

    return SimulationConfig(peers=sc.peers, rounds=rounds, topology="regular:8",
                            aggregator="mean", model="mlp", dataset="digits", seed=sc.seed,
                            lr=LR, batch_size=BATCH, local_epochs=EPOCHS,
                            eval_peers=sc.eval_peers)


def run_rumor(sc: Scenario) -> Outcome:
    from rumor.node.simulation import Simulation

    rounds = sc.rounds + 1  # gossipy's init epoch: the same number of SGD steps
    sim = Simulation(rumor_config(sc, rounds))
    t0 = time.perf_counter()
    sim.run()
    wall = time.perf_counter() - t0
    per_round = sum(math.ceil(len(ix) / BATCH) * EPOCHS for ix in sim.indices[:sc.peers])
    acc = sim.trainer.evaluate(sim.params[sim.learners], sim.dataset.x_test, sim.dataset.y_test)
    return Outcome(wall, sc.peers * rounds, rounds * per_round, float(np.mean(acc)))


def rumor_command(sc: Scenario, out: str) -> list[str]:
    rumor = shutil.which("rumor", path=os.path.dirname(sys.executable)) or "rumor"
    return [rumor, "simulate", "--peers", str(sc.peers), "--rounds", str(sc.rounds + 1),
            "--topology", "regular:8", "--aggregator", "mean", "--model", "mlp",
            "--dataset", "digits", "--seed", str(sc.seed), "--lr", str(LR),
            "--batch-size", str(BATCH), "--local-epochs", str(EPOCHS),
            "--eval-peers", str(sc.eval_peers), "--threads", "1", "--quiet", "--out", out]


def gossipy_command(sc: Scenario) -> list[str]:
    return [sys.executable, "-m", "benchmarks.gossipy_vs_rumor", "--only", "gossipy",
            "--peers", str(sc.peers), "--rounds", str(sc.rounds), "--seed", str(sc.seed),
            "--eval-fraction", str(sc.eval_fraction)]


def _timed(cmd: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed ({done.returncode}): "
                         f"{done.stderr[-800:]}")
    return wall


def whole_commands(sc: Scenario, repeats: int) -> tuple[float, float]:
    ours, theirs = [], []
    with tempfile.TemporaryDirectory(prefix="rumor-bench-") as tmp:
        for _ in range(repeats):  # interleaved, so load changes hit both alike
            ours.append(_timed(rumor_command(sc, tmp)))
            theirs.append(_timed(gossipy_command(sc)))
    return statistics.median(ours), statistics.median(theirs)


def _median_outcome(runs: list[Outcome]) -> Outcome:
    return sorted(runs, key=lambda o: o.wall)[len(runs) // 2]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--rounds", type=int, default=20, help="gossipy rounds (rumor: +1)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--eval-fraction", type=float, default=0.1,
                    help="share of peers evaluated every round, on both sides")
    ap.add_argument("--no-commands", action="store_true", help="skip the whole-command times")
    ap.add_argument("--only", choices=["gossipy", "rumor"],
                    help="run one side once, end to end (what the whole-command time runs)")
    args = ap.parse_args(argv)
    apply_threads(1)
    if args.only:
        for p in args.peers:
            sc = Scenario(p, args.rounds, args.seed, args.eval_fraction)
            o = run_gossipy(sc) if args.only == "gossipy" else run_rumor(sc)
            print(f"{args.only} {p} peers: {o.rate:.0f} peer-rounds/s, acc {o.acc:.4f}")
        return
    t0 = time.perf_counter()
    _data(Scenario(10, 1, args.seed, 1.0))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); helper import "
          f"and digits load {time.perf_counter() - t0:.2f} s; rounds {args.rounds} "
          f"(rumor {args.rounds + 1}), eval {args.eval_fraction:.0%} of peers per round, "
          f"median of {args.repeats}")
    run_rumor(Scenario(20, 1, args.seed, 1.0))  # warm both up outside the timings
    run_gossipy(Scenario(20, 1, args.seed, 1.0))
    print(f"{'peers':>5} | {'gossipy pr/s':>12} | {'rumor pr/s':>10} | {'ratio':>6} | "
          f"{'gossipy steps':>13} | {'rumor steps':>11} | {'gossipy acc':>11} | "
          f"{'rumor acc':>9}")
    for p in args.peers:
        sc = Scenario(p, args.rounds, args.seed, args.eval_fraction)
        g_runs, r_runs = [], []
        for _ in range(args.repeats):  # interleaved
            g_runs.append(run_gossipy(sc))
            r_runs.append(run_rumor(sc))
        g, r = _median_outcome(g_runs), _median_outcome(r_runs)
        print(f"{p:5d} | {g.rate:12.0f} | {r.rate:10.0f} | {r.rate / g.rate:5.2f}x | "
              f"{g.steps:13d} | {r.steps:11d} | {g.acc:11.4f} | {r.acc:9.4f}", flush=True)
    if args.no_commands:
        return
    print("whole command (fresh processes, imports included), seconds:")
    print(f"{'peers':>5} | {'gossipy script':>14} | {'rumor simulate':>14} | gossipy/rumor")
    for p in args.peers:
        sc = Scenario(p, args.rounds, args.seed, args.eval_fraction)
        c_r, c_g = whole_commands(sc, args.repeats)
        print(f"{p:5d} | {c_g:14.1f} | {c_r:14.1f} | {c_g / c_r:.2f}x", flush=True)


if __name__ == "__main__":
    main()
