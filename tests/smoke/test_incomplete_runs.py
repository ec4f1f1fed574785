"""A run that stops before its last round says why and fails; one that finishes passes.

experiments/churn.toml with leave rate 0.1/s and join rate 0.03/s used to stop at round
22 of 40 without a word. ``rumor experiment`` now either completes every round or warns
with the reason and exits 1; ``rumor compare`` and ``rumor robustness`` warn.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from rumor.node.robustness import RunResult, run_one
from rumor.node.simulation import SimulationConfig
from rumor.scripts.cli import main
from rumor.topology import RemovePeers

ROOT = Path(__file__).resolve().parents[2]


def _heavy_churn(tmp_path: Path) -> Path:
    text = (ROOT / "experiments" / "churn.toml").read_text()
    text, n_leave = re.subn(r"rate_leave = [0-9.]+", "rate_leave = 0.1", text)
    text, n_join = re.subn(r"rate_join = [0-9.]+", "rate_join = 0.03", text)
    assert n_leave == n_join == 1
    path = tmp_path / "churn.toml"
    path.write_text(text)
    return path


def _all_gone(tmp_path: Path) -> Path:
    path = tmp_path / "all-gone.toml"
    path.write_text("""name = "all-gone"
[network]
peers = 8
topology = "regular:4"
[learning]
rounds = 6
round_timeout = 2.0
[[timeline]]
action = "remove_peers"
select = "random"
fraction = 1.0
at_round = 2
""")
    return path


def test_heavy_churn_either_completes_or_says_why_and_exits_nonzero(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["experiment", str(_heavy_churn(tmp_path)), "--out", str(out),
                 "--set", "rounds=15", "--set", "test_subset=300"])
    summary = json.loads((out / "churn" / "summary.json").read_text())
    err = capsys.readouterr().err
    assert summary["rounds_configured"] == 15
    if summary["complete"]:
        assert code == 0 and summary["rounds_completed"] == 15
    else:
        assert code == 1 and summary["rounds_completed"] < 15
        assert "incomplete run" in err and summary["reason"].split(":")[0] in err


def test_experiment_with_every_peer_gone_warns_with_the_reason_and_exits_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["experiment", str(_all_gone(tmp_path)), "--out", str(out),
                 "--set", "test_subset=200"])
    summary = json.loads((out / "all-gone" / "summary.json").read_text())
    err = " ".join(capsys.readouterr().err.split())  # undo the console's wrapping
    assert code == 1
    assert not summary["complete"] and summary["rounds_completed"] < 6
    assert "all-gone (sim): incomplete run: no live learner left" in err


def test_robustness_runs_carry_completion_and_the_reason() -> None:
    seen: list[RunResult] = []
    base = SimulationConfig(peers=8, rounds=5, topology="regular:4", test_subset=200)
    ok = run_one(base, "ok", on_run=seen.append)
    assert ok.complete and ok.reason is None and ok.rounds_completed == 5
    gone = run_one(dataclasses.replace(base, timeline=(RemovePeers(1.5, tuple(range(8))),)),
                   "gone", on_run=seen.append)
    assert not gone.complete and gone.rounds_completed < 5
    assert gone.reason == "no live learner left" and seen == [ok, gone]
    assert gone.as_dict()["complete"] is False
