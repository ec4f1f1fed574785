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
from typing import Any

from rumor.protocols.errors import ConfigError, RumorError
from rumor.scripts.options import HelpFormatter

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
    "status": ("rumor.scripts.status_cmd", "a table of every peer of a running mesh"),
    "peers": ("rumor.scripts.peers_cmd", "list the peers of a launch, or a peer's neighbours"),
    "stop": ("rumor.scripts.stop_cmd", "stop a running launch cleanly"),
    "export": ("rumor.scripts.export_cmd",
               "write a running peer's model to a .safetensors or .pt file"),
    "dashboard": ("rumor.scripts.dashboard_cmd",
                  "replay a finished run (metrics.csv + events.jsonl) on the web dashboard"),
    "comm-study": ("rumor.scripts.comm_cmd",
                   "communication schedules, the final merge and DFedSAM (docs/results.md)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (no usage dump) with exit code 2; its
    --help shows every flag's default (rumor.scripts.options.HelpFormatter)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

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
    parser.add_argument("--version", action="version", version=f"rumor {version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        if command in (name, "*"):
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def version() -> str:
    """The installed package's version (pyproject.toml's)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("rumor")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def _with_config(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse again with the --config file's values as defaults (flags still win)."""
    from rumor.scripts.config_file import config_defaults

    sub = _subparsers(parser)[args.command]
    # the file may hold other commands' keys: their full parsers say which (this imports
    # every subcommand, only when a --config file is given)
    everyone = _subparsers(build_parser("*"))
    values, skipped = config_defaults(sub, args.command, args.config, everyone)
    if skipped:
        print(f"rumor {args.command}: {args.config}: not a {args.command} setting, "
              f"skipped: {', '.join(skipped)}", file=sys.stderr)
    sub.set_defaults(**values)
    return parser.parse_args(argv)


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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (and its --config file, flags winning) as a Namespace.

    Raises SystemExit like argparse (--help, --version, a bad flag: its line printed)
    and ConfigError for a bad config file. Only the chosen subcommand's module is
    imported (see build_parser)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(chosen_command(argv))
    args = parser.parse_args(argv)
    if getattr(args, "flag_config", False) and args.config is not None:
        args = _with_config(parser, args, argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure the user can fix is one line on stderr.

    Exit codes: 0 success, 1 runtime failure, 2 bad input (a bad flag, ConfigError, or
    an OSError on a path the user gave), 130 Ctrl-C.
    """
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2, its line already printed)
        return exc.code if isinstance(exc.code, int) else 2
    except ConfigError as exc:  # a bad --config file, or a type= validator that let a
        print(f"rumor: error: {_one_line(str(exc))}", file=sys.stderr)  # library error out
        return 2
    except KeyboardInterrupt:
        print("rumor: interrupted", file=sys.stderr)
        return 130
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
