"""``rumor experiment SCENARIO.toml [...]``: disaster, churn and partition experiments.

``--mode sim`` runs each scenario in the simulator (virtual clock, deterministic from
its seed); ``--mode real`` runs it on a loopback libp2p mesh, one process per peer,
with the scenario's topology imposed and its timeline turned into real faults
(rumor.node.mesh.real_experiment); ``--mode both`` runs both and compares them.

Each run writes OUT/<name>/{metrics.csv, summary.json, events.jsonl, scenario.toml,
accuracy.png} (with --mode both: OUT/<name>/sim/ and OUT/<name>/real/, plus
OUT/<name>/sim-vs-real.png, accuracy per round of both, and the table
OUT/sim-vs-real.md, also printed). With several scenarios also OUT/comparison.md and
OUT/comparison.png (mean accuracy of each, with its timeline events marked).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rumor.node.dashboard import Board, DashboardThread
from rumor.node.dashboard.serve import serve_mesh, sim_board
from rumor.node.mesh.real_experiment import RealExperiment, RealOptions, event_round
from rumor.node.results import RoundMetrics
from rumor.node.scenario import Scenario, load_scenario
from rumor.node.simulation import Simulation
from rumor.protocols.errors import ConfigError
from rumor.scripts.options import (
    add_config_flag,
    add_threads_flag,
    port_or_any,
    positive_float,
    writable_dir,
)
from rumor.scripts.reporting import pyplot, write_run
from rumor.scripts.tables import console as make_console


def add_parser(sub: Any) -> None:
    p = sub.add_parser("experiment", help="run scenario files (disasters, churn, partitions)")
    p.add_argument("scenarios", nargs="*", type=Path,
                   help="scenario TOML files (or scenarios = [...] in --config)")
    p.add_argument("--mode", choices=["sim", "real", "both"], default="sim",
                   help="sim: in-process, virtual clock; real: one process per peer on a "
                   "loopback libp2p mesh, timeline events as real faults (kill -9, "
                   "restarts, link blocks); both: sim then real, compared")
    p.add_argument("--out", type=writable_dir, default=Path("runs/experiments"),
                   help="output directory: OUT/<scenario>/...")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of every scenario, e.g. --set rounds=10")
    p.add_argument("--wall-cap", type=positive_float, default=None, metavar="SECONDS",
                   help="real mode: stop a run after this many seconds (default "
                   "120 + 5 N + rounds x max(10, 2 x round_timeout))")
    p.add_argument("--base-dir", type=writable_dir, default=None,
                   help="real mode: peers' data dirs go to BASE/<scenario>/peer-XX "
                   "(default: a temporary dir, removed at the end)")
    p.add_argument("--verbose", action="store_true",
                   help="real mode: libp2p's own log messages in the worker logs")
    p.add_argument("--no-zygote", action="store_true",
                   help="real mode: start every peer process with its own imports "
                   "instead of forking them from one warm process")
    add_threads_flag(p, what=" (real mode: also of each peer process)")
    p.add_argument("--dashboard", action="store_true",
                   help="serve a live dashboard of each run (the URL is printed as "
                   "'dashboard: URL'; replay a finished run with 'rumor dashboard DIR')")
    p.add_argument("--dashboard-port", type=port_or_any, default=0, metavar="PORT",
                   help="with --dashboard: serve it on 127.0.0.1:PORT (default 0: any "
                   "free port)")
    add_config_flag(p)
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


@dataclass
class Outcome:
    """One run of one scenario in one mode (a row of the sim-vs-real table)."""

    scenario: Scenario
    mode: str
    rows: list[RoundMetrics]
    wall: float
    stopped: str = "done"
    event_rounds: list[int] | None = None  # real mode: the round each event fired at

    @property
    def final_acc(self) -> float:
        return self.rows[-1].acc_mean if self.rows else float("nan")

    @property
    def alive(self) -> int:
        return self.rows[-1].peers_alive if self.rows else 0


def _event_rounds(sc: Scenario) -> list[float]:
    period = sc.config.train_time + sc.config.latency
    return [float(event_round(ev, period)) for ev in sc.config.timeline]


def plot_run(sc: Scenario, rows: list[RoundMetrics], path: Path, *,
             by_round: bool = False) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    x = [float(m.round) for m in rows] if by_round else [m.time for m in rows]
    ax.plot(x, [m.acc_mean for m in rows], label="mean accuracy", color="C0")
    ax.fill_between(x, [m.acc_min for m in rows], [m.acc_max for m in rows], color="C0",
                    alpha=0.2, label="min-max over peers")
    marks = _event_rounds(sc) if by_round else [ev.at for ev in sc.config.timeline]
    for at in marks:
        ax.axvline(at, color="C3", alpha=0.25, lw=1)
    ax.set_xlabel("round" if by_round else "virtual time (s)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax2 = ax.twinx()
    ax2.plot(x, [m.peers_alive for m in rows], color="C2", ls="--", label="peers alive")
    ax2.set_ylabel("peers alive")
    ax2.set_ylim(0, max(m.peers_alive for m in rows) * 1.1)
    ax.set_title(sc.name + (" (real mesh)" if by_round else ""))
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_comparison(runs: list[tuple[Scenario, list[RoundMetrics]]], path: Path, *,
                    by_round: bool = False) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for k, (sc, rows) in enumerate(runs):
        x = [float(m.round) for m in rows] if by_round else [m.time for m in rows]
        ax.plot(x, [m.acc_mean for m in rows], label=sc.name, color=f"C{k}")
        marks = _event_rounds(sc) if by_round else [ev.at for ev in sc.config.timeline]
        for at in marks[:50]:
            ax.axvline(at, color=f"C{k}", alpha=0.15, lw=1)
    ax.set_xlabel("round" if by_round else "virtual time (s)")
    ax.set_ylabel("mean test accuracy of live peers")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sim_vs_real(sim: Outcome, real: Outcome, path: Path) -> None:
    """Accuracy per round, sim vs real, side by side (and peers alive below)."""
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7.5, 6), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    for k, o in enumerate((sim, real)):
        x = [m.round for m in o.rows]
        ax.plot(x, [m.acc_mean for m in o.rows], color=f"C{k}", label=f"{o.mode} mean")
        ax.fill_between(x, [m.acc_min for m in o.rows], [m.acc_max for m in o.rows],
                        color=f"C{k}", alpha=0.15)
        ax2.step(x, [m.peers_alive for m in o.rows], where="post", color=f"C{k}",
                 label=o.mode)
    for r in _event_rounds(sim.scenario):
        ax.axvline(r, color="C3", alpha=0.25, lw=1)
        ax2.axvline(r, color="C3", alpha=0.25, lw=1)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(f"{sim.scenario.name}: simulator vs real mesh")
    ax2.set_xlabel("round")
    ax2.set_ylabel("peers alive")
    ax2.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(outcomes: list[Outcome]) -> list[str]:
    lines = ["| scenario | mode | peers | final acc | rounds | peers alive | wall s | stopped |",
             "|" + "---|" * 8]
    for o in outcomes:
        lines.append(f"| {o.scenario.name} | {o.mode} | {o.scenario.config.peers} "
                     f"| {o.final_acc:.4f} | {len(o.rows)} | {o.alive} | {o.wall:.0f} "
                     f"| {o.stopped} |")
    return lines


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("acc {task.fields[acc]:.3f} alive {task.fields[alive]}"),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    console=console)


def run_sim(sc: Scenario, d: Path, progress: Progress, board: Board | None = None) -> Outcome:
    task = progress.add_task(f"{sc.name} (sim)", total=sc.config.protocol_rounds, acc=0.0,
                             alive=sc.config.peers)
    t0 = time.perf_counter()
    sim = Simulation(sc.config)
    feed = sim_board(board, sim, f"{sc.name} (simulated)") if board is not None else None

    def on_round(m: RoundMetrics, t: TaskID = task) -> None:
        progress.update(t, completed=m.round, acc=m.acc_mean, alive=m.peers_alive)
        if feed is not None:
            feed.on_round(m)

    interrupted = False
    try:
        rows = sim.run(on_round)
    except KeyboardInterrupt:  # write what was done; the command exits 130
        rows, interrupted = list(sim.metrics), True
    wall = time.perf_counter() - t0
    if feed is not None:
        done = sim.completion()
        feed.finish(bool(done["complete"]), str(done.get("reason", "")))
    s = write_run(d, sim, rows, title=sc.name, accuracy_plot=False, scenario=sc.name,
                  description=sc.description, mode="sim",
                  wall_time=wall, final_peers_alive=rows[-1].peers_alive if rows else 0,
                  interrupted=interrupted)
    (d / "scenario.toml").write_text(sc.source)
    if rows:
        plot_run(sc, rows, d / "accuracy.png")
    if interrupted:
        return Outcome(sc, "sim", rows, wall, "interrupted")
    if not s["complete"]:  # said here, and the command exits 1 at the end
        progress.console.print(f"warning: {sc.name} (sim): incomplete run: {s['reason']}",
                               style="yellow", soft_wrap=True, markup=False, highlight=False)
        return Outcome(sc, "sim", rows, wall, "incomplete")
    return Outcome(sc, "sim", rows, wall)


def run_real(sc: Scenario, d: Path, args: argparse.Namespace, progress: Progress,
             console: Console, board: Board | None = None) -> Outcome:
    d.mkdir(parents=True, exist_ok=True)
    base = args.base_dir / sc.name if args.base_dir is not None else None
    opts = RealOptions(out=d, wall_cap=args.wall_cap, base=base, verbose=args.verbose,
                       threads=args.threads, zygote=not args.no_zygote)

    def notice(level: str, text: str) -> None:
        style = {"error": "red", "warning": "yellow"}.get(level, "dim")
        console.print(f"{sc.name} (real): {text}", style=style, soft_wrap=True,
                      markup=False, highlight=False)

    exp = RealExperiment(sc, opts, on_notice=notice)
    n = sc.config.peers
    start = progress.add_task(f"{sc.name} (real) peers up", total=n, acc=0.0, alive=0)
    task: TaskID | None = None

    def on_tick() -> None:
        nonlocal task
        mesh = exp.mesh
        ready = sum(p.ready for p in mesh.peers)
        if task is None:
            progress.update(start, completed=ready, alive=ready)
            if not mesh.went:
                return
            progress.update(start, completed=n)
            task = progress.add_task(f"{sc.name} (real)", total=sc.config.protocol_rounds, acc=0.0,
                                     alive=ready)
        rows = mesh.metrics.rows
        alive = sum(p.alive for p in mesh.peers if p.index not in exp.byzantine)
        progress.update(task, completed=len(rows), acc=rows[-1].acc_mean if rows else 0.0,
                        alive=alive)

    async def go() -> Any:
        loop = asyncio.get_running_loop()
        for sig, name in ((signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated")):
            loop.add_signal_handler(sig, exp.mesh.request_stop, name)
        try:
            async with contextlib.AsyncExitStack() as stack:
                if board is not None:  # served by the command's dashboard thread
                    await stack.enter_async_context(serve_mesh(
                        exp.mesh, title=f"{sc.name} (real mesh)", mode="experiment-real",
                        board=board, serve=False))
                return await exp.run(on_tick=on_tick)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    result = asyncio.run(go())
    (d / "scenario.toml").write_text(sc.source)
    if result.rows:
        plot_run(sc, result.rows, d / "accuracy.png", by_round=True)
    fired = [int(e["at_round"]) for e in exp.fired]
    return Outcome(sc, "real", result.rows, result.wall_time, result.stopped or "done", fired)


@contextlib.contextmanager
def _dashboard(args: argparse.Namespace, console: Console) -> Iterator[Board | None]:
    """With --dashboard: one page for every run of the command, served from a thread
    (the simulator blocks the main one); prints its URL first."""
    if not args.dashboard:
        yield None
        return
    board = Board("rumor experiment", "experiment")
    server = DashboardThread(board, port=args.dashboard_port)
    console.print(f"dashboard: {server.start()}", soft_wrap=True, highlight=False,
                  markup=False)
    try:
        yield board
    finally:
        server.close()
        console.print(f"dashboard closed; replay a run with: rumor dashboard "
                      f"{args.out}/<scenario>", soft_wrap=True, highlight=False,
                      markup=False)


def run(args: argparse.Namespace) -> int:
    console = make_console()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if not args.verbose:
        logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    if not args.scenarios:
        raise ConfigError("give one or more scenario files (or scenarios = [...] in --config)")
    overrides = parse_overrides(args.set)
    scenarios = [load_scenario(p, overrides) for p in args.scenarios]  # fail fast
    names = [sc.name for sc in scenarios]
    if len(set(names)) != len(names):
        raise ConfigError(f"two scenarios share a name: {names}")
    out: Path = args.out
    modes = ["sim", "real"] if args.mode == "both" else [args.mode]
    outcomes: list[Outcome] = []
    code = 0
    with _progress(console) as progress, _dashboard(args, console) as board:
        for sc in scenarios:
            per_mode: dict[str, Outcome] = {}
            for mode in modes:
                d = out / sc.name / mode if len(modes) > 1 else out / sc.name
                if mode == "sim":
                    o = run_sim(sc, d, progress, board)
                else:
                    o = run_real(sc, d, args, progress, console, board)
                per_mode[mode] = o
                outcomes.append(o)
                console.print(f"{sc.name} ({mode}): final acc {o.final_acc:.4f} after "
                              f"{len(o.rows)} rounds ({o.alive} peers alive, "
                              f"{o.wall:.0f} s, {o.stopped}) -> {d}", soft_wrap=True)
                if o.stopped in ("interrupted", "terminated"):
                    code = 130 if o.stopped == "interrupted" else 143
                    break
                if o.stopped in ("error", "incomplete"):
                    code = 1
            if len(per_mode) == 2 and per_mode["sim"].rows and per_mode["real"].rows:
                plot_sim_vs_real(per_mode["sim"], per_mode["real"],
                                 out / sc.name / "sim-vs-real.png")
            if code in (130, 143):
                break
    lines = table(outcomes)
    if args.mode == "both":
        out.mkdir(parents=True, exist_ok=True)
        (out / "sim-vs-real.md").write_text("\n".join(lines) + "\n")
    if len(scenarios) > 1 and args.mode != "both" and outcomes:
        (out / "comparison.md").write_text("\n".join(lines) + "\n")
        plot_comparison([(o.scenario, o.rows) for o in outcomes if o.rows],
                        out / "comparison.png", by_round=args.mode == "real")
    if args.mode == "both" or len(scenarios) > 1:
        sys.stdout.write("\n".join(lines) + "\n")  # plain lines: no wrapping when piped
    return code
