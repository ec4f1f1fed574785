"""``rumor comm-study``: schedules, the final merge and DFedSAM, as docs/results.md shows.

Arguments, the tables, the plots and the printed lines only; the runs are
rumor.node.comm_study's. Writes OUT/<section>/<run>/{metrics.csv, summary.json,
events.jsonl}, OUT/results.md (one table per section, means over the seeds) and
OUT/<section>.png.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console

from rumor.node.comm_study import SECTIONS, StudyResult, StudyRun, run_study, study_runs
from rumor.node.results import RoundMetrics
from rumor.node.simulation import RoundCallback, SimulationConfig
from rumor.scripts.options import (
    dataset_dir_flags,
    dataset_name,
    model_name,
    nonneg_float,
    positive_int,
    seed_int,
    writable_dir,
)
from rumor.scripts.reporting import pyplot, round_progress, write_run


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "comm-study",
        help="communication schedules, the final merge and DFedSAM (docs/results.md)",
        description="Run the communication study: final merge vs FedAvg, late vs "
        "uniform schedules at equal communications, DFedSAM vs SGD. Every run starts "
        "from one shared initial model.")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                   help="which sections to run (default: all)")
    p.add_argument("--peers", type=positive_int, default=50, help="peers in every run")
    p.add_argument("--rounds", type=positive_int, default=40, help="training rounds")
    p.add_argument("--seeds", type=seed_int, nargs="+", default=[1],
                   help="one run per seed for every configuration")
    p.add_argument("--final-merge", type=positive_int, default=30, metavar="T",
                   help="rounds of gossip averaging of the final merge (default 30)")
    p.add_argument("--gossip-steps", type=positive_int, default=4, metavar="Q",
                   help="mixing steps of the DFedSAM-MGS runs (default 4)")
    p.add_argument("--rho", type=nonneg_float, default=0.05, help="SAM's rho (default 0.05)")
    p.add_argument("--dataset", type=dataset_name, default="digits", help="dataset")
    p.add_argument("--model", type=model_name, default="mlp", help="model architecture")
    p.add_argument("--test-subset", type=positive_int, default=None,
                   help="evaluate on this many test samples (default: the whole test set)")
    dataset_dir_flags(p)
    p.add_argument("--out", type=writable_dir, default=Path("runs/comm-study"),
                   help="directory for the runs, tables and plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--reuse", action="store_true",
                   help="do not rerun runs whose complete files of the same config are in "
                   "--out already (resume a study, or only redraw its tables and plots)")
    p.set_defaults(func=run)


def _mean(values: list[Any], spec: str = ".4f") -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    m = statistics.fmean(vals)
    if len(vals) == 1:
        return format(m, spec)
    return f"{format(m, spec)} ± {format(statistics.stdev(vals), spec)}"


def _grouped(results: list[StudyResult], section: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        if r.run.section == section:
            out[r.run.label].append({**r.figures(), "config": r.run.config})
    return dict(out)


def tables(results: list[StudyResult]) -> str:
    """results.md: one markdown table per section that ran (means ± sd over seeds)."""
    parts: list[str] = []
    fm = _grouped(results, "final-merge")
    if fm:
        parts += ["### Final merge vs FedAvg", "",
                  "| split | method | final acc | min | acc before the final merge "
                  "| consensus dist. | MB sent |", "|" + "---|" * 7]
        for label, figs in fm.items():
            split, method = label.split(" ", 1)
            parts.append(
                f"| {split} | {method} | {_mean([f['acc'] for f in figs])} "
                f"| {_mean([f['acc_min'] for f in figs])} "
                f"| {_mean([f['acc_before_merge'] for f in figs])} "
                f"| {_mean([f['consensus'] for f in figs], '.2e')} "
                f"| {_mean([f['mb'] for f in figs], '.1f')} |")
        parts.append("")
        curves = [r for r in results if r.run.section == "final-merge" and r.merge_curve()]
        if curves:
            parts += ["How many final-merge rounds are needed (first seed; t = 0 is the end "
                      "of training; MB: what the t rounds cost):", "",
                      "| split | t | acc | consensus dist. | MB |", "|---|---|---|---|---|"]
            seen: set[str] = set()
            for r in curves:
                if r.run.label in seen:
                    continue
                seen.add(r.run.label)
                for t, acc, cd, mb in r.merge_curve():
                    parts.append(f"| {r.run.config.split} | {t} | {acc:.4f} | {cd:.2e} "
                                 f"| {mb:.1f} |")
            parts.append("")
    sc = _grouped(results, "schedule")
    if sc:
        parts += ["### Schedules at equal total communications (Dirichlet 0.1, + final merge)",
                  "", "| schedule | communicating training rounds | acc before the final merge "
                  "| consensus before | final acc (after merge) | MB sent |", "|" + "---|" * 6]
        for label, figs in sc.items():
            cfg: SimulationConfig = figs[0]["config"]
            train_comms = cfg.protocol().plan().schedule.budget(cfg.rounds)
            parts.append(
                f"| {label} | {train_comms} / {cfg.rounds} "
                f"| {_mean([f['acc_before_merge'] for f in figs])} "
                f"| {_mean([f['consensus_before_merge'] for f in figs], '.3f')} "
                f"| {_mean([f['acc'] for f in figs])} "
                f"| {_mean([f['mb'] for f in figs], '.1f')} |")
        parts.append("")
    ds = _grouped(results, "dfedsam")
    if ds:
        parts += ["### DFedSAM vs SGD (Dirichlet 0.1)", "",
                  "| topology | optimizer | gossip steps | final acc | min | consensus dist. "
                  "| MB sent |", "|" + "---|" * 7]
        for figs in ds.values():
            cfg = figs[0]["config"]
            parts.append(
                f"| {cfg.topology} | {cfg.optimizer} | {cfg.gossip_steps} "
                f"| {_mean([f['acc'] for f in figs])} | {_mean([f['acc_min'] for f in figs])} "
                f"| {_mean([f['consensus'] for f in figs], '.3f')} "
                f"| {_mean([f['mb'] for f in figs], '.1f')} |")
        parts.append("")
    return "\n".join(parts)


def plots(results: list[StudyResult], out: Path) -> list[Path]:
    """OUT/<section>.png: accuracy against cumulative MB sent (first seed of each run)."""
    plt = pyplot()
    written: list[Path] = []
    for section in SECTIONS:
        mine = [r for r in results if r.run.section == section]
        if not mine:
            continue
        seen: set[str] = set()
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in mine:
            if r.run.label in seen:
                continue
            seen.add(r.run.label)
            rows: list[RoundMetrics] = r.rows
            mb, total = [], 0.0
            for m in rows:
                total += m.bytes_sent / 1e6
                mb.append(total)
            dashed = section == "final-merge" and r.run.config.final_merge > 0
            ax.plot(mb, [m.acc_mean for m in rows], label=r.run.label,
                    linestyle="--" if dashed else "-")
        ax.set_xlabel("cumulative MB sent (all peers)")
        ax.set_ylabel("mean test accuracy")
        ax.set_title(section)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"{section}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    base = SimulationConfig(peers=args.peers, rounds=args.rounds, dataset=args.dataset,
                            model=args.model, test_subset=args.test_subset,
                            data_dir=args.dataset_dir)
    runs = study_runs(base, sections=args.sections, seeds=args.seeds,
                      final_merge=args.final_merge, gossip_steps=args.gossip_steps,
                      rho=args.rho)
    results: list[StudyResult] = []
    with round_progress(console, "acc {task.fields[acc]:.3f}", disable=args.quiet) as progress:
        def on_start(run: StudyRun) -> RoundCallback:
            task = progress.add_task(f"{run.section}: {run.label} (seed {run.config.seed})",
                                     total=run.config.protocol_rounds, acc=0.0)

            def on_round(m: RoundMetrics) -> None:
                progress.update(task, completed=m.round, acc=m.acc_mean)

            return on_round

        for r in run_study(runs, on_start, reuse=out if args.reuse else None):
            if r.sim is not None:
                write_run(out / r.run.name, r.sim, r.rows)
            if not r.complete:
                progress.console.print(f"warning: {r.run.name}: incomplete run",
                                       style="yellow", markup=False, highlight=False)
            results.append(r)
    md = tables(results)
    (out / "results.md").write_text(md)
    pngs = plots(results, out)
    console.print(md, markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote {out / 'results.md'} and {', '.join(str(p) for p in pngs)}")
    return 0
