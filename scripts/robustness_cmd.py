"""``rumor robustness``: regenerate the robustness tables of docs/robustness.md.

Arguments, tables, plots and printed lines only: the experiments are
rumor.node.robustness's (``rules_x_attacks``, ``monna``, ``sybilwall``).

Three experiments, all in the simulator on the bundled digits data (deterministic from
``--seed``):

1. rules x attacks: final mean accuracy of the honest peers for every rule under every
   attack, on ``--peers`` peers of ``--topology`` with ``--byzantine`` attackers placed
   by ``--placement`` (random: the simulator's seed; hubs; list:I,J,...); f = the
   largest number of attackers in any honest peer's view (at least 1), which must stay
   below a third of the view.
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
OUT/rules_x_attacks.png, OUT/monna.png, OUT/sybilwall.png. Every table row says how
many honest views hold >= 1/3 Byzantine neighbours (and the largest Byzantine fraction
of a view); a run that stops before its last round is warned about on stderr.
``--quick`` shrinks everything to a smoke test of a few seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from rumor.node.robustness import (
    ATTACKS,
    RULES,
    MonnaSettings,
    RulesSettings,
    RunResult,
    SybilSettings,
    monna,
    rules_x_attacks,
    sybilwall,
)
from rumor.scripts.options import (
    add_threads_flag,
    attack_spec,
    placement_spec,
    positive_float,
    positive_int,
    probability,
    seed_int,
    topology_spec,
    writable_dir,
)
from rumor.scripts.reporting import pyplot
from rumor.scripts.tables import console as make_console


def add_parser(sub: Any) -> None:
    p = sub.add_parser("robustness", help="regenerate the Byzantine/Sybil robustness tables")
    p.add_argument("--out", type=writable_dir, default=Path("runs/robustness"),
                   help="output directory")
    p.add_argument("--only", nargs="+", choices=["rules", "monna", "sybilwall"],
                   default=["rules", "monna", "sybilwall"], help="experiments to run")
    p.add_argument("--quick", action="store_true", help="tiny runs (a smoke test)")
    p.add_argument("--seed", type=seed_int, default=1, help="seed of every run")
    g = p.add_argument_group("rules x attacks")
    g.add_argument("--rules", nargs="+", default=list(RULES),
                   help="rule names, optionally NAME@k=v,... for rule params")
    g.add_argument("--attacks", nargs="+", type=_attack_or_none, default=list(ATTACKS),
                   help="attack specs ('none': no attack)")
    g.add_argument("--peers", type=positive_int, default=30, help="number of peers")
    g.add_argument("--topology", type=topology_spec, default="regular:8",
                   help="ring | complete | regular:K | er:P | ba:M | rgg:R | ws:K:P")
    g.add_argument("--byzantine", type=positive_int, default=3,
                   help="number of Byzantine peers")
    g.add_argument("--placement", type=placement_spec, default="random",
                   help="where the attackers sit: random (seeded) | hubs | list:I,J,...")
    g.add_argument("--rounds", type=positive_int, default=30, help="rounds per run")
    g.add_argument("--lr", type=positive_float, default=0.2, help="SGD learning rate")
    g = p.add_argument_group("MoNNA")
    g.add_argument("--monna-peers", type=positive_int, default=26, help="number of peers")
    g.add_argument("--monna-f", type=positive_int, default=5, help="number of attackers")
    g.add_argument("--monna-rounds", type=positive_int, default=50, help="rounds per run")
    g.add_argument("--monna-betas", type=probability, nargs="+", default=[0.99, 0.9],
                   help="Polyak momentum betas to run MoNNA with")
    g = p.add_argument_group("SybilWall")
    g.add_argument("--sybil-peers", type=positive_int, default=99,
                   help="number of honest peers")
    g.add_argument("--sybils", type=positive_int, default=15, help="number of Sybils")
    g.add_argument("--sybil-topology", type=topology_spec, default="rgg:0.2:maxdeg=7",
                   help="topology of the honest peers")
    g.add_argument("--sybil-rounds", type=positive_int, default=30, help="rounds per run")
    g.add_argument("--alpha", type=positive_float, default=0.1,
                   help="Dirichlet(alpha) data split of the honest peers")
    g.add_argument("--min-source", type=positive_int, default=10,
                   help="class-0 samples the Sybils' data slice must hold (seeds are tried "
                   "from --seed up)")
    add_threads_flag(p)
    p.set_defaults(func=run)


def _attack_or_none(text: str) -> str:
    return text if text == "none" else attack_spec(text)


# ----------------------------------------------------------------------------- helpers
def views_cell(views: dict[str, Any]) -> str:
    """``"4/97 (0.50)"``: honest views with >= 1/3 Byzantine neighbours, of all honest
    views, and the largest Byzantine fraction of any honest view."""
    if not views:
        return "-"
    return (f"{views['views_ge_third_byzantine']}/{views['honest_views']} "
            f"({views['max_byzantine_fraction']:.2f})")


VIEWS_HEAD = "views >= 1/3 Byz. (max frac.)"


def _reporter(console: Console) -> Callable[[RunResult], None]:
    def report(r: RunResult) -> None:
        console.print(f"{r.label}: acc {r.acc:.3f} (min {r.acc_min:.3f})"
                      + (f" asr {r.attack_success:.3f}" if r.attack_success is not None
                         else "") + f"  {r.wall:.1f}s")
        if not r.complete:
            console.print(f"warning: {r.label}: incomplete run: {r.reason}",
                          style="yellow", markup=False, highlight=False)

    return report


def _incomplete_note(runs: Sequence[RunResult]) -> list[str]:
    bad = [r for r in runs if not r.complete]
    if not bad:
        return []
    return ["", f"Incomplete runs ({len(bad)}): "
            + "; ".join(f"{r.label}: {r.reason}" for r in bad) + "."]


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


def _curves(runs: Sequence[RunResult], title: str, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for r in runs:
        ax.plot(range(1, len(r.curve) + 1), r.curve, label=r.label)
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
def rules_section(args: argparse.Namespace, console: Console, out: Path
                  ) -> tuple[str, dict[str, Any]]:
    s = RulesSettings(rules=tuple(args.rules), attacks=tuple(args.attacks),
                      peers=args.peers, topology=args.topology, byzantine=args.byzantine,
                      placement=args.placement, rounds=args.rounds, lr=args.lr,
                      seed=args.seed)
    res = rules_x_attacks(s, on_run=_reporter(console))
    f, n_view = res.f, res.view
    where = ("seeded placement, seed " + str(s.seed) if s.placement == "random"
             else f"placement `{s.placement}`")
    lines = [
        f"Digits, {s.peers} peers on {s.topology} (views of {n_view}), "
        f"{s.byzantine} attackers ({where}): at most {f} in "
        f"any honest view, so f = {f}; {s.rounds} rounds, lr {s.lr}. Attacks: "
        + ", ".join(f"`{a}`" for a in s.attacks) + ". Final mean accuracy of the "
        "honest peers; last column: honest views holding >= 1/3 Byzantine neighbours, "
        "of all honest views (the largest Byzantine fraction of a view).",
        "",
        "| rule | " + " | ".join(a.split(":")[0] for a in s.attacks) + f" | {VIEWS_HEAD} |",
        "|" + "---|" * (len(s.attacks) + 2),
    ]
    for rule in s.rules:
        lines.append(f"| {rule} | "
                     + " | ".join(f"{res.grid[rule][a]:.3f}" for a in s.attacks)
                     + f" | {views_cell(res.row_views(rule))} |")
    lines += _incomplete_note(res.runs)
    _heatmap([[res.grid[r][a] for a in s.attacks] for r in s.rules], s.rules,
             s.attacks, f"{s.peers} peers, {s.topology}, f={f}", out / "rules_x_attacks.png")
    return "\n".join(lines) + "\n", res.to_json()


def monna_section(args: argparse.Namespace, console: Console, out: Path
                  ) -> tuple[str, dict[str, Any]]:
    s = MonnaSettings(peers=args.monna_peers, f=args.monna_f, rounds=args.monna_rounds,
                      betas=tuple(args.monna_betas), lr=args.lr, seed=args.seed)
    res = monna(s, on_run=_reporter(console))
    n, f = s.peers, s.f
    lines = [
        f"Digits, n = {n} peers on a complete graph, {f} of them Byzantine (f = {f}) "
        f"under attack; {s.rounds} rounds, lr {s.lr}; attack n = {n} for "
        "ALIE's z. Final mean accuracy of the honest peers; last column: honest views "
        "holding >= 1/3 Byzantine neighbours (the largest Byzantine fraction of a view).",
        "",
        "| rule | " + " | ".join(a.split(":")[0] for a in s.attacks) + f" | {VIEWS_HEAD} |",
        "|" + "---|" * (len(s.attacks) + 2),
    ]
    for label in res.variants:
        views = [r.byzantine_views for r in res.cells[label].values() if r.byzantine_views]
        worst = max(views, key=lambda v: (v["views_ge_third_byzantine"],
                                          v["max_byzantine_fraction"]), default={})
        lines.append(f"| {label} | "
                     + " | ".join(f"{res.grid[label][a]:.3f}" for a in s.attacks)
                     + f" | {views_cell(worst)} |")
    lines += _incomplete_note(res.runs)
    _curves([r for r in res.runs if r.label.split(" / ")[1] != "none"],
            f"n={n}, f={f}, complete graph", out / "monna.png")
    return "\n".join(lines) + "\n", res.to_json()


def sybilwall_section(args: argparse.Namespace, console: Console, out: Path
                      ) -> tuple[str, dict[str, Any]]:
    s = SybilSettings(peers=args.sybil_peers, sybils=args.sybils,
                      topology=args.sybil_topology, rounds=args.sybil_rounds,
                      alpha=args.alpha, min_source=args.min_source, lr=args.lr,
                      seed=args.seed)
    res = sybilwall(s, on_run=_reporter(console))
    src, dst = res.flip
    lines = [
        f"Digits, {s.peers} honest peers on `{s.topology}` (honest-graph "
        f"degree <= {res.honest_max_degree}), Dirichlet alpha {s.alpha:g}, {s.sybils} "
        f"Sybils each attached to {res.sybil_degree} random honest peers, label flip "
        f"{src}<->{dst}; {s.rounds} rounds, lr {s.lr}, seed {res.seed} (the first >= "
        f"{s.seed} whose Sybil data slice holds class {src}: {res.source_samples} samples). "
        f"Attack success = fraction of class-{src} test images that the honest peers "
        f"classify as {dst} (without Sybils: the same confusion rate, for reference). "
        "Views: honest views holding >= 1/3 Sybil neighbours (the largest Sybil fraction "
        "of a view).",
        "",
        f"| rule | Sybils | final acc | attack success | wall s | {VIEWS_HEAD} |",
        "|---|---|---|---|---|---|",
    ]
    for row in res.rows:
        r = row.run
        asr = r.attack_success
        lines.append(f"| {row.rule} | {row.sybils} | {r.acc:.3f} | "
                     f"{'-' if asr is None else f'{asr:.3f}'} | {r.wall:.0f} "
                     f"| {views_cell(r.byzantine_views)} |")
    lines += _incomplete_note(res.runs)
    _curves(res.runs, "SybilWall vs mean (accuracy)", out / "sybilwall.png")
    return "\n".join(lines) + "\n", res.to_json()


def _quick(args: argparse.Namespace) -> None:
    args.rules = ["mean", "trimmed-mean", "monna"]
    args.attacks = ["none", "sign-flip:scale=4"]
    args.peers, args.topology, args.byzantine, args.rounds = 10, "regular:6", 1, 2
    args.monna_peers, args.monna_f, args.monna_rounds, args.monna_betas = 8, 1, 2, [0.99]
    args.sybil_peers, args.sybils, args.sybil_rounds = 16, 3, 2
    args.sybil_topology, args.min_source = "regular:4", 1


def run(args: argparse.Namespace) -> int:
    console = make_console()
    if args.quick:
        _quick(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    sections = {"rules": ("Rules x attacks", rules_section),
                "monna": (f"MoNNA (n = {args.monna_peers}, f = {args.monna_f}, complete "
                          "graph)", monna_section),
                "sybilwall": ("SybilWall (label flip by Sybils)", sybilwall_section)}
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
        sys.stdout.write(text)  # plain text: a pipe gets whole markdown rows
        sys.stdout.flush()
    md.append(f"Total wall time {time.perf_counter() - t0:.0f} s.")
    (out / "robustness.md").write_text("\n".join(md) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    console.print(f"wrote {out / 'robustness.md'}, results.json and PNGs in {out}")
    return 0
