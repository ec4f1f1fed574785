"""``rumor experiment SCENARIO.toml [...]``: disaster, churn and partition experiments.

Each scenario runs in the simulator (virtual clock, deterministic from its seed) and
writes OUT/<name>/{metrics.csv, summary.json, events.jsonl, scenario.toml,
accuracy.png}. With several scenarios it also writes OUT/comparison.md and
OUT/comparison.png (mean accuracy of each, with its timeline events marked).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    TaskID,
)

from rumor.node.results import RoundMetrics
from rumor.node.scenario import Scenario, load_scenario
from rumor.node.simulation import Simulation
from rumor.protocols.errors import ConfigError
from rumor.scripts.reporting import pyplot, round_progress, write_run


def add_parser(sub: Any) -> None:
    p = sub.add_parser("experiment", help="run scenario files (disasters, churn, partitions)")
    p.add_argument("scenarios", nargs="+", type=Path, help="scenario TOML files")
    p.add_argument("--mode", choices=["sim"], default="sim",
                   help="sim: in-process, virtual clock")
    p.add_argument("--out", type=Path, default=Path("runs/experiments"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of every scenario, e.g. --set rounds=10")
    p.set_defaults(func=run)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        value: Any = raw
        for conv in (int, float):
            try:
                value = conv(raw)
                break
            except ValueError:
                continue
        if raw in ("true", "false"):
            value = raw == "true"
        out[key.replace("-", "_")] = value
    return out


def plot_run(sc: Scenario, rows: list[RoundMetrics], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    x = [m.time for m in rows]
    ax.plot(x, [m.acc_mean for m in rows], label="mean accuracy", color="C0")
    ax.fill_between(x, [m.acc_min for m in rows], [m.acc_max for m in rows], color="C0",
                    alpha=0.2, label="min-max over peers")
    for ev in sc.config.timeline:
        ax.axvline(ev.at, color="C3", alpha=0.25, lw=1)
    ax.set_xlabel("virtual time (s)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax2 = ax.twinx()
    ax2.plot(x, [m.peers_alive for m in rows], color="C2", ls="--", label="peers alive")
    ax2.set_ylabel("peers alive")
    ax2.set_ylim(0, max(m.peers_alive for m in rows) * 1.1)
    ax.set_title(sc.name)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_comparison(runs: list[tuple[Scenario, list[RoundMetrics]]], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for k, (sc, rows) in enumerate(runs):
        ax.plot([m.time for m in rows], [m.acc_mean for m in rows], label=sc.name,
                color=f"C{k}")
        for ev in sc.config.timeline[:50]:
            ax.axvline(ev.at, color=f"C{k}", alpha=0.15, lw=1)
    ax.set_xlabel("virtual time (s)")
    ax.set_ylabel("mean test accuracy of live peers")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    overrides = parse_overrides(args.set)
    scenarios = [load_scenario(p, overrides) for p in args.scenarios]  # fail fast
    out: Path = args.out
    runs: list[tuple[Scenario, list[RoundMetrics]]] = []
    lines = ["| scenario | peers | events | final acc | min | alive at end | acc before first "
             "event | wall s |", "|" + "---|" * 8]
    with round_progress(console,
                        "acc {task.fields[acc]:.3f} alive {task.fields[alive]}") as progress:
        for sc in scenarios:
            task = progress.add_task(sc.name, total=sc.config.rounds, acc=0.0,
                                     alive=sc.config.peers)
            t0 = time.perf_counter()
            sim = Simulation(sc.config)
            def on_round(m: RoundMetrics, t: TaskID = task) -> None:
                progress.update(t, completed=m.round, acc=m.acc_mean, alive=m.peers_alive)

            rows = sim.run(on_round)
            wall = time.perf_counter() - t0
            d = out / sc.name
            write_run(d, sim, rows, scenario=sc.name, description=sc.description,
                      final_peers_alive=rows[-1].peers_alive if rows else 0)
            (d / "scenario.toml").write_text(sc.source)
            if rows:
                plot_run(sc, rows, d / "accuracy.png")
            first = sc.config.timeline[0].at if sc.config.timeline else None
            before = [m.acc_mean for m in rows if first is None or m.time <= first]
            lines.append(
                f"| {sc.name} | {sc.config.peers} | {len(sc.config.timeline)} "
                f"| {rows[-1].acc_mean:.4f} | {rows[-1].acc_min:.4f} | {rows[-1].peers_alive} "
                f"| {before[-1] if before else float('nan'):.4f} | {wall:.0f} |"
            )
            runs.append((sc, rows))
            console.print(f"{sc.name}: final acc {rows[-1].acc_mean:.4f} "
                          f"({rows[-1].peers_alive} peers alive) -> {d}")
    if len(runs) > 1:
        (out / "comparison.md").write_text("\n".join(lines) + "\n")
        plot_comparison(runs, out / "comparison.png")
        console.print("\n".join(lines))
    return 0
