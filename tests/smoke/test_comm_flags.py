"""--schedule, --gossip-steps, --final-merge and --optimizer on every command that runs
peers: bad values are one line and exit 2; good ones reach the run; a tiny simulation
writes the plan and the final merge's report into summary.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rumor.scripts.cli import main

SIM = ["--peers", "6", "--rounds", "2", "--topology", "ring", "--test-subset", "20",
       "--quiet"]
BAD_VALUES = [
    ["--schedule", "sometimes"], ["--schedule", "every:0"], ["--schedule", "late:1.5"],
    ["--schedule", "late:0.5:0"], ["--gossip-steps", "0"], ["--gossip-steps", "x"],
    ["--final-merge", "-1"], ["--final-merge", "many"], ["--optimizer", "adam"],
    ["--optimizer", "sam:rho=-1"], ["--optimizer", "sam:rho=nan"], ["--optimizer", "sam:x=1"],
]
COMMANDS = {
    "simulate": ["simulate", *SIM],
    "compare": ["compare", "--peers", "6", "--rounds", "2", "--topology", "ring"],
    "launch": ["launch", "--peers", "2", "--rounds", "2"],
    "join": ["join", "--rounds", "2"],
}
CASES = [(f"{cmd}{''.join(bad)}", [*argv, *bad]) for cmd, argv in COMMANDS.items()
         for bad in BAD_VALUES] + [
    # valid flags, invalid together
    ("simulate-fedavg-schedule", ["simulate", *SIM, "--aggregator", "fedavg",
                                  "--schedule", "every:2"]),
    ("launch-late-without-rounds", ["launch", "--peers", "2", "--schedule", "late:0.5"]),
    ("launch-final-merge-without-rounds", ["launch", "--peers", "2", "--final-merge"]),
    ("join-late-without-rounds", ["join", "--schedule", "late:0.5"]),
    ("comm-study-rho-negative", ["comm-study", "--rho", "-1"]),
    ("comm-study-section-unknown", ["comm-study", "--sections", "nosuch"]),
]
SCENARIO_BAD = {
    "schedule-unknown": '[learning]\nschedule = "sometimes"\n',
    "schedule-int": "[learning]\nschedule = 3\n",
    "gossip-steps-zero": "[learning]\ngossip_steps = 0\n",
    "final-merge-negative": "[learning]\nfinal_merge = -2\n",
    "final-merge-str": '[learning]\nfinal_merge = "yes"\n',
    "optimizer-unknown": '[learning]\noptimizer = "adam"\n',
}


class _Ran(Exception):
    pass


def _sentinel(*args: Any, **kwargs: Any) -> Any:
    raise _Ran("accepted")


@pytest.fixture
def no_real_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rumor.node.mesh import launcher
    from rumor.node.runtime import NodeRuntime
    from rumor.node.simulation import Simulation

    monkeypatch.setattr(Simulation, "run", _sentinel)
    monkeypatch.setattr(NodeRuntime, "run", _sentinel)
    monkeypatch.setattr(launcher.Mesh, "run", _sentinel)
    monkeypatch.chdir(tmp_path)


def _outcome(argv: list[str]) -> object:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code
    except _Ran:
        return "ran"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("case", "argv"), CASES, ids=[c for c, _ in CASES])
def test_bad_communication_flags_are_one_line_and_exit_2(
        case: str, argv: list[str], no_real_work: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = _outcome(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, f"{case}: exit {code}: {err}"
    assert len(err) == 1 and err[0].startswith("rumor: error: "), err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(SCENARIO_BAD))
def test_bad_communication_keys_in_scenario_files_exit_2(
        name: str, no_real_work: None, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / f"{name}.toml"
    path.write_text(SCENARIO_BAD[name])
    code = _outcome(["experiment", str(path), "--mode", "sim"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("rumor: error: "), (code, err)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_good_communication_flags_reach_the_run(cmd: str, no_real_work: None) -> None:
    flags = ["--schedule", "late:0.5:2", "--gossip-steps", "2", "--final-merge", "3",
             "--optimizer", "sam:rho=0.1"]
    assert _outcome([*COMMANDS[cmd], *flags]) == "ran"


def test_help_lists_the_flags_with_their_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in COMMANDS:
        assert _outcome([cmd, "--help"]) in (0, None)
        out = " ".join(capsys.readouterr().out.split())
        for text in ("--schedule SPEC", "default: constant", "--gossip-steps Q",
                     "--final-merge [T]", "T=30", "--optimizer SPEC", "default: sgd"):
            assert text in out, (cmd, text)


@pytest.mark.timeout(300)
def test_a_tiny_simulation_records_the_plan_and_the_final_merge(tmp_path: Path) -> None:
    code = main(["simulate", *SIM, "--schedule", "every:2", "--final-merge", "4",
                 "--optimizer", "sam", "--out", str(tmp_path)])
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["plan"]["protocol_rounds"] == 6 and summary["rounds"] == 6
    assert summary["plan"]["communicating_rounds"] == 5  # 1 of 2 training rounds + 4
    fm = summary["final_merge"]
    assert fm["rounds"] == 4 and fm["consensus_after"] < fm["consensus_before"]
    assert summary["config"]["optimizer"] == "sam"


@pytest.mark.timeout(300)
def test_scenario_files_take_the_communication_keys(tmp_path: Path) -> None:
    path = tmp_path / "late.toml"
    path.write_text('name = "late"\n[network]\npeers = 6\ntopology = "ring"\n'
                    '[learning]\nrounds = 4\nschedule = "late:0.5"\nfinal_merge = 2\n'
                    'gossip_steps = 2\noptimizer = "sam:rho=0.02"\ntest_subset = 20\n')
    out = tmp_path / "out"
    assert main(["experiment", str(path), "--mode", "sim", "--out", str(out)]) == 0
    summaries = list(out.rglob("summary.json"))
    assert summaries
    s = json.loads(summaries[0].read_text())
    # late:0.5 (K=2) of 4 rounds: rounds 2 and 3 talk, with 2 steps each; + 2 final
    assert s["plan"]["protocol_rounds"] == 2 + 2 * 2 + 2
