"""``rumor status [URL | --out DIR]``: one table row per peer of a running mesh.

From a launch's --out directory (its peers.json / events.jsonl name every peer's API)
or from any peer's API URL, following the other peers' API URLs that GET /peers lists.
Columns: index, PeerID (tail), round, phase, accuracy, neighbours, rejects (total, and
by reason), timeouts, API URL; a peer that does not answer gets its error instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rumor.scripts.options import positive_float
from rumor.scripts.tables import text_table

DEFAULT_LAUNCH_OUT = Path("runs/launch")


def add_mesh_source(p: Any) -> None:
    """URL or --out DIR: where the mesh is looked at (shared by status and peers)."""
    p.add_argument("url", nargs="?", default=None, metavar="URL",
                   help="a peer's API URL, e.g. http://127.0.0.1:8401 (default: use --out)")
    p.add_argument("--out", type=Path, default=DEFAULT_LAUNCH_OUT, metavar="DIR",
                   help="the --out directory of a running `rumor launch`")
    p.add_argument("--timeout", type=positive_float, default=3.0,
                   help="seconds to wait for each peer's answer")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.add_argument("--markdown", action="store_true", help="a markdown table")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("status", help="a table of every peer of a running mesh",
                       description=__doc__)
    add_mesh_source(p)
    p.set_defaults(func=run)


def collect(args: argparse.Namespace) -> list[Any]:
    from rumor.node.mesh.inspect import launch_status, walk

    if args.url is not None:
        return walk([args.url], timeout=args.timeout)
    return launch_status(args.out, timeout=args.timeout)


def _rejects(r: dict[str, int]) -> str:
    total = sum(r.values())
    if not total:
        return "0"
    top = ", ".join(f"{k} {v}" for k, v in sorted(r.items(), key=lambda kv: -kv[1]) if v)
    return f"{total} ({top})"


def run(args: argparse.Namespace) -> int:
    rows = collect(args)
    if args.json:
        for r in rows:
            print(json.dumps(r.as_dict()))
        return 0 if any(r.error is None for r in rows) else 1
    table = [[r.index, r.peer[-12:] if r.peer else "-", r.round, r.phase or "-",
              f"{r.accuracy:.4f}" if r.accuracy is not None else None, r.neighbours,
              _rejects(r.rejects) if r.error is None else None, r.timeouts,
              r.api or "-", r.error or ("finished" if r.finished else "ok")]
             for r in rows]
    sys.stdout.write(text_table(["#", "peer", "round", "phase", "acc", "nbrs", "rejects",
                                 "timeouts", "api", "state"], table,
                                markdown=args.markdown))
    up = [r for r in rows if r.error is None]
    accs = [r.accuracy for r in up if r.accuracy is not None]
    rounds = [r.round for r in up if r.round is not None]
    print(f"{len(up)}/{len(rows)} peers answered" +
          (f"; rounds {min(rounds)}-{max(rounds)}" if rounds else "") +
          (f"; mean acc {sum(accs) / len(accs):.4f}" if accs else ""), file=sys.stderr)
    return 0 if up else 1
