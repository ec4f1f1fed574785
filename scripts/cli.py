"""The ``rumor`` command: one entry point, subcommands, errors as one clear line.

Exit codes: 0 success, 1 runtime failure, 2 bad input (ConfigError), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rumor.protocols.errors import ConfigError, RumorError
from rumor.scripts import (
    bristle_cmd,
    compare_cmd,
    data_cmd,
    experiment_cmd,
    join_cmd,
    launch_cmd,
    modest_cmd,
    robustness_cmd,
    simulate_cmd,
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (no usage dump) with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"rumor: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rumor",
        description="Decentralized gossip learning: signed model updates, robust merging.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    simulate_cmd.add_parser(sub)
    data_cmd.add_parser(sub)
    join_cmd.add_parser(sub)
    compare_cmd.add_parser(sub)
    experiment_cmd.add_parser(sub)
    launch_cmd.add_parser(sub)
    bristle_cmd.add_parser(sub)
    modest_cmd.add_parser(sub)
    robustness_cmd.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"rumor: error: {exc}", file=sys.stderr)
        return 2
    except RumorError as exc:
        print(f"rumor: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rumor: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
