"""``rumor launch``: N real peers on this machine (libp2p on loopback), live table, results.

Argument parsing, the live table and the printed lines only: the bootstrap node, the
worker processes, the metrics and the run files are rumor.node.mesh.launcher's (see its
docstring for what --out holds). Peer i trains on shard i of N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import networkx as nx
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from rumor.node.assembly import NodeConfig
from rumor.node.dashboard.serve import serve_mesh
from rumor.node.mesh.launcher import (
    MAX_PER_PROCESS_AUTO,
    Mesh,
    MeshConfig,
    PeerPlan,
    default_per_process,
)
from rumor.node.results import RoundMetrics
from rumor.node.simulation import SimulationConfig, byzantine_peers
from rumor.protocols.errors import ConfigError
from rumor.scripts.node_options import add_node_flags, node_config
from rumor.scripts.options import (
    add_config_flag,
    add_threads_flag,
    attack_spec,
    compress_help,
    launch_placement,
    nonneg_int,
    port_base,
    port_or_any,
    positive_float,
    positive_int,
    renamed_flag,
    writable_dir,
)
from rumor.scripts.reporting import plot_accuracy, plot_layer_variance
from rumor.scripts.tables import console as make_console
from rumor.scripts.tables import eta

__all__ = ["add_parser", "default_per_process", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "launch",
        help="start N peers on this machine (real libp2p on loopback) and watch them train",
        description="Start a bootstrap node and N peers as local processes; show a live "
        "table; write metrics.csv, summary.json, events.jsonl, layer_variance.csv, "
        "accuracy.png, layer_variance.png and the final models (models/) to --out. "
        "`rumor status --out DIR` and `rumor stop --out DIR` reach it from another shell.",
    )
    p.add_argument("--peers", type=positive_int, default=8, help="number of peers")
    p.add_argument("--rounds", type=positive_int, default=None,
                   help="stop after R rounds (default: run until Ctrl-C)")
    p.add_argument("--per-process", type=positive_int, default=None, metavar="K",
                   help="peers per worker process (default: ceil(N / cores), at most "
                   f"{MAX_PER_PROCESS_AUTO})")
    p.add_argument("--out", type=writable_dir, default=Path("runs/launch"),
                   help="output directory (run files, final models)")
    p.add_argument("--base-dir", type=writable_dir, default=None,
                   help="peers' data dirs (identity, checkpoints) go to BASE/peer-XX; "
                   "an existing one is resumed (default: a temporary dir)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary base dir (identities, checkpoints) at exit")
    p.add_argument("--bootstrap-port", type=port_or_any, default=0,
                   help="TCP port of the bootstrap node (default: any free port)")
    p.add_argument("--api-port-base", type=port_base, default=0,
                   help="peer i serves its HTTP API on BASE+i (default: any free port)")
    p.add_argument("--discovery-interval", type=positive_float, default=None,
                   help="seconds between a peer's DHT lookups (default max(5, N/8): "
                   "the bootstrap serves only ~12 DHT streams at once)")
    p.add_argument("--ready-timeout", type=positive_float, default=None,
                   help="seconds to wait for peers to come up and find neighbours before "
                   "starting rounds anyway (default 60 + N)")
    p.add_argument("--quiet", action="store_true", help="no live table")
    p.add_argument("--dashboard-port", type=port_or_any, default=0, metavar="PORT",
                   help="serve the live dashboard on 127.0.0.1:PORT (default 0: any free "
                   "port; the URL is printed as 'dashboard: URL')")
    p.add_argument("--no-dashboard", action="store_true",
                   help="do not serve the dashboard (default: served)")
    p.add_argument("--verbose", action="store_true", help="libp2p's own log messages")
    p.add_argument("--no-zygote", action="store_true",
                   help="start every worker process with its own imports instead of "
                   "forking them from one warm process (default: forked, which shares "
                   "torch & co. among them: less memory a process)")
    p.add_argument("--byzantine", type=nonneg_int, default=0, metavar="K",
                   help="K Byzantine peers (the simulator's seeded choice of indices); "
                   "they run --attack and are not evaluated")
    p.add_argument("--attack", type=attack_spec, default=None, metavar="SPEC",
                   help="attack of the Byzantine peers, e.g. sign-flip or alie:z=1.5 "
                   "(default: none)")
    p.add_argument("--placement", type=launch_placement, default="random",
                   help="which peers are Byzantine: random (the simulator's seeded draw) "
                   "or list:I,J,... (hubs needs a topology: a launch has none)")
    add_node_flags(p)
    add_config_flag(p)
    renamed_flag(p, "--data-dir", "datasets are --dataset-dir DIR; the peers' identities "
                 "and checkpoints are --base-dir DIR")
    add_threads_flag(p, what=" of this process and of each worker process")
    p.set_defaults(func=run)


def attack_plans(n: int, byzantine: int, attack: str | None, seed: int,
                 placement: str = "random") -> tuple[tuple[PeerPlan, ...], frozenset[int]]:
    """Per-peer plans giving the Byzantine peers ``attack``; and those peers."""
    if byzantine and attack is None:
        raise ConfigError("--byzantine needs --attack SPEC")
    if attack is not None and not byzantine:
        raise ConfigError("--attack needs --byzantine K (K >= 1)")
    if not byzantine:
        return (), frozenset()
    if byzantine >= n:
        raise ConfigError("--byzantine must be smaller than --peers")
    if "attack" not in {f.name for f in fields(NodeConfig)}:
        raise ConfigError("this build's NodeConfig has no 'attack' field yet: real "
                          "attackers are not available")
    # the simulator's rule; a launched mesh is discovered, so there is no graph to place on
    cfg = SimulationConfig(peers=n, byzantine=byzantine, placement=placement, seed=seed)
    bad = byzantine_peers(cfg, nx.empty_graph(n))
    plans = tuple(PeerPlan(i, shard=i, node_overrides={"attack": attack}) for i in sorted(bad))
    return plans, frozenset(bad)


def mesh_config(args: argparse.Namespace) -> MeshConfig:
    n: int = args.peers
    node = replace(node_config(args, shard=0, rounds=args.rounds), shards=n)
    plans, excluded = attack_plans(n, args.byzantine, args.attack, node.seed, args.placement)
    return MeshConfig(
        node=node,
        peers=n,
        out=args.out,
        base=args.base_dir,
        keep=args.keep,
        per_process=args.per_process,
        rounds=node.protocol().protocol_rounds(),  # metrics rows: the plan adds some
        bootstrap_port=args.bootstrap_port,
        api_port_base=args.api_port_base,
        discovery_interval=args.discovery_interval,
        ready_timeout=args.ready_timeout,
        verbose=args.verbose,
        threads=args.threads,
        zygote=not args.no_zygote,
        plans=plans,
        excluded=excluded,
    )


def render(mesh: Mesh, t0: float) -> Group:
    peers = mesh.peers
    accs = [p.acc for p in peers if p.acc is not None and p.alive]
    mean = f"{sum(accs) / len(accs):.4f}" if accs else "-"
    done = len(mesh.metrics.rows)
    target = f"/{mesh.rounds}" if mesh.rounds else ""
    alive = sum(p.alive for p in peers)
    head = Text.assemble(
        ("rumor launch  ", "bold"),
        f"{alive}/{mesh.n} peers in {len(mesh.workers)} processes  ",
        f"rounds {done}{target}  mean acc {mean}  ",
        f"{time.monotonic() - t0:6.1f} s{eta_text(mesh)}\n",
        ("join from another shell: ", "dim"),
        f"rumor join --swarm {mesh.node_cfg.swarm} --bootstrap {mesh.bootstrap_addr}",
    )
    table = Table(box=None, pad_edge=False)
    for col in ("#", "peer", "round", "acc", "nbrs", "merged", "rejects", "timeouts",
                "api port"):
        table.add_column(col, justify="left" if col == "peer" else "right")
    for p in peers:
        style = "" if p.alive else "dim strike"
        table.add_row(
            str(p.index), p.peer[-10:] if p.peer else "starting", str(p.round),
            f"{p.acc:.4f}" if p.acc is not None else "-", str(p.neighbours),
            str(p.received), str(p.rejects), str(p.timeouts), p.api.rsplit(":", 1)[-1],
            style=style,
        )
    return Group(head, table)


def eta_text(mesh: Mesh) -> str:
    rows = mesh.metrics.rows
    return eta(rows[-1].time, len(rows), mesh.rounds) if rows else ""


def run(args: argparse.Namespace) -> int:
    if compress_help(args):
        return 0
    return asyncio.run(_run(args))


def _console() -> Console:
    return make_console()  # a log file: no wrapping of addresses and rows


def print_notice(console: Console, level: str, text: str) -> None:
    style = {"error": "[red]", "warning": "[yellow]"}.get(level, "")
    console.print(f"{style}{text}", soft_wrap=True, markup=bool(style), highlight=False)


async def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if not args.verbose:
        logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    if args.keep and args.base_dir is not None:
        raise ConfigError("--keep is for the temporary base dir; --base-dir is always kept")
    console = _console()
    live: Live | None = None

    def on_row(m: RoundMetrics) -> None:
        console.print(
            f"round {m.round:4d}  acc mean {m.acc_mean:.4f} (min {m.acc_min:.4f}, max "
            f"{m.acc_max:.4f})  consensus distance {m.consensus_distance:.4f}  "
            f"{m.time:6.1f} s{eta_text(mesh)}"
        )

    mesh = Mesh(mesh_config(args), on_notice=lambda lv, t: print_notice(console, lv, t),
                on_row=on_row)
    t0 = time.monotonic()

    def on_tick() -> None:
        nonlocal live
        if args.quiet or not mesh.workers:
            return
        if live is None:
            live = Live(render(mesh, t0), console=console, refresh_per_second=2,
                        transient=False, auto_refresh=False)
            live.start()
        live.update(render(mesh, t0), refresh=console.is_terminal)

    loop = asyncio.get_running_loop()
    for sig, name in ((signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated")):
        loop.add_signal_handler(sig, mesh.request_stop, name)
    async with contextlib.AsyncExitStack() as stack:
        if not args.no_dashboard:
            dash, _ = await stack.enter_async_context(serve_mesh(
                mesh, title=f"rumor launch: {mesh.n} peers", mode="launch",
                port=args.dashboard_port))
            url = dash.url if dash is not None else ""
            console.print(f"dashboard: {url}", soft_wrap=True, highlight=False, markup=False)
        try:
            result = await mesh.run(on_tick=on_tick)
        finally:
            if live is not None:
                live.update(render(mesh, t0), refresh=True)
                live.stop()
                if not console.is_terminal:
                    console.line()
    code = 0
    if result.stopped == "error" or (result.errors and not result.rows):
        for msg in result.errors[:5]:
            console.print(f"[red]{msg}", soft_wrap=True)
        code = 1
    elif result.stopped in ("interrupted", "terminated") and args.rounds is not None:
        code = 130 if result.stopped == "interrupted" else 143
    if result.rows:
        title = (f"rumor launch: {mesh.n} peers, {mesh.node_cfg.aggregator}, "
                 f"{mesh.node_cfg.model} on {mesh.node_cfg.dataset}")
        plot_accuracy(result.rows, args.out / "accuracy.png", title)
        if mesh.metrics.variances:
            plot_layer_variance(mesh.metrics.variances, args.out / "layer_variance.png", title)
        last = result.rows[-1]
        console.print(
            f"final acc mean {last.acc_mean:.4f} (min {last.acc_min:.4f}, max "
            f"{last.acc_max:.4f}) after round {last.round}, {result.wall_time:.1f} s wall "
            f"-> {args.out}"
        )
        if not args.no_dashboard:
            console.print(f"replay it on the dashboard: rumor dashboard {args.out}",
                          style="dim", soft_wrap=True, highlight=False, markup=False)
    models = sorted((args.out / "models").glob("peer-*.safetensors"))
    if models:
        console.print(f"final models: {args.out / 'models'} ({len(models)} peers; "
                      "`rumor export` takes one from a running peer)", soft_wrap=True,
                      markup=False, highlight=False)
    return code
