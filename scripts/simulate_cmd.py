"""``rumor simulate``: a whole swarm in one process on a virtual clock."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from rumor.node.results import MetricsAppender, RoundMetrics
from rumor.node.simulation import Simulation, SimulationConfig
from rumor.scripts.comm_options import add_comm_flags, comm_values
from rumor.scripts.options import (
    COMPRESS_HELP,
    DEFAULT_TOPOLOGY,
    add_config_flag,
    add_threads_flag,
    aggregator_flag,
    attack_spec,
    compress_help,
    compress_spec,
    dataset_dir_flags,
    dataset_name,
    default_topology,
    model_name,
    nonneg_float,
    nonneg_int,
    placement_spec,
    positive_float,
    positive_int,
    probability,
    seed_int,
    split_spec,
    topology_spec,
    writable_dir,
)
from rumor.scripts.reporting import round_progress, write_run
from rumor.scripts.tables import console as make_console


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate N peers in one process (virtual clock, deterministic from --seed)",
        description="Simulate a gossip-learning swarm in one process. Same seed, same metrics.",
    )
    d = SimulationConfig()
    p.add_argument("--peers", type=positive_int, default=d.peers, help="number of peers")
    p.add_argument("--rounds", type=positive_int, default=d.rounds, help="rounds to run")
    p.add_argument("--topology", type=topology_spec, default=None,
                   help="ring | complete | star | regular:K | er:P | ba:M | rgg:R | ws:K:P "
                   f"(default: {DEFAULT_TOPOLOGY}, or complete below 9 peers)")
    p.add_argument("--split", type=split_spec, default=d.split,
                   help="iid | dirichlet:ALPHA | shards:K")
    aggregator_flag(p, d.aggregator)
    p.add_argument("--f", type=nonneg_int, default=d.f, help="f for the robust rules")
    p.add_argument("--model", type=model_name, default=d.model, help="mlp | lenet5 | cnn")
    p.add_argument("--dataset", type=dataset_name, default=d.dataset,
                   help="digits | mnist | fashion-mnist")
    p.add_argument("--seed", type=seed_int, default=d.seed,
                   help="seed of everything random (data split, init, topology, sampling)")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="SGD learning rate")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                   help="minibatch size of local training")
    p.add_argument("--local-epochs", type=positive_int, default=d.local_epochs,
                   help="passes over the local data per round")
    p.add_argument("--momentum", type=probability, default=d.momentum,
                   help="SGD momentum of local training")
    p.add_argument("--init", choices=["independent", "same"], default=d.init,
                   help="peers start from their own random models or one shared model")
    p.add_argument("--latency", type=nonneg_float, default=d.latency, help="link latency, seconds")
    p.add_argument("--loss", type=probability, default=d.loss, help="message loss probability")
    p.add_argument("--round-timeout", type=positive_float, default=d.round_timeout,
                   help="virtual seconds to wait for neighbours' updates before merging")
    p.add_argument("--fanout", type=positive_int, default=None,
                   help="push to this many random neighbours (default: all)")
    p.add_argument("--min-updates", type=nonneg_int, default=None,
                   help="merge once this many updates arrived (default: all neighbours)")
    p.add_argument("--eval-peers", type=positive_int, default=None,
                   help="evaluate a seeded sample of this many peers each round "
                   "(default: all up to 200, else a sample of 200; all peers' final "
                   "models are evaluated at the end: summary.json final_all_peers)")
    p.add_argument("--attack", type=attack_spec, default=None, metavar="NAME[:k=v,...]",
                   help="sign-flip | gaussian | alie | ipm | free-ride | label-flip, "
                        "e.g. alie or sign-flip:scale=4 or label-flip:pairs=0-1 (default: "
                        "no attack)")
    p.add_argument("--byzantine", type=nonneg_int, default=0,
                   help="number of Byzantine peers (placed by --placement)")
    p.add_argument("--placement", type=placement_spec, default=d.placement,
                   help="where the Byzantine peers sit: random (seeded) | hubs (highest "
                   "degree) | list:I,J,... (these peer indices)")
    p.add_argument("--sybils", type=nonneg_int, default=0,
                   help="Sybil identities echoing one poisoned update")
    p.add_argument("--relay-fraction", type=probability, default=0.0,
                   help="fraction of peers that hold no data (relay only)")
    p.add_argument("--test-subset", type=positive_int, default=None,
                   help="evaluate on a seeded subset of this many test samples (default: "
                   "the whole test set)")
    p.add_argument("--compress", type=compress_spec, default=None, metavar="NAME[:k=v,...]",
                   help=COMPRESS_HELP)
    p.add_argument("--sign", action="store_true",
                   help="sign and verify every message (slower; always on in real mode)")
    dataset_dir_flags(p)
    p.add_argument("--out", type=writable_dir, default=Path("runs/simulate"),
                   help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_comm_flags(p)
    add_config_flag(p)
    add_threads_flag(p)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    return SimulationConfig(
        peers=args.peers,
        rounds=args.rounds,
        topology=args.topology or default_topology(args.peers),
        split=args.split,
        aggregator=args.aggregator,
        f=args.f,
        model=args.model,
        dataset=args.dataset,
        seed=args.seed,
        lr=args.lr,
        batch_size=args.batch_size,
        local_epochs=args.local_epochs,
        momentum=args.momentum,
        init=args.init,
        latency=args.latency,
        loss=args.loss,
        round_timeout=args.round_timeout,
        fanout=args.fanout,
        min_updates=args.min_updates,
        eval_peers=args.eval_peers,
        test_subset=args.test_subset,
        sign=args.sign,
        data_dir=args.dataset_dir,
        attack=args.attack,
        byzantine=args.byzantine,
        placement=args.placement,
        sybils=args.sybils,
        relay_fraction=args.relay_fraction,
        **comm_values(args),
        compress=None if args.compress in (None, "none") else args.compress,
    )


def views_note(summary: dict[str, Any]) -> str:
    """``", 4/97 honest views >= 1/3 Byzantine (max 0.50)"`` when the run had attackers."""
    v = summary.get("byzantine_views") or {}
    if not summary.get("byzantine") and not summary.get("config", {}).get("sybils"):
        return ""
    if not v:
        return ""
    return (f", {v['views_ge_third_byzantine']}/{v['honest_views']} honest views >= 1/3 "
            f"Byzantine (max {v['max_byzantine_fraction']:.2f})")


def run(args: argparse.Namespace) -> int:
    """Run, showing progress (ETA once a round is done); metrics.csv grows a line per
    round. Ctrl-C stops it: what was done is written (summary.json has
    ``"interrupted": true``) and the exit code is 130."""
    if compress_help(args):
        return 0
    cfg = config_from_args(args)
    console = make_console()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    interrupted = False
    sim = Simulation(cfg)
    live_csv = MetricsAppender(out / "metrics.csv")
    try:
        with round_progress(console, "acc {task.fields[acc]:.3f}", label="[bold]simulate",
                            disable=args.quiet) as progress:
            task = progress.add_task("rounds", total=cfg.protocol_rounds, acc=0.0)

            def on_round(m: RoundMetrics) -> None:
                live_csv.add(m)
                progress.update(task, completed=m.round, acc=m.acc_mean)

            try:
                sim.run(on_round)
            except KeyboardInterrupt:
                interrupted = True
    finally:
        live_csv.close()
    rows = list(sim.metrics)
    wall = time.perf_counter() - t0
    summary = write_run(out, sim, rows, interrupted=interrupted, wall_time=round(wall, 3))
    if interrupted:
        console.print(f"interrupted after {len(rows)} of {cfg.protocol_rounds} rounds; partial "
                      f"results -> {out}", soft_wrap=True, markup=False, highlight=False)
        return 130
    last = rows[-1] if rows else None
    if last is not None:
        console.print(
            f"final acc mean {last.acc_mean:.4f} (min {last.acc_min:.4f}, max {last.acc_max:.4f})"
            f" after {last.round} rounds, {wall:.1f} s wall{views_note(summary)} -> {out}"
        )
    if not summary["complete"]:
        print(f"rumor simulate: incomplete run: {summary['reason']}", file=sys.stderr)
        return 1
    return 0
