"""``--config FILE``: one TOML format for simulate, launch, join and experiment.

Keys are the command's flag names (``batch-size`` or ``batch_size``), values the TOML
type the flag takes (``peers = 16``, ``aggregator = "mean"``, ``sign = true``, a list
for a repeatable flag). Top-level keys apply to every command that has that flag, so one
file drives a simulated and a real run; a ``[simulate]``, ``[launch]``, ``[join]`` or
``[experiment]`` table holds keys for that command only. Flags on the command line
override the file. A key no command knows, a key in a command's table that command does
not have, or a value its flag refuses is a one-line ConfigError (exit 2); a top-level key
only another command has is skipped and named (``skipped``).
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rumor.protocols.errors import ConfigError

COMMANDS = ("simulate", "launch", "join", "experiment")
_NOT_KEYS = {"help", "config", "version"}


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed file; ConfigError (one line) when it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def keys_of(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Config key (flag name with '_') -> its action; hidden flags are not keys."""
    out: dict[str, argparse.Action] = {}
    for a in parser._actions:
        if a.dest in _NOT_KEYS or a.help == argparse.SUPPRESS:
            continue
        longs = [s for s in a.option_strings if s.startswith("--")]
        if longs:
            out[longs[0][2:].replace("-", "_")] = a
        elif not a.option_strings:
            out[a.dest] = a
    return out


def _convert_one(a: argparse.Action, value: Any, where: str) -> Any:
    if isinstance(value, dict | list) or (isinstance(value, bool) and a.type is not None):
        raise ConfigError(f"{where}: expected a single {a.metavar or 'value'}, "
                          f"got {value!r}")
    if a.type is not None:
        try:
            conv = a.type(str(value))  # type: ignore[operator]
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    else:
        conv = value if not isinstance(value, int | float) else str(value)
    if a.choices is not None and conv not in a.choices:
        raise ConfigError(f"{where}: {conv!r} is not one of: "
                          f"{', '.join(map(str, a.choices))}")
    return conv


def _convert(a: argparse.Action, value: Any, where: str) -> Any:
    if a.nargs == 0:  # a switch
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        const = a.const
        if isinstance(a, argparse._StoreFalseAction):
            return not value
        return const if value else a.default
    if isinstance(a, argparse._AppendAction) or a.nargs in ("+", "*"):
        items = value if isinstance(value, list) else [value]
        if a.nargs == "+" and not items:
            raise ConfigError(f"{where}: expected at least one value")
        return [_convert_one(a, v, where) for v in items]
    return _convert_one(a, value, where)


def command_keys(command: str) -> set[str]:
    """The config keys of ``rumor COMMAND`` (its parser built on its own, from
    rumor.scripts.<command>_cmd.add_parser)."""
    import importlib

    module = importlib.import_module(f"rumor.scripts.{command}_cmd")
    root = argparse.ArgumentParser(add_help=False)
    sub = root.add_subparsers()
    module.add_parser(sub)
    return set(keys_of(sub.choices[command]))


def config_defaults(parser: argparse.ArgumentParser, command: str, path: Path,
                    others: Mapping[str, argparse.ArgumentParser] | None = None
                    ) -> tuple[dict[str, Any], list[str]]:
    """(dest -> value for ``parser.set_defaults``, top-level keys skipped as another
    command's) from the TOML file ``path`` for ``rumor COMMAND``. ``others``: the other
    commands' parsers where the caller has them (else built when a key needs them)."""
    doc = read_toml(path)
    mine = keys_of(parser)
    known_elsewhere: set[str] | None = None

    def elsewhere() -> set[str]:
        nonlocal known_elsewhere
        if known_elsewhere is None:
            known_elsewhere = set()
            for name in COMMANDS:
                if name == command:
                    continue
                if others is not None and name in others:
                    known_elsewhere |= set(keys_of(others[name]))
                else:
                    known_elsewhere |= command_keys(name)
        return known_elsewhere

    values: dict[str, Any] = {}
    skipped: list[str] = []
    table = doc.get(command, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{command}] must be a table")
    top = {k: v for k, v in doc.items() if not (k in COMMANDS and isinstance(v, dict))}
    for section, items in (("", top), (command, table)):
        for raw_key, value in items.items():
            key = raw_key.replace("-", "_")
            where = f"{path}: {f'[{section}] ' if section else ''}{raw_key}"
            action = mine.get(key)
            if action is None:
                if not section and key in elsewhere():
                    skipped.append(raw_key)
                    continue
                raise ConfigError(f"{where}: unknown key for rumor {command} (keys are its "
                                  f"flag names; see rumor {command} --help)")
            values[action.dest] = _convert(action, value, where)
    return values, skipped
