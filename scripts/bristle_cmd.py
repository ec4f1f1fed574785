"""``rumor bristle``: Bristle vs plain averaging on non-IID data with Byzantine peers.

A preset of the one engine: the scenario (experiments/bristle.toml by default, or
``--config FILE``; ``bristle-head`` model, ``bristle`` aggregator) is run through the
simulator once per (attack, method) pair, and the honest peers' final test accuracy is
tabulated: overall, on the classes a peer has local data of ("seen") and on those it
never held ("unseen"). Writes OUT/bristle.csv and OUT/bristle.md.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

from rumor.node.attacks import parse_attack
from rumor.node.bristle import METHODS, PRESET, compare, method_config
from rumor.node.scenario import load_scenario
from rumor.protocols.errors import ConfigError
from rumor.scripts.options import (
    add_threads_flag,
    existing_file,
    nonneg_int,
    positive_int,
    seed_int,
    writable_dir,
)
from rumor.scripts.tables import console as make_console

DEFAULT_SCENARIO = Path(__file__).resolve().parents[1] / "experiments" / "bristle.toml"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bristle", help="Bristle vs averaging: accuracy on unseen classes",
                       description=__doc__)
    p.add_argument("--config", type=existing_file, default=None,
                   help="scenario file (default: experiments/bristle.toml, else the "
                        "built-in preset)")
    p.add_argument("--attacks", default="none,label-flip,gaussian:sigma=1",
                   help="comma list of attacks ('none' for no Byzantine peers); "
                        "parameters with ';' e.g. sign-flip:scale=4")
    p.add_argument("--methods", default=",".join(METHODS), help="bristle,mean,local")
    p.add_argument("--peers", type=positive_int, default=None,
                   help="number of peers (default: the scenario's)")
    p.add_argument("--byzantine", type=nonneg_int, default=None,
                   help="number of Byzantine peers (default: the scenario's)")
    p.add_argument("--rounds", type=positive_int, default=None,
                   help="rounds per run (default: the scenario's)")
    p.add_argument("--seed", type=seed_int, default=None, help="seed (default: the scenario's)")
    p.add_argument("--out", type=writable_dir, default=Path("runs/bristle"),
                   help="output directory")
    add_threads_flag(p)
    p.set_defaults(func=run)


def base_config(args: argparse.Namespace) -> Any:
    path: Path | None = args.config
    if path is None and DEFAULT_SCENARIO.is_file():
        path = DEFAULT_SCENARIO
    base = load_scenario(path).config if path is not None else PRESET
    over = {k: getattr(args, k) for k in ("peers", "byzantine", "rounds", "seed")
            if getattr(args, k) is not None}
    return replace(base, **over)


def run(args: argparse.Namespace) -> int:
    console = make_console()
    base = base_config(args)
    attacks: list[str | None] = [None if a.strip() == "none" else a.strip().replace(";", ",")
                                 for a in args.attacks.split(",")]
    methods = [m.strip() for m in args.methods.split(",")]
    for a in attacks:  # fail fast, before anything is trained
        if a is not None and not a:
            raise ConfigError("--attacks has an empty entry")
        if a is not None:
            parse_attack(a)
        for m in methods:
            method_config(base, m, a)
    rows = compare(base, attacks, methods, on_row=lambda r: console.print(
        f"{r['attack']:>20} {r['method']:>8}: unseen {r['acc_unseen']:.3f} "
        f"seen {r['acc_seen']:.3f} all {r['acc']:.3f} ({r['wall_s']:.0f} s)"))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0])
    with (out / "bristle.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    lines = ["| attack | byzantine | method | acc on unseen classes | acc on seen classes "
             "| acc (all) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['attack']} | {r['byzantine']} | {r['method']} | {r['acc_unseen']:.3f} "
              f"| {r['acc_seen']:.3f} | {r['acc']:.3f} |" for r in rows]
    r0 = rows[0]
    lines.append(f"\n{base.peers} peers, split {base.split}, topology {base.topology}: an "
                 f"honest peer lacks {r0['unseen_classes_mean']:.1f} classes on average; "
                 f"frozen extractor test accuracy (its own head) {r0['extractor_acc']:.3f}.")
    (out / "bristle.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0
