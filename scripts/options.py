"""Argument types shared by subcommands: they turn bad values into one-line errors.

Each type raises argparse.ArgumentTypeError, which the CLI's parser prints as one line
with exit code 2. Numbers are finite (``inf``/``nan`` are refused), seeds fit numpy's
32-bit seeding, ports are 1-65535 (and free, where the flag binds one), multiaddrs parse,
and output/data directories can be created and written before any work starts.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

SEED_LIMIT = 2**32


def _int_at_least(low: int, what: str, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if v < low or (high is not None and v > high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
        return v

    return parse


positive_int = _int_at_least(1, "a positive integer")
nonneg_int = _int_at_least(0, "an integer >= 0")
seed_int = _int_at_least(0, f"a seed in [0, 2**32) = [0, {SEED_LIMIT})", SEED_LIMIT - 1)


def _float_in(what: str, ok: Callable[[float], bool]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(v) or not ok(v):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return v

    return parse


finite_float = _float_in("a finite number", lambda v: True)
positive_float = _float_in("a positive number", lambda v: v > 0)
nonneg_float = _float_in("a number >= 0", lambda v: v >= 0)
probability = _float_in("a number in [0, 1)", lambda v: 0.0 <= v < 1.0)
unit_fraction = _float_in("a number in (0, 1]", lambda v: 0.0 < v <= 1.0)
unit_interval = _float_in("a number in [0, 1]", lambda v: 0.0 <= v <= 1.0)


def _port_number(text: str, low: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a TCP port, got {text!r}") from None
    if not low <= v <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port in [{low}, 65535], got {v}")
    return v


def _check_free(port: int, host: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            why = "in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise argparse.ArgumentTypeError(f"port {port} on {host}: {why}") from None


def port(text: str) -> int:
    """A TCP port in [1, 65535] that is free on loopback now."""
    v = _port_number(text, 1)
    _check_free(v)
    return v


def port_or_any(text: str) -> int:
    """0 (any free port) or a port in [1, 65535] that is free on loopback now."""
    v = _port_number(text, 0)
    if v:
        _check_free(v)
    return v


def port_base(text: str) -> int:
    """0 (any free ports) or the first of a range of ports in [1, 65535]."""
    return _port_number(text, 0)


def _multiaddr(text: str) -> object:
    from multiaddr import Multiaddr  # py-libp2p's; imported only when the flag is used

    try:
        return Multiaddr(text)
    except Exception as exc:  # multiaddr raises several ValueError/LookupError kinds
        raise argparse.ArgumentTypeError(f"not a multiaddr: {text!r} ({exc})") from None


def _tcp_parts(text: str) -> tuple[list[str], str, int]:
    addr = _multiaddr(text)
    names = [p.name for p in addr.protocols()]  # type: ignore[attr-defined]
    if len(names) < 2 or names[0] not in ("ip4", "ip6") or names[1] != "tcp":
        raise argparse.ArgumentTypeError(
            f"expected /ip4/HOST/tcp/PORT or /ip6/HOST/tcp/PORT, got {text!r}")
    host = addr.value_for_protocol(names[0])  # type: ignore[attr-defined]
    tcp = int(addr.value_for_protocol("tcp"))  # type: ignore[attr-defined]
    return names, str(host), tcp


def listen_multiaddr(text: str) -> str:
    """/ip4|ip6/HOST/tcp/PORT on an address of this machine (port 0: any)."""
    names, host, tcp = _tcp_parts(text)
    if len(names) != 2:
        raise argparse.ArgumentTypeError(f"a listen address ends at /tcp/PORT, got {text!r}")
    family = socket.AF_INET6 if names[0] == "ip6" else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, tcp))
        except OSError as exc:
            why = "in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise argparse.ArgumentTypeError(f"cannot listen on {text}: {why}") from None
    return text


def announce_multiaddr(text: str) -> str:
    """/ip4|ip6/HOST/tcp/PORT (no port 0): an address others can dial us at."""
    names, host, tcp = _tcp_parts(text)
    if names[-1] == "p2p":
        names = names[:-1]
    if len(names) != 2 or tcp == 0:
        raise argparse.ArgumentTypeError(
            f"an announce address is /ip4/HOST/tcp/PORT with a real port, got {text!r}")
    if host in ("0.0.0.0", "::"):
        raise argparse.ArgumentTypeError(f"announce a dialable address, not {host}")
    return text


def peer_multiaddr(text: str) -> str:
    """/ip4|ip6/HOST/tcp/PORT/p2p/PEERID (a peer to dial)."""
    names, _, tcp = _tcp_parts(text)
    if names[-1] != "p2p" or len(names) != 3:
        raise argparse.ArgumentTypeError(
            f"bootstrap address {text!r} must be /ip4/HOST/tcp/PORT/p2p/<peer id>")
    if tcp == 0:
        raise argparse.ArgumentTypeError(f"bootstrap address {text!r} has port 0")
    return text


def writable_dir(text: str) -> Path:
    """A directory that exists and is writable, or can be created (nearest parent)."""
    path = Path(text)
    if not text:
        raise argparse.ArgumentTypeError("expected a directory, got ''")
    probe = path
    while not probe.exists() and not probe.is_symlink():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "is" if probe == path else f"is under {probe}, which is"
        raise argparse.ArgumentTypeError(f"{text} {where} a file, not a directory")
    if not probe.exists() or not os.access(probe, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: {probe} is not writable")
    return path


def existing_file(text: str) -> Path:
    """A regular file that exists and can be opened."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a regular file")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text} is not readable")
    return path


def one_of(*choices: str, what: str = "value") -> Callable[[str], str]:
    """A name from ``choices`` (listed in the error)."""
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {text!r}; choose one of: {', '.join(choices)}")
        return text

    return parse


def _via(check: Callable[[str], object]) -> Callable[[str], str]:
    """A type that runs a library validator (ConfigError) and keeps the text."""
    from rumor.protocols.errors import ConfigError

    def parse(text: str) -> str:
        try:
            check(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    parse.__name__ = getattr(check, "__name__", "value")
    return parse


def _topology(text: str) -> object:
    from rumor.topology import parse_topology

    return parse_topology(text)


def _split(text: str) -> object:
    from rumor.node.data.splits import parse_split

    return parse_split(text)


def _attack(text: str) -> object:
    from rumor.node.attacks import parse_attack

    return parse_attack(text)


def _model(text: str) -> object:
    from rumor.node.models import MODEL_NAMES
    from rumor.protocols.errors import ConfigError

    if text not in MODEL_NAMES:
        raise ConfigError(f"unknown model {text!r}; choose one of: {', '.join(MODEL_NAMES)}")
    return text


def _dataset(text: str) -> object:
    from rumor.node.data.datasets import DATASET_NAMES
    from rumor.protocols.errors import ConfigError

    if text not in DATASET_NAMES:
        raise ConfigError(
            f"unknown dataset {text!r}; choose one of: {', '.join(DATASET_NAMES)}")
    return text


def _placement(text: str) -> object:
    from rumor.topology import parse_placement

    return parse_placement(text)


def _launch_placement(text: str) -> object:
    from rumor.protocols.errors import ConfigError
    from rumor.topology import parse_placement

    kind, _ = parse_placement(text)
    if kind == "hubs":
        raise ConfigError("placement 'hubs' needs a topology; a launched mesh is "
                          "discovered: use random or list:I,J,...")
    return text


def _schedule(text: str) -> object:
    from rumor.protocols.schedule import parse_schedule

    return parse_schedule(text)


def _optimizer(text: str) -> object:
    from rumor.node.optimizers import parse_optimizer

    return parse_optimizer(text)


schedule_spec = _via(_schedule)
optimizer_spec = _via(_optimizer)


def _compress(text: str) -> object:
    from rumor.aggregation.compression import parse_spec

    return None if text == "help" else parse_spec(text)


def compress_help(args: argparse.Namespace) -> bool:
    """True (after printing the listing) when ``--compress help`` was asked for."""
    values = getattr(args, "compress", None)
    values = values if isinstance(values, list) else [values]
    if "help" not in values:
        return False
    from rumor.aggregation.compression import describe

    print(describe())
    return True


COMPRESS_HELP = ("compressed gossip NAME[:k=v,...]: topk | randk | qsgd | int8 | powersgd "
                 "(+ feedback=none|ef|econtrol, eta=, gamma=), e.g. "
                 "topk:ratio=0.01,feedback=econtrol,eta=0.5; 'help' lists them; "
                 "default none")

topology_spec = _via(_topology)
compress_spec = _via(_compress)
placement_spec = _via(_placement)
launch_placement = _via(_launch_placement)
split_spec = _via(_split)
attack_spec = _via(_attack)
model_name = _via(_model)
dataset_name = _via(_dataset)


def dir_path(text: str) -> str:
    """A directory to read from (kept as text, as configs hold it): absent or a
    directory, never a file or under one."""
    path = Path(text)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "is" if probe == path else f"is under {probe}, which is"
        raise argparse.ArgumentTypeError(f"{text} {where} a file, not a directory")
    return text


def add_threads_flag(p: argparse.ArgumentParser, *, what: str = "") -> None:
    """``--threads N``: torch's thread count for this command (the CLI applies it once,
    through rumor.node.threads.apply_threads, before the command does any work)."""
    from rumor.node.threads import DEFAULT_THREADS

    p.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS,
                   help=f"torch threads{what} (default {DEFAULT_THREADS}: fastest on a "
                        "loaded 2-core machine; more where cores are free)")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` that shows every flag's default: argparse's "(default: X)" is appended
    unless the help text already says what the default is (``default`` in it), the flag
    is a switch (store_true/false: off unless given) or its default is None (then the
    help text must say what happens without it). Lines are not wrapped narrower than
    100 columns."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 32,
                 width: int | None = None) -> None:
        if width is None:
            width = shutil.get_terminal_size().columns - 2
        super().__init__(prog, indent_increment, max_help_position, width=max(width, 100))

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if ("default" in text.lower() or action.default is None
                or action.default is argparse.SUPPRESS or action.nargs == 0):
            return text
        return super()._get_help_string(action)


def add_config_flag(p: argparse.ArgumentParser) -> None:
    """``--config FILE``: a TOML file of this command's flags (see rumor.scripts.config_file);
    flags given on the command line override it."""
    p.add_argument("--config", type=existing_file, default=None, metavar="FILE",
                   help="TOML file of this command's settings (keys are flag names: "
                   "peers = 16, aggregator = \"mean\"; a [simulate]/[launch]/[join]/"
                   "[experiment] table holds one command's keys); flags given here "
                   "override it (default: no file)")
    p.set_defaults(flag_config=True)


class _Renamed(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str, hint: str = "",
                 **kwargs: Any) -> None:
        self.hint = hint
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS,
                         default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        parser.error(f"{option_string} is no longer a flag of this command: {self.hint}")


def renamed_flag(p: Any, old: str, hint: str) -> None:
    """A hidden flag that fails with ``hint`` (one line, exit 2): an old spelling whose
    meaning changed, so it is refused rather than silently reinterpreted."""
    p.add_argument(old, action=_Renamed, hint=hint)


def dataset_dir_flags(p: Any, *, writable: bool = False) -> None:
    """``--dataset-dir DIR`` (where `rumor data fetch` caches datasets; $RUMOR_DATA_DIR),
    and ``--data-dir`` as a hidden old spelling of it (same meaning)."""
    conv = writable_dir if writable else dir_path
    default = os.environ.get("RUMOR_DATA_DIR")
    p.add_argument("--dataset-dir", type=conv, default=default, metavar="DIR",
                   help="where `rumor data fetch` caches datasets (default: "
                   f"{default or '$RUMOR_DATA_DIR, else ~/.cache/rumor/data'})")
    p.add_argument("--data-dir", dest="dataset_dir", type=conv, default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)


class _AggregatorAction(argparse.Action):
    """Stores the rule name(s); ``help`` prints every name the flag takes and exits 0."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        items = values if isinstance(values, list) else [values]
        if "help" in items:
            from rumor.node.merging import aggregator_names

            print("\n".join(aggregator_names()))
            parser.exit(0)
        setattr(namespace, self.dest, values)


def aggregator_flag(p: Any, default: Any, *, many: bool = False) -> None:
    """``--aggregator NAME`` (or ``--aggregators NAME ...``); ``help`` lists the rules."""
    if many:
        p.add_argument("--aggregators", nargs="+", default=default, action=_AggregatorAction,
                       metavar="NAME", help="aggregation rules to compare ('help' lists "
                       "every rule)")
    else:
        p.add_argument("--aggregator", default=default, action=_AggregatorAction,
                       metavar="NAME", help="aggregation rule, e.g. variance-corrected, "
                       "mean, median, krum, monna, sybilwall, fedavg, vc:median ('help' "
                       "lists every rule)")


DEFAULT_TOPOLOGY = "regular:8"


def default_topology(peers: int) -> str:
    """The topology a simulation gets when none is given: ``regular:8``, which needs at
    least 9 peers; ``complete`` (every peer linked to every other) below that."""
    return DEFAULT_TOPOLOGY if peers > 8 else "complete"
