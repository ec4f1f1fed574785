"""``rumor bristle``: Bristle vs plain averaging on non-IID data with Byzantine peers.

Runs every (attack, method) pair on one dataset, one frozen feature extractor and one
Dirichlet split, and prints/writes a table of the honest peers' final test accuracy:
overall, on the classes a peer has local data of ("seen") and on those it never saw
("unseen"). Writes OUT/bristle.csv and OUT/bristle.md.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from rich.console import Console

from rumor.node.attacks import parse_attack
from rumor.node.bristle import METHODS, BristleConfig, compare
from rumor.protocols.errors import ConfigError
from rumor.scripts.options import (
    dataset_name,
    nonneg_int,
    positive_float,
    positive_int,
    seed_int,
    unit_fraction,
    writable_dir,
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bristle", help="Bristle vs averaging: accuracy on unseen classes",
                       description=__doc__)
    d = BristleConfig()
    p.add_argument("--attacks", default="none,label-flip,gaussian:sigma=1",
                   help="comma list of attacks ('none' for no Byzantine peers); "
                        "parameters with ';' e.g. sign-flip:scale=4")
    p.add_argument("--methods", default=",".join(METHODS), help="bristle,mean,local")
    p.add_argument("--peers", type=positive_int, default=d.peers)
    p.add_argument("--byzantine", type=nonneg_int, default=d.byzantine)
    p.add_argument("--rounds", type=positive_int, default=d.rounds)
    p.add_argument("--view", type=positive_int, default=d.view,
                   help="partial view: each peer hears this many (random regular graph)")
    p.add_argument("--alpha", type=positive_float, default=d.alpha, help="Dirichlet alpha")
    p.add_argument("--dataset", type=dataset_name, default=d.dataset)
    p.add_argument("--hidden", type=positive_int, default=d.hidden,
                   help="width of the frozen feature layer")
    p.add_argument("--public-fraction", type=unit_fraction, default=d.public_fraction)
    p.add_argument("--pretrain-classes", type=_class_list, default=None,
                   help="train the extractor on these classes only, e.g. 0-4 or 0,2,5")
    p.add_argument("--val-size", type=positive_int, default=d.val_size)
    p.add_argument("--lr", type=positive_float, default=d.lr)
    p.add_argument("--local-steps", type=positive_int, default=d.local_steps)
    p.add_argument("--seed", type=seed_int, default=d.seed)
    p.add_argument("--out", type=writable_dir, default=Path("runs/bristle"))
    p.set_defaults(func=run)


MAX_CLASSES = 10  # every bundled dataset (digits, mnist, fashion-mnist) has 10 classes


def _class_list(text: str) -> str:
    """``0-4`` or ``0,2,5``: class indices in [0, 10); kept as text for _classes."""
    try:
        classes = _classes(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected classes like 0-4 or 0,2,5, got {text!r}") from None
    if not classes or not all(0 <= c < MAX_CLASSES for c in classes):
        raise argparse.ArgumentTypeError(
            f"classes must be in [0, {MAX_CLASSES}), got {text!r}")
    return text


def _classes(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    out: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    return tuple(out)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    base = BristleConfig(
        peers=args.peers, byzantine=args.byzantine, rounds=args.rounds, view=args.view,
        alpha=args.alpha, dataset=args.dataset, hidden=args.hidden,
        public_fraction=args.public_fraction, pretrain_classes=_classes(args.pretrain_classes),
        val_size=args.val_size, lr=args.lr, local_steps=args.local_steps, seed=args.seed)
    attacks: list[str | None] = [None if a.strip() == "none" else a.strip().replace(";", ",")
                                 for a in args.attacks.split(",")]
    methods = [m.strip() for m in args.methods.split(",")]
    for m in methods:
        BristleConfig(method=m).validate()
    for a in attacks:  # fail fast, before the extractor is trained
        if a is not None and not a:
            raise ConfigError("--attacks has an empty entry")
        if a is not None:
            parse_attack(a)
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
    lines.append(f"\n{base.peers} peers, Dirichlet alpha={base.alpha}: an honest peer lacks "
                 f"{r0['unseen_classes_mean']:.1f} classes on average; frozen "
                 f"extractor test accuracy (its own head) {r0['extractor_acc']:.3f}.")
    (out / "bristle.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0
