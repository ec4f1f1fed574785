"""``rumor dashboard RUN_DIR``: a finished run on the dashboard, played back.

Reads RUN_DIR/metrics.csv, events.jsonl, summary.json (and scenario.toml) of a
``rumor simulate``, ``launch`` or ``experiment`` run (rumor.node.dashboard.replay),
prints ``dashboard: URL`` and serves the page until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

from rich.console import Console

from rumor.node.dashboard.serve import replay
from rumor.protocols.errors import ConfigError
from rumor.scripts.options import port_or_any


def _speed(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return v


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "dashboard",
        help="replay a finished run (metrics.csv + events.jsonl) on the web dashboard",
        description="Serve the dashboard of a finished run directory and play it back "
        "round by round; Ctrl-C stops it.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                   help="a run's output directory (holds metrics.csv)")
    p.add_argument("--port", type=port_or_any, default=0,
                   help="serve on 127.0.0.1:PORT (default 0: any free port)")
    p.add_argument("--speed", type=_speed, default=2.0, metavar="ROUNDS_PER_S",
                   help="playback speed in rounds per second (default 2; 0: show the "
                   "final state at once)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not (args.run_dir / "metrics.csv").is_file():
        raise ConfigError(f"{args.run_dir}: no metrics.csv (give the output directory of "
                          "rumor simulate, launch or experiment)")
    console = Console(stderr=True)

    def on_url(url: str) -> None:
        console.print(f"dashboard: {url}", soft_wrap=True, highlight=False, markup=False)
        console.print("Ctrl-C to stop", style="dim", highlight=False)

    async def main() -> None:
        task = asyncio.ensure_future(replay(args.run_dir, port=args.port, speed=args.speed,
                                            on_url=on_url))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    return 0
