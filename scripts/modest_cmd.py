"""``rumor modest``: MoDeST sampled rounds under churn (virtual clock), a preset of the
one engine: the ``[modest]`` table becomes a SimulationConfig with ``mode = "modest"``
(every peer a rumor.protocols.modest_peer.ModestPeer: signed-format messages through the
simulator's network, the peer's validator and merger), full membership (``complete``
topology), a shared initial model, FedAvg's sample-weighted mean at the aggregators and
topology.crash_every as the timeline.

Writes OUT/metrics.csv (one row per aggregated round), OUT/summary.json and
OUT/accuracy.png (model accuracy and peers alive over virtual time). ``--config``
reads a TOML file whose keys (top level or a ``[modest]`` table) are ModestConfig
fields; flags given on the command line win over it. The preset itself (ModestConfig,
run_modest) is rumor.node.modest_preset's; this file parses, writes and plots.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from rumor.node.config_fields import checked_fields
from rumor.node.modest_preset import ModestConfig, ModestRound, run_modest
from rumor.node.results import write_json
from rumor.protocols.errors import ConfigError
from rumor.scripts.config_file import read_toml
from rumor.scripts.options import (
    add_threads_flag,
    dataset_name,
    existing_file,
    model_name,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    seed_int,
    split_spec,
    unit_interval,
    writable_dir,
)
from rumor.scripts.reporting import pyplot
from rumor.scripts.tables import console as make_console

_FLAGS: dict[str, tuple[Any, str]] = {
    "peers": (positive_int, "number of peers"),
    "s": (positive_int, "sample size (trainers per round)"),
    "a": (positive_int, "aggregators per round"),
    "duration": (positive_float, "virtual seconds to run"),
    "max_rounds": (positive_int, "stop after this many rounds"),
    "crash_count": (nonneg_int, "peers that crash per wave (0: no churn)"),
    "crash_every": (positive_float, "seconds between crash waves"),
    "crash_until": (unit_interval, "stop crashing once this fraction is gone"),
    "dataset": (dataset_name, "digits | mnist | fashion-mnist"),
    "model": (model_name, "mlp | lenet5 | cnn"),
    "split": (split_spec, "iid | dirichlet:ALPHA | shards:K"),
    "lr": (positive_float, "learning rate"),
    "batch_size": (positive_int, "minibatch size"),
    "local_epochs": (positive_int, "local epochs per round"),
    "train_time": (positive_float, "virtual seconds a local training takes"),
    "latency": (nonneg_float, "link latency, seconds"),
    "agg_timeout": (positive_float, "aggregator waits this long after the first update"),
    "test_subset": (positive_int, "evaluate on a seeded subset of the test set"),
    "seed": (seed_int, "seed"),
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("modest", help="MoDeST: sampled training rounds under churn",
                       description=__doc__)
    p.add_argument("--config", type=existing_file, default=None,
                   help="TOML with ModestConfig keys (default: none)")
    p.add_argument("--out", type=writable_dir, default=Path("runs/modest"),
                   help="output directory")
    d = ModestConfig()
    for name, (conv, text) in _FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=conv, default=None,
                       help=f"{text} (default: --config's, else {getattr(d, name)})")
    add_threads_flag(p)
    p.set_defaults(func=run)


def load_config(path: Path | None, cli: dict[str, Any]) -> ModestConfig:
    values: dict[str, Any] = {}
    if path is not None:
        doc = read_toml(path)
        table = doc.get("modest", doc)
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [modest] must be a table")
        known = {f.name for f in fields(ModestConfig)}
        for k, v in table.items():
            key = k.replace("-", "_")
            if key in ("name", "description"):
                continue
            if key not in known:
                raise ConfigError(f"{path}: unknown key {k!r}; known: {', '.join(sorted(known))}")
            values[key] = v
    if path is not None:
        values = checked_fields(ModestConfig, values, str(path))
    values.update({k: v for k, v in cli.items() if v is not None})
    return ModestConfig(**values)


def write_csv(path: Path, rows: list[ModestRound]) -> None:
    cols = [f.name for f in fields(ModestRound)]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow([f"{v:.6f}" if isinstance(v, float) else v
                        for v in (getattr(r, c) for c in cols)])


def plot(rows: list[ModestRound], cfg: ModestConfig, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    t = [r.time for r in rows]
    ax.plot(t, [r.acc for r in rows], color="C0", label="model accuracy (after aggregation)")
    ax.set_xlabel("virtual time (s)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax2 = ax.twinx()
    ax2.step(t, [r.alive for r in rows], where="post", color="C2", ls="--", label="peers alive")
    ax2.set_ylabel("peers alive")
    ax2.set_ylim(0, cfg.peers * 1.05)
    ax.set_title(f"MoDeST s={cfg.s} a={cfg.a}: {cfg.peers} peers, {cfg.crash_count} crash "
                 f"every {cfg.crash_every:g} s until {cfg.crash_until:.0%} gone")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    console = make_console()
    cli = {name: getattr(args, name) for name in _FLAGS}
    cfg = load_config(args.config, cli)
    cfg.validate()
    for name in ("dataset", "model", "split", "seed"):  # values from --config, like flags
        try:
            _FLAGS[name][0](str(getattr(cfg, name)))
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"{args.config}: {name}: {exc}") from None
    sim, rows, wall = run_modest(cfg)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "metrics.csv", rows)
    if rows:
        plot(rows, cfg, out / "accuracy.png")
    last = rows[-1] if rows else None
    crashes = [ev.at for ev in sim.config.timeline]
    before = [r.acc for r in rows if not crashes or r.time <= crashes[0]]
    after = [r.acc for r in rows if crashes and r.time > crashes[-1]]
    summary = {
        "config": asdict(cfg),
        "rounds": len(rows),
        "final_acc": last.acc if last else None,
        "final_alive": last.alive if last else None,
        "acc_before_first_crash": before[-1] if before else None,
        "rounds_after_last_crash": len(after),
        "mean_acc_after_last_crash": sum(after) / len(after) if after else None,
        "messages": sum(p.sent_messages for p in sim.peers),
        "pings": sum(p.counters["ping"] for p in sim.peers),
        "bytes": sum(p.sent_bytes for p in sim.peers),
        "rejects": sim.reject_counts(),
        "wall_s": round(wall, 2),
    }
    write_json(out / "summary.json", summary)
    console.print(f"MoDeST: {len(rows)} rounds in {cfg.duration:g} virtual s "
                  f"({wall:.1f} s wall); final acc {summary['final_acc']:.4f} with "
                  f"{summary['final_alive']} peers alive -> {out}")
    return 0
