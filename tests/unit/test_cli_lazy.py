"""The CLI imports only what the chosen subcommand uses, and --threads reaches torch.

`rumor --help` must not load torch, libp2p or Bristle (the reason it starts in well under
a second), and `rumor simulate` must not load libp2p or Bristle. Checked on sys.modules
in a fresh interpreter, not on the clock.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rumor.scripts import cli

HEAVY = ("torch", "libp2p", "multiaddr", "trio", "rumor.node.bristle", "rumor.node.mesh",
         "rumor.node.transport.libp2p", "matplotlib", "scipy", "sklearn", "aiohttp",
         "rumor.node.dashboard")

_PROBE = """
import contextlib, io, json, sys
from rumor.scripts.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(json.loads(sys.argv[1]))
heavy = json.loads(sys.argv[2])
loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
print(json.dumps({"code": code, "out": out.getvalue(), "loaded": loaded}))
"""


def probe(argv: list[str], heavy: tuple[str, ...] = HEAVY) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argv), json.dumps(list(heavy))],
        capture_output=True, text=True, timeout=280, check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_top_level_help_lists_every_subcommand_and_loads_nothing_heavy() -> None:
    r = probe(["--help"])
    assert r["code"] == 0
    assert r["loaded"] == []
    out = str(r["out"])
    for name, (_, help_text) in cli.COMMANDS.items():
        assert name in out
        assert help_text.split()[0] in out


def test_simulate_help_loads_torch_but_not_libp2p_or_bristle() -> None:
    r = probe(["simulate", "--help"])
    assert r["code"] == 0
    assert "--threads" in str(r["out"])
    loaded = r["loaded"]
    assert isinstance(loaded, list)
    assert "torch" in loaded  # the defaults come from SimulationConfig (sanity of the probe)
    for name in ("libp2p", "multiaddr", "trio", "rumor.node.bristle", "rumor.node.mesh",
                 "rumor.node.transport.libp2p", "aiohttp", "rumor.node.dashboard"):
        assert name not in loaded


def test_every_table_help_matches_what_its_module_registers() -> None:
    parser = cli.build_parser("*")
    sub = next(a for a in parser._actions if a.dest == "command")
    registered = {a.dest: a.help for a in sub._get_subactions()}
    assert registered == {name: h for name, (_, h) in cli.COMMANDS.items()}


@pytest.mark.parametrize(("argv", "chosen"), [
    ([], None),
    (["--help"], None),
    (["simulate", "--peers", "3"], "simulate"),
    (["-h", "launch"], "launch"),
    (["simulat"], None),
    (["--", "simulate"], None),
])
def test_chosen_command(argv: list[str], chosen: str | None) -> None:
    assert cli.chosen_command(argv) == chosen


def test_unknown_subcommand_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["simulat"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice" in err


def test_threads_flag_reaches_torch() -> None:
    code = ("import torch, sys; from rumor.scripts import cli, simulate_cmd; "
            "simulate_cmd.run = lambda a: print(torch.get_num_threads(), "
            "torch.get_num_interop_threads()) or 0; "
            "sys.exit(cli.main(['simulate', '--threads', '2']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=280, check=True)
    assert done.stdout.split() == ["2", "2"]


def test_launch_workers_get_the_thread_count() -> None:
    from rumor.scripts.launch_cmd import mesh_config

    parser = cli.build_parser("launch")
    cfg = mesh_config(parser.parse_args(["launch", "--peers", "2", "--threads", "3"]))
    assert cfg.threads == 3


def test_apply_threads_refuses_zero() -> None:
    from rumor.node.threads import apply_threads
    from rumor.protocols.errors import ConfigError

    with pytest.raises(ConfigError):
        apply_threads(0)
