"""``rumor compare``: the same simulation under several aggregators (and compressors),
side by side.

Writes OUT/<peers>p-<aggregator>[-<compress>]/{metrics.csv,summary.json} for every
run, a markdown table OUT/table.md (final / best accuracy, rounds to 80/85/90 %,
consensus distance, MB sent, wall time), OUT/accuracy.png (mean accuracy per round, one
line per run) and OUT/bytes.png (mean accuracy against cumulative MB sent). With
``--compress A B ...`` the table also gives, per run, the MB it sent until its mean
accuracy reached the uncompressed run's final accuracy minus 1 point, and how many
times fewer that is than the uncompressed run needed. docs/results.md quotes these
tables; rerun to regenerate them. Arguments, the table,
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
from rumor.node.results import RoundMetrics, bytes_to_accuracy, cumulative_mb
from rumor.node.simulation import RoundCallback, SimulationConfig
from rumor.scripts.comm_options import add_comm_flags, comm_values
from rumor.scripts.options import (
    COMPRESS_HELP,
    DEFAULT_TOPOLOGY,
    add_threads_flag,
    aggregator_flag,
    compress_help,
    compress_spec,
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
    p.add_argument("--compress", type=compress_spec, nargs="+", default=["none"],
                   metavar="SPEC", help="compare these compressors ('none' = full models; "
                   "the first 'none' is the reference of the bytes ratio); "
                   + COMPRESS_HELP)
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="run this many simulations at once, each in its own process "
                        "(same results as one at a time; ~0.6 GB each)")
    p.add_argument("--seed", type=seed_int, default=1, help="seed of every run")
    dataset_dir_flags(p)
    p.add_argument("--out", type=writable_dir, default=Path("runs/compare"),
                   help="output directory: OUT/<peers>p-<aggregator>/, table.md, accuracy.png")
    add_threads_flag(p)
    add_comm_flags(p)
    p.set_defaults(func=run)


def _fmt(v: Any, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def _mb(n: float | None) -> float | None:
    """Bytes as MB; None (a run that recorded no traffic, e.g. one cut short) stays None."""
    return None if n is None else n / 1e6


def bytes_ratios(results: list[dict[str, Any]], margin: float = 0.01) -> None:
    """Per run: ``target`` (the uncompressed run's final accuracy - margin, same peers
    and aggregator), ``mb_to_target`` and ``fewer`` (reference MB / this run's MB)."""
    refs = {(r["peers"], r["aggregator"]): r for r in results if r["compress"] == "none"}
    for r in results:
        ref = refs.get((r["peers"], r["aggregator"]))
        r["target"] = r["mb_to_target"] = r["fewer"] = r["mb_to_85"] = r["fewer_85"] = None
        mine85 = bytes_to_accuracy(r["rows"], 0.85)
        theirs85 = bytes_to_accuracy(ref["rows"], 0.85) if ref is not None else None
        if mine85 is not None:
            r["mb_to_85"] = mine85 / 1e6
            r["fewer_85"] = theirs85 / mine85 if theirs85 else None
        if ref is None or ref["summary"]["final_acc_mean"] is None:
            continue
        r["target"] = target = ref["summary"]["final_acc_mean"] - margin
        mine = bytes_to_accuracy(r["rows"], target)
        theirs = bytes_to_accuracy(ref["rows"], target)
        if mine is not None:
            r["mb_to_target"] = mine / 1e6
            r["fewer"] = theirs / mine if theirs else None


def table(results: list[dict[str, Any]]) -> str:
    compressed = any(r.get("compress", "none") != "none" for r in results)
    head = ("| peers | aggregator |" + (" compress |" if compressed else "")
            + " final acc (mean) | min | max | best | rounds to 0.80 | to 0.90 "
            "| consensus dist. | MB sent |"
            + (" MB to ref-1pt | x fewer bytes | MB to 0.85 | x fewer |" if compressed
               else "") + " wall s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        s = r["summary"]
        comp = f" `{r['compress']}` |" if compressed else ""
        ratio = ""
        if compressed:
            ratio = (f" {_fmt(r.get('mb_to_target'), '.2f')} "
                     f"| {_fmt(r.get('fewer'), '.1f')} | {_fmt(r.get('mb_to_85'), '.2f')} "
                     f"| {_fmt(r.get('fewer_85'), '.1f')} |")
        lines.append(
            f"| {r['peers']} | {r['aggregator']} |{comp} {_fmt(s['final_acc_mean'])} "
            f"| {_fmt(s['final_acc_min'])} | {_fmt(s['final_acc_max'])} "
            f"| {_fmt(s['best_acc_mean'])} | {s['rounds_to']['0.8'] or '-'} "
            f"| {s['rounds_to']['0.9'] or '-'} | {_fmt(s['final_consensus_distance'])} "
            f"| {_fmt(_mb(s.get('bytes_sent')), '.2f')} |{ratio} {r['wall']:.0f} |"
        )
    bad = [r for r in results if not r["summary"].get("complete", True)]
    if bad:
        lines += ["", "Incomplete runs: " + "; ".join(
            f"{r['peers']} peers {r['aggregator']}: {r['summary']['reason']}" for r in bad)]
    return "\n".join(lines) + "\n"


def _label(r: dict[str, Any]) -> str:
    comp = f", {r['compress']}" if r.get("compress", "none") != "none" else ""
    return f"{r['aggregator']} ({r['peers']} peers{comp})"


def plot_bytes(results: list[dict[str, Any]], path: Path) -> None:
    """Mean accuracy against cumulative MB sent (log scale), one line per run."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        rows: list[RoundMetrics] = r["rows"]
        ax.plot(cumulative_mb(rows), [m.acc_mean for m in rows], label=_label(r))
    targets = {r["target"] for r in results if r.get("target") is not None}
    for t in sorted(targets):
        ax.axhline(t, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("cumulative MB sent (all peers)")
    ax.set_ylabel("mean test accuracy")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def title(base: SimulationConfig, rounds: int) -> str:
    return f"aggregators compared: {base.model} on {base.dataset}, {base.split}, {rounds} rounds"


def plot(results: list[dict[str, Any]], path: Path, name: str = "aggregators compared"
         ) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        rows: list[RoundMetrics] = r["rows"]
        ax.plot([m.round for m in rows], [m.acc_mean for m in rows],
                label=_label(r))
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


def _one_run(cfg: SimulationConfig, out: Path) -> dict[str, Any]:
    """One run in a worker process (``--jobs``): run, write its files, return the row."""
    import torch

    torch.set_num_threads(1)
    r = next(run_compare([cfg]))
    s = write_run(out / r.name, r.sim, r.rows)
    return {"peers": r.peers, "aggregator": r.aggregator, "summary": s, "rows": r.rows,
            "wall": r.wall, "compress": r.compressor}


def _run_parallel(cfgs: list[SimulationConfig], out: Path, jobs: int,
                  progress: Any) -> list[dict[str, Any]]:
    """Every config in its own process, ``jobs`` at a time; results in config order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    task = progress.add_task(f"{len(cfgs)} runs, {jobs} at a time", total=len(cfgs), acc=0.0)
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = [pool.submit(_one_run, cfg, out) for cfg in cfgs]
        for fut in futures:
            fut.add_done_callback(lambda _: progress.advance(task))
        return [f.result() for f in futures]


def run(args: argparse.Namespace) -> int:
    if compress_help(args):
        return 0
    console = make_console()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    base = SimulationConfig(
        rounds=args.rounds, topology=args.topology or DEFAULT_TOPOLOGY, split=args.split,
        model=args.model,
        dataset=args.dataset, lr=args.lr, batch_size=args.batch_size,
        local_epochs=args.local_epochs, eval_peers=args.eval_peers, seed=args.seed,
        test_subset=args.test_subset, init=args.init,
        data_dir=args.dataset_dir, **comm_values(args),
    )
    cfgs = compare_configs(base, args.peers, args.aggregators, args.compress)
    if args.topology is None:  # the default that fits each peer count
        cfgs = [replace(c, topology=default_topology(c.peers)) for c in cfgs]
    interrupted = False
    results: list[dict[str, Any]] = []
    with round_progress(console, "acc {task.fields[acc]:.3f}") as progress:
        def on_start(cfg: SimulationConfig) -> RoundCallback:
            task = progress.add_task(f"{cfg.peers} peers {cfg.aggregator} "
                                     f"{cfg.compress or ''}".rstrip(),
                                     total=cfg.protocol_rounds, acc=0.0)

            def on_round(m: RoundMetrics) -> None:
                progress.update(task, completed=m.round, acc=m.acc_mean)

            return on_round

        try:
            if args.jobs > 1:
                results = _run_parallel(cfgs, out, args.jobs, progress)
            for r in run_compare(cfgs if args.jobs == 1 else [], on_start):
                s = write_run(out / r.name, r.sim, r.rows)
                results.append({"peers": r.peers, "aggregator": r.aggregator,
                                "summary": s, "rows": r.rows, "wall": r.wall,
                                "compress": r.compressor})
        except KeyboardInterrupt:  # the finished runs are on disk; tabulate them
            interrupted = True
        for row in results:
            if not row["summary"].get("complete", True):
                progress.console.print(
                    f"warning: {row['peers']} peers {row['aggregator']}: incomplete run: "
                    f"{row['summary']['reason']}", style="yellow", markup=False,
                    highlight=False)
    bytes_ratios(results)
    md = table(results)
    if interrupted:
        md += f"\nInterrupted: {len(results)} of {len(cfgs)} runs finished.\n"
    (out / "table.md").write_text(md)
    if results:
        plot(results, out / "accuracy.png", title(base, args.rounds))
        plot_bytes(results, out / "bytes.png")
    sys.stdout.write(md)  # plain text: a pipe gets whole markdown rows
    console.print(f"wrote {out / 'table.md'}" + (f", {out / 'accuracy.png'} and "
                  f"{out / 'bytes.png'}" if results else ""),
                  soft_wrap=True, markup=False, highlight=False)
    return 130 if interrupted else 0
