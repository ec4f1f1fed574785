"""``rumor compare``: the same simulation under several aggregators, side by side.

Writes OUT/<peers>p-<aggregator>/{metrics.csv,summary.json} for every run, a
markdown table OUT/table.md (final / best accuracy, rounds to 80/85/90 %, consensus
distance, wall time) and OUT/accuracy.png (mean accuracy per round, one line per
run). docs/results.md quotes these tables; rerun to regenerate them. Arguments, the table,
the plot and the printed lines only: the runs are rumor.node.compare's. A run that
stops before its last round is warned about (with the reason) and marked in the table.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from rumor.node.compare import compare_configs, run_compare
from rumor.node.results import RoundMetrics
from rumor.node.simulation import RoundCallback, SimulationConfig
from rumor.scripts.options import (
    DEFAULT_TOPOLOGY,
    aggregator_flag,
    dataset_dir_flags,
    dataset_name,
    default_topology,
    model_name,
    positive_float,
    positive_int,
    seed_int,
    split_spec,
    topology_spec,
    writable_dir,
)
from rumor.scripts.reporting import pyplot, round_progress, write_run
from rumor.scripts.tables import console as make_console


def add_parser(sub: Any) -> None:
    p = sub.add_parser("compare", help="run the same simulation under several aggregators")
    aggregator_flag(p, ["variance-corrected", "mean", "fedavg"], many=True)
    p.add_argument("--peers", type=positive_int, nargs="+", default=[50, 100],
                   help="peer counts; every aggregator runs at each")
    p.add_argument("--rounds", type=positive_int, default=40, help="rounds per run")
    p.add_argument("--topology", type=topology_spec, default=None,
                   help="ring | complete | star | regular:K | er:P | ba:M | rgg:R | ws:K:P "
                   f"(default: {DEFAULT_TOPOLOGY}, or complete below 9 peers)")
    p.add_argument("--split", type=split_spec, default="iid",
                   help="iid | dirichlet:ALPHA | shards:K")
    p.add_argument("--model", type=model_name, default="mlp", help="mlp | lenet5 | cnn")
    p.add_argument("--dataset", type=dataset_name, default="digits",
                   help="digits | mnist | fashion-mnist")
    p.add_argument("--lr", type=positive_float, default=SimulationConfig().lr,
                   help="SGD learning rate")
    p.add_argument("--batch-size", type=positive_int, default=SimulationConfig().batch_size,
                   help="minibatch size of local training")
    p.add_argument("--local-epochs", type=positive_int, default=1,
                   help="passes over the local data per round")
    p.add_argument("--eval-peers", type=positive_int, default=None,
                   help="evaluate a seeded sample of this many peers each round (default: "
                   "every peer)")
    p.add_argument("--test-subset", type=positive_int, default=None,
                   help="evaluate on a seeded subset of this many test samples (default: "
                   "the whole test set)")
    p.add_argument("--init", choices=["independent", "same"], default="independent",
                   help="peers start from their own random models or one shared model")
    p.add_argument("--seed", type=seed_int, default=1, help="seed of every run")
    dataset_dir_flags(p)
    p.add_argument("--out", type=writable_dir, default=Path("runs/compare"),
                   help="output directory: OUT/<peers>p-<aggregator>/, table.md, accuracy.png")
    p.set_defaults(func=run)


def _fmt(v: Any, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def table(results: list[dict[str, Any]]) -> str:
    head = ("| peers | aggregator | final acc (mean) | min | max | best | rounds to 0.80 "
            "| to 0.90 | consensus dist. | wall s |")
    lines = [head, "|" + "---|" * 10]
    for r in results:
        s = r["summary"]
        lines.append(
            f"| {r['peers']} | {r['aggregator']} | {_fmt(s['final_acc_mean'])} "
            f"| {_fmt(s['final_acc_min'])} | {_fmt(s['final_acc_max'])} "
            f"| {_fmt(s['best_acc_mean'])} | {s['rounds_to']['0.8'] or '-'} "
            f"| {s['rounds_to']['0.9'] or '-'} | {_fmt(s['final_consensus_distance'])} "
            f"| {r['wall']:.0f} |"
        )
    bad = [r for r in results if not r["summary"].get("complete", True)]
    if bad:
        lines += ["", "Incomplete runs: " + "; ".join(
            f"{r['peers']} peers {r['aggregator']}: {r['summary']['reason']}" for r in bad)]
    return "\n".join(lines) + "\n"


def title(base: SimulationConfig, rounds: int) -> str:
    return f"aggregators compared: {base.model} on {base.dataset}, {base.split}, {rounds} rounds"


def plot(results: list[dict[str, Any]], path: Path, name: str = "aggregators compared"
         ) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        rows: list[RoundMetrics] = r["rows"]
        ax.plot([m.round for m in rows], [m.acc_mean for m in rows],
                label=f"{r['aggregator']} ({r['peers']} peers)")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("mean test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    console = make_console()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    base = SimulationConfig(
        rounds=args.rounds, topology=args.topology or DEFAULT_TOPOLOGY, split=args.split,
        model=args.model,
        dataset=args.dataset, lr=args.lr, batch_size=args.batch_size,
        local_epochs=args.local_epochs, eval_peers=args.eval_peers, seed=args.seed,
        test_subset=args.test_subset, init=args.init,
        data_dir=args.dataset_dir,
    )
    cfgs = compare_configs(base, args.peers, args.aggregators)
    if args.topology is None:  # the default that fits each peer count
        cfgs = [replace(c, topology=default_topology(c.peers)) for c in cfgs]
    interrupted = False
    results: list[dict[str, Any]] = []
    with round_progress(console, "acc {task.fields[acc]:.3f}") as progress:
        def on_start(cfg: SimulationConfig) -> RoundCallback:
            task = progress.add_task(f"{cfg.peers} peers {cfg.aggregator}",
                                     total=cfg.rounds, acc=0.0)

            def on_round(m: RoundMetrics) -> None:
                progress.update(task, completed=m.round, acc=m.acc_mean)

            return on_round

        try:
            for r in run_compare(cfgs, on_start):
                s = write_run(out / r.name, r.sim, r.rows)
                if not r.complete:
                    progress.console.print(
                        f"warning: {r.peers} peers {r.aggregator}: incomplete run: "
                        f"{s['reason']}", style="yellow", markup=False, highlight=False)
                results.append({"peers": r.peers, "aggregator": r.aggregator, "summary": s,
                                "rows": r.rows, "wall": r.wall})
        except KeyboardInterrupt:  # the finished runs are on disk; tabulate them
            interrupted = True
    md = table(results)
    if interrupted:
        md += f"\nInterrupted: {len(results)} of {len(cfgs)} runs finished.\n"
    (out / "table.md").write_text(md)
    if results:
        plot(results, out / "accuracy.png", title(base, args.rounds))
    sys.stdout.write(md)  # plain text: a pipe gets whole markdown rows
    console.print(f"wrote {out / 'table.md'}" + (f" and {out / 'accuracy.png'}" if results
                  else ""), soft_wrap=True, markup=False, highlight=False)
    return 130 if interrupted else 0
