"""``rumor stop [--out DIR]``: stop a running ``rumor launch`` cleanly.

The launch writing to DIR (its pid is in DIR/launch.json while it runs) gets SIGTERM,
as from ``kill``: it stops its peers (each finishes its step; checkpoints are on disk),
writes metrics.csv, summary.json ("interrupted": true) and the final models, and
exits. This command waits for that, up to --timeout seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rumor.scripts.options import positive_float
from rumor.scripts.status_cmd import DEFAULT_LAUNCH_OUT


def add_parser(sub: Any) -> None:
    p = sub.add_parser("stop", help="stop a running launch cleanly", description=__doc__)
    p.add_argument("--out", type=Path, default=DEFAULT_LAUNCH_OUT, metavar="DIR",
                   help="the --out directory of the running `rumor launch`")
    p.add_argument("--timeout", type=positive_float, default=90.0,
                   help="seconds to wait for it to exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rumor.node.mesh.inspect import stop_launch

    pid = stop_launch(args.out, timeout=args.timeout)
    print(f"stopped the launch in {args.out} (pid {pid}); results in {args.out}",
          file=sys.stderr)
    return 0
