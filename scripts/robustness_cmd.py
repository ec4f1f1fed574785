"""``rumor robustness``: regenerate the robustness tables of docs/robustness.md.

Three experiments, all in the simulator on the bundled digits data (deterministic from
``--seed``):

1. rules x attacks: final mean accuracy of the honest peers for every rule under every
   attack, on ``--peers`` peers of ``--topology`` with ``--byzantine`` attackers placed
   by the simulator's seed; f = the largest number of attackers in any honest peer's
   view (at least 1), which must stay below a third of the view.
2. MoNNA on its paper's shape: n = 26 peers on a complete graph, f = 5 attackers, ALIE
   and IPM (and sign flip x4) vs no attack; mean, NNA without momentum, and MoNNA
   (Polyak beta 0.99 and 0.9).
3. SybilWall: ``--sybil-peers`` honest peers on ``rgg:0.2:maxdeg=7``, ``--sybils``
   Sybils, Dirichlet(alpha) data, label flip 0<->1: attack success rate
   (``Simulation.attack_success``) and accuracy under mean and sybilwall, with and
   without the Sybils. The Sybils share one peer's data slice; a label flip 0<->1 is
   only an attack if that slice holds class 0 or 1, so the first seed >= ``--seed``
   whose Sybil slice holds at least ``--min-source`` samples of class 0 is used (and
   reported).

Writes OUT/robustness.md (all tables and settings), OUT/results.json, and
OUT/rules_x_attacks.png, OUT/monna.png, OUT/sybilwall.png. ``--quick`` shrinks
everything to a smoke test of a few seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from rumor.node.attacks import flip_target, parse_attack
from rumor.node.results import RoundMetrics
from rumor.node.simulation import Simulation, SimulationConfig
from rumor.protocols.errors import ConfigError
from rumor.scripts.options import (
    attack_spec,
    positive_float,
    positive_int,
    probability,
    seed_int,
    topology_spec,
    writable_dir,
)
from rumor.scripts.reporting import pyplot

RULES = ["mean", "median", "trimmed-mean", "krum", "geometric-median", "centered-clipping",
         "nna", "monna", "variance-corrected", "vc:trimmed-mean",
         "vc:trimmed-mean@tau2_from=median"]
ATTACKS = ["none", "sign-flip:scale=4", "gaussian:sigma=1", "alie", "ipm", "label-flip"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("robustness", help="regenerate the Byzantine/Sybil robustness tables")
    p.add_argument("--out", type=writable_dir, default=Path("runs/robustness"))
    p.add_argument("--only", nargs="+", choices=["rules", "monna", "sybilwall"],
                   default=["rules", "monna", "sybilwall"])
    p.add_argument("--quick", action="store_true", help="tiny runs (a smoke test)")
    p.add_argument("--seed", type=seed_int, default=1)
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads")
    g = p.add_argument_group("rules x attacks")
    g.add_argument("--rules", nargs="+", default=RULES,
                   help="rule names, optionally NAME@k=v,... for rule params")
    g.add_argument("--attacks", nargs="+", type=_attack_or_none, default=ATTACKS)
    g.add_argument("--peers", type=positive_int, default=30)
    g.add_argument("--topology", type=topology_spec, default="regular:8")
    g.add_argument("--byzantine", type=positive_int, default=3)
    g.add_argument("--rounds", type=positive_int, default=30)
    g.add_argument("--lr", type=positive_float, default=0.2)
    g = p.add_argument_group("MoNNA")
    g.add_argument("--monna-peers", type=positive_int, default=26)
    g.add_argument("--monna-f", type=positive_int, default=5)
    g.add_argument("--monna-rounds", type=positive_int, default=50)
    g.add_argument("--monna-betas", type=probability, nargs="+", default=[0.99, 0.9])
    g = p.add_argument_group("SybilWall")
    g.add_argument("--sybil-peers", type=positive_int, default=99)
    g.add_argument("--sybils", type=positive_int, default=15)
    g.add_argument("--sybil-topology", type=topology_spec, default="rgg:0.2:maxdeg=7")
    g.add_argument("--sybil-rounds", type=positive_int, default=30)
    g.add_argument("--alpha", type=positive_float, default=0.1)
    g.add_argument("--min-source", type=positive_int, default=10)
    p.set_defaults(func=run)


def _attack_or_none(text: str) -> str:
    return text if text == "none" else attack_spec(text)


# ----------------------------------------------------------------------------- helpers
def max_byzantine_per_view(sim: Simulation) -> int:
    """The largest number of Byzantine neighbours of any honest peer."""
    return max((sum(1 for q in sim.graph.neighbors(p) if q in sim.byzantine)
                for p in sim.honest), default=0)


def view_size(sim: Simulation) -> int:
    """The smallest view (neighbours + own) of an honest peer."""
    return int(min(sim.graph.degree(p) for p in sim.honest)) + 1


def parse_rule(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME[@k=v,...]`` -> (name, rule_params); numbers are converted."""
    name, _, rest = text.partition("@")
    params: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        k, sep, v = item.partition("=")
        if not sep:
            raise ConfigError(f"rule parameter {item!r} must be key=value")
        value: Any = v
        for conv in (int, float):
            try:
                value = conv(v)
                break
            except ValueError:
                continue
        params[k] = value
    return name, params


def _attack_kw(attack: str, byzantine: int) -> dict[str, Any]:
    if attack == "none":
        return {"attack": None, "byzantine": 0}
    return {"attack": attack, "byzantine": byzantine}


def confusion_rate(sim: Simulation, src: int, dst: int) -> float:
    """Fraction of class-``src`` test samples the live honest peers classify as ``dst``
    (``Simulation.attack_success`` without needing an attack)."""
    mask = sim.dataset.y_test == src
    rows = [p for p in sim.honest if p in sim.alive]
    pred = sim.trainer.predict(sim.params[rows], sim.dataset.x_test[mask])
    return float((pred == dst).float().mean())


def _run(cfg: SimulationConfig, console: Console, label: str,
         flip: tuple[int, int] | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    sim = Simulation(cfg)
    rows: list[RoundMetrics] = sim.run()
    wall = time.perf_counter() - t0
    last = rows[-1]
    asr = sim.attack_success()
    if asr is None and flip is not None:
        asr = confusion_rate(sim, *flip)
    console.print(f"{label}: acc {last.acc_mean:.3f} (min {last.acc_min:.3f})"
                  + (f" asr {asr:.3f}" if asr is not None else "") + f"  {wall:.1f}s")
    return {"label": label, "acc": last.acc_mean, "acc_min": last.acc_min,
            "attack_success": asr, "wall": wall, "curve": [m.acc_mean for m in rows],
            "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "timeline"}}


def _heatmap(values: list[list[float]], rows: Sequence[str], cols: Sequence[str],
             title: str, path: Path) -> None:
    plt = pyplot()
    arr = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(1.3 * len(cols) + 2.5, 0.45 * len(rows) + 1.5))
    im = ax.imshow(arr, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(cols)), [c.split(":")[0] for c in cols], rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), list(rows))
    for i in range(arr.shape[0]):
        for j in range(arr.shape[1]):
            ax.text(j, i, f"{arr[i, j]:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="final mean accuracy")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves(runs: list[dict[str, Any]], title: str, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for r in runs:
        ax.plot(range(1, len(r["curve"]) + 1), r["curve"], label=r["label"])
    ax.set_xlabel("round")
    ax.set_ylabel("mean test accuracy (honest peers)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- sections
def rules_x_attacks(args: argparse.Namespace, console: Console, out: Path
                    ) -> tuple[str, dict[str, Any]]:
    base = SimulationConfig(peers=args.peers, rounds=args.rounds, topology=args.topology,
                            lr=args.lr, seed=args.seed)
    probe = Simulation(dataclasses.replace(base, aggregator="mean", attack="sign-flip",
                                           byzantine=args.byzantine))
    f = max(1, max_byzantine_per_view(probe))
    n_view = view_size(probe)
    if 3 * f >= n_view:
        raise ConfigError(f"{args.byzantine} attackers put {f} in a view of {n_view}: "
                          "f must stay below n/3; use fewer --byzantine or another --seed")
    cfgs = []
    for rule in args.rules:
        name, params = parse_rule(rule)
        for attack in args.attacks:
            cfg = dataclasses.replace(base, aggregator=name, f=f, rule_params=params,
                                      **_attack_kw(attack, args.byzantine))
            cfg.validate()  # fail fast on a bad name
            cfgs.append((rule, attack, cfg))
    grid: dict[str, dict[str, float]] = {}
    runs = []
    for rule, attack, cfg in cfgs:
        r = _run(cfg, console, f"{rule} / {attack}")
        grid.setdefault(rule, {})[attack] = r["acc"]
        runs.append(r)
    head = "| rule | " + " | ".join(a.split(":")[0] for a in args.attacks) + " |"
    lines = [
        f"Digits, {args.peers} peers on {args.topology} (views of {n_view}), "
        f"{args.byzantine} attackers (seeded placement, seed {args.seed}): at most {f} in "
        f"any honest view, so f = {f}; {args.rounds} rounds, lr {args.lr}. Attacks: "
        + ", ".join(f"`{a}`" for a in args.attacks) + ". Final mean accuracy of the "
        "honest peers.",
        "",
        head,
        "|" + "---|" * (len(args.attacks) + 1),
    ]
    for rule in args.rules:
        lines.append(f"| {rule} | " + " | ".join(f"{grid[rule][a]:.3f}" for a in args.attacks)
                     + " |")
    _heatmap([[grid[r][a] for a in args.attacks] for r in args.rules], args.rules,
             args.attacks, f"{args.peers} peers, {args.topology}, f={f}",
             out / "rules_x_attacks.png")
    return "\n".join(lines) + "\n", {"f": f, "view": n_view, "grid": grid, "runs": runs}


def monna(args: argparse.Namespace, console: Console, out: Path) -> tuple[str, dict[str, Any]]:
    n, f = args.monna_peers, args.monna_f
    if 2 * f >= n:
        raise ConfigError("MoNNA needs n > 2f")
    base = SimulationConfig(peers=n, rounds=args.monna_rounds, topology="complete",
                            lr=args.lr, seed=args.seed, f=f)
    variants: list[tuple[str, str, float | None]] = [("mean", "mean", None),
                                                     ("nna (no momentum)", "nna", None)]
    variants += [(f"monna beta={b:g}", "monna", b) for b in args.monna_betas]
    attacks = ["none", "alie", "ipm", "sign-flip:scale=4"]
    grid: dict[str, dict[str, float]] = {}
    runs = []
    for label, agg, beta in variants:
        for attack in attacks:
            cfg = dataclasses.replace(base, aggregator=agg, polyak_beta=beta,
                                      **_attack_kw(attack, f))
            r = _run(cfg, console, f"{label} / {attack}")
            grid.setdefault(label, {})[attack] = r["acc"]
            runs.append(r)
    lines = [
        f"Digits, n = {n} peers on a complete graph, {f} of them Byzantine (f = {f}) "
        f"under attack; {args.monna_rounds} rounds, lr {args.lr}; attack n = {n} for "
        "ALIE's z. Final mean accuracy of the honest peers.",
        "",
        "| rule | " + " | ".join(a.split(":")[0] for a in attacks) + " |",
        "|" + "---|" * (len(attacks) + 1),
    ]
    for label, _, _ in variants:
        lines.append(f"| {label} | " + " | ".join(f"{grid[label][a]:.3f}" for a in attacks)
                     + " |")
    _curves([r for r in runs if r["label"].split(" / ")[1] != "none"],
            f"n={n}, f={f}, complete graph", out / "monna.png")
    return "\n".join(lines) + "\n", {"grid": grid, "runs": runs}


def _sybil_seed(cfg: SimulationConfig, min_source: int) -> tuple[int, int]:
    """First seed >= cfg.seed whose Sybils' shared data slice holds >= min_source
    samples of the flipped source class; (seed, count)."""
    spec = parse_attack(cfg.attack or "label-flip")
    for seed in range(cfg.seed, cfg.seed + 50):
        sim = Simulation(dataclasses.replace(cfg, seed=seed, rounds=1))
        src, _ = flip_target(spec, sim.dataset.num_classes)
        share = sim.indices[sim.sybil_ids[0]]
        count = int((sim.dataset.y_train[torch.as_tensor(share, dtype=torch.int64)]
                     == src).sum())
        if count >= min_source:
            return seed, count
    raise ConfigError(f"no seed in [{cfg.seed}, {cfg.seed + 50}) gives the Sybils "
                      f"{min_source} samples of the source class; lower --min-source")


def sybilwall(args: argparse.Namespace, console: Console, out: Path
              ) -> tuple[str, dict[str, Any]]:
    attack = "label-flip:pairs=0-1"
    base = SimulationConfig(peers=args.sybil_peers, rounds=args.sybil_rounds,
                            topology=args.sybil_topology, split=f"dirichlet:{args.alpha:g}",
                            lr=args.lr, seed=args.seed, attack=attack, sybils=args.sybils)
    seed, count = _sybil_seed(base, args.min_source)
    base = dataclasses.replace(base, seed=seed)
    probe = Simulation(dataclasses.replace(base, rounds=1))
    honest_deg = max(probe.graph.subgraph(range(args.sybil_peers)).degree(),
                     key=lambda t: t[1])[1]
    src, dst = flip_target(parse_attack(attack), probe.dataset.num_classes)
    rows = []
    runs = []
    for agg in ("mean", "sybilwall"):
        for sybils in (args.sybils, 0):
            cfg = dataclasses.replace(base, aggregator=agg, sybils=sybils,
                                      attack=attack if sybils else None)
            r = _run(cfg, console, f"{agg} / {'sybils' if sybils else 'no attack'}",
                     flip=(src, dst))
            runs.append(r)
            rows.append((agg, sybils, r["acc"], r["attack_success"], r["wall"]))
    lines = [
        f"Digits, {args.sybil_peers} honest peers on `{args.sybil_topology}` (honest-graph "
        f"degree <= {honest_deg}), Dirichlet alpha {args.alpha:g}, {args.sybils} Sybils each "
        f"attached to {base.sybil_degree} random honest peers, label flip {src}<->{dst}; "
        f"{args.sybil_rounds} rounds, lr {args.lr}, seed {seed} (the first >= {args.seed} "
        f"whose Sybil data slice holds class {src}: {count} samples). Attack success = "
        f"fraction of class-{src} test images that the honest peers classify as {dst} "
        "(without Sybils: the same confusion rate, for reference).",
        "",
        "| rule | Sybils | final acc | attack success | wall s |",
        "|---|---|---|---|---|",
    ]
    for agg, sybils, acc, asr, wall in rows:
        lines.append(f"| {agg} | {sybils} | {acc:.3f} | "
                     f"{'-' if asr is None else f'{asr:.3f}'} | {wall:.0f} |")
    _curves(runs, "SybilWall vs mean (accuracy)", out / "sybilwall.png")
    return "\n".join(lines) + "\n", {"seed": seed, "source_samples": count,
                                     "honest_max_degree": honest_deg, "runs": runs}


def _quick(args: argparse.Namespace) -> None:
    args.rules = ["mean", "trimmed-mean", "monna"]
    args.attacks = ["none", "sign-flip:scale=4"]
    args.peers, args.topology, args.byzantine, args.rounds = 10, "regular:6", 1, 2
    args.monna_peers, args.monna_f, args.monna_rounds, args.monna_betas = 8, 1, 2, [0.99]
    args.sybil_peers, args.sybils, args.sybil_rounds = 16, 3, 2
    args.sybil_topology, args.min_source = "regular:4", 1


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    if args.quick:
        _quick(args)
    torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    sections = {"rules": ("Rules x attacks", rules_x_attacks),
                "monna": (f"MoNNA (n = {args.monna_peers}, f = {args.monna_f}, complete "
                          "graph)", monna),
                "sybilwall": ("SybilWall (label flip by Sybils)", sybilwall)}
    md = ["# Robustness tables (generated by `rumor robustness`)", ""]
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    for key in ("rules", "monna", "sybilwall"):
        if key not in args.only:
            continue
        title, fn = sections[key]
        text, data = fn(args, console, out)
        md += [f"## {title}", "", text]
        results[key] = data
        console.print(text)
    md.append(f"Total wall time {time.perf_counter() - t0:.0f} s.")
    (out / "robustness.md").write_text("\n".join(md) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    console.print(f"wrote {out / 'robustness.md'}, results.json and PNGs in {out}")
    return 0
