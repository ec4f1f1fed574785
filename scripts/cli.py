"""The ``rumor`` command: one entry point, subcommands, errors as one clear line.

Exit codes: 0 success, 1 runtime failure, 2 bad input (a bad flag, ConfigError, or an
OSError on a path the user gave), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rumor.protocols.errors import ConfigError, RumorError

# name -> (module, one-line help). A module is imported only when its subcommand is
# chosen, so `rumor --help` loads no torch/libp2p and `rumor simulate` no libp2p/Bristle.
# The help here must equal the one the module registers (tests/unit/test_cli_lazy.py).
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("rumor.scripts.simulate_cmd",
                 "simulate N peers in one process (virtual clock, deterministic from --seed)"),
    "data": ("rumor.scripts.data_cmd", "prepare and list datasets"),
    "join": ("rumor.scripts.join_cmd", "run one peer that joins (or starts) a live mesh"),
    "compare": ("rumor.scripts.compare_cmd",
                "run the same simulation under several aggregators"),
    "experiment": ("rumor.scripts.experiment_cmd",
                   "run scenario files (disasters, churn, partitions)"),
    "launch": ("rumor.scripts.launch_cmd",
               "start N peers on this machine (real libp2p on loopback) and watch them train"),
    "bristle": ("rumor.scripts.bristle_cmd", "Bristle vs averaging: accuracy on unseen classes"),
    "modest": ("rumor.scripts.modest_cmd", "MoDeST: sampled training rounds under churn"),
    "robustness": ("rumor.scripts.robustness_cmd",
                   "regenerate the Byzantine/Sybil robustness tables"),
    "dashboard": ("rumor.scripts.dashboard_cmd",
                  "replay a finished run (metrics.csv + events.jsonl) on the web dashboard"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (no usage dump) with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"rumor: error: {_one_line(message)} (see '{self.prog} --help')\n")


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand argv names: its first token that is not an option (the top-level
    parser has no option that takes a value), or None."""
    for token in argv:
        if token == "--":
            return None
        if not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``rumor`` parser with every subcommand listed; only ``command``'s module is
    imported and given its full set of flags (all of them when ``command`` is "*")."""
    parser = _Parser(
        prog="rumor",
        description="Decentralized gossip learning: signed model updates, robust merging.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        if command in (name, "*"):
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def _user_paths(args: argparse.Namespace) -> list[Path]:
    """The paths the user gave (or defaulted): out dirs, data dirs, scenario files."""
    out: list[Path] = []
    for v in vars(args).values():
        for item in v if isinstance(v, list | tuple) else [v]:
            if isinstance(item, Path):
                out.append(item.absolute())
    return out


def _os_error(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    name = exc.filename if exc.filename is not None else None
    return f"{name}: {what}" if name is not None else what


def _is_user_path(exc: OSError, paths: list[Path]) -> bool:
    if exc.filename is None or isinstance(exc.filename, int):
        return False
    try:
        target = Path(os.fsdecode(exc.filename)).absolute()
    except (TypeError, ValueError):
        return False
    return any(target == p or p in target.parents or target in p.parents for p in paths)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure the user can fix is one line on stderr.

    Exit codes: 0 success, 1 runtime failure, 2 bad input (a bad flag, ConfigError, or
    an OSError on a path the user gave), 130 Ctrl-C.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(chosen_command(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2, its line already printed)
        return exc.code if isinstance(exc.code, int) else 2
    except ConfigError as exc:  # a type= validator that let a library error through
        print(f"rumor: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    try:
        if getattr(args, "threads", None) is not None:
            from rumor.node.threads import apply_threads

            apply_threads(args.threads)
        return int(args.func(args))
    except ConfigError as exc:
        print(f"rumor: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:
        user = _is_user_path(exc, _user_paths(args))
        print(f"rumor: error: {_one_line(_os_error(exc))}", file=sys.stderr)
        return 2 if user else 1
    except RumorError as exc:
        print(f"rumor: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rumor: interrupted", file=sys.stderr)
        return 130


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(no details)"


if __name__ == "__main__":
    sys.exit(main())
