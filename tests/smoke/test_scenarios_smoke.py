"""Every shipped scenario file runs end to end, in a few rounds, through the CLI entry point.

Parametrized over experiments/*.toml, so a new file is picked up without editing this
module. Scenario files go through ``rumor experiment`` (``--set rounds=3``); MoDeST files
(a ``[modest]`` table) through ``rumor modest --max-rounds 3``. Both evaluate on a
200-sample test subset to stay fast.
"""

from __future__ import annotations

import csv
import json
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rumor.node.scenario import load_scenario
from rumor.node.simulation import Simulation, byzantine_peers, relay_peers
from rumor.scripts.cli import main
from rumor.topology import build_topology

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "experiments").glob("*.toml"))
ROUNDS = 3
FAST = {"rounds": ROUNDS, "test_subset": 200}


def is_modest(path: Path) -> bool:
    return "modest" in tomllib.loads(path.read_text())


def read_metrics(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_there_are_scenario_files_to_smoke() -> None:
    assert len(SCENARIOS) >= 8


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_scenario_file_runs_end_to_end_through_the_cli(path: Path, tmp_path: Path) -> None:
    if is_modest(path):
        code = main(["modest", "--config", str(path), "--max-rounds", str(ROUNDS),
                     "--test-subset", "200", "--out", str(tmp_path)])
        assert code == 0
        rows = read_metrics(tmp_path / "metrics.csv")
        summary: dict[str, Any] = json.loads((tmp_path / "summary.json").read_text())
        assert len(rows) == ROUNDS and summary["rounds"] == ROUNDS
        assert 0.0 <= summary["final_acc"] <= 1.0 and summary["final_alive"] >= 1
        assert summary["config"]["max_rounds"] == ROUNDS
        return
    sets = [arg for key, value in FAST.items() for arg in ("--set", f"{key}={value}")]
    assert main(["experiment", str(path), *sets, "--out", str(tmp_path)]) == 0
    scenario = load_scenario(path, FAST)
    out = tmp_path / scenario.name
    rows = read_metrics(out / "metrics.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert [int(r["round"]) for r in rows] == list(range(1, ROUNDS + 1))
    assert summary["rounds"] == ROUNDS and summary["config"]["rounds"] == ROUNDS
    assert summary["scenario"] == scenario.name
    assert summary["config"]["peers"] == scenario.config.peers
    assert 0.0 <= summary["final_acc_mean"] <= 1.0
    assert summary["final_peers_alive"] == int(rows[-1]["peers_alive"]) >= 1
    assert (out / "scenario.toml").read_text() == path.read_text()
    assert (out / "events.jsonl").exists() and (out / "accuracy.png").stat().st_size > 0


@pytest.mark.parametrize("path", [p for p in SCENARIOS
                                  if not is_modest(p) and "[[timeline]]" in p.read_text()],
                         ids=lambda p: p.name)
def test_scenario_timeline_fires_inside_a_short_run(path: Path) -> None:
    """The file's timeline, scaled in time to land inside round 1..3, runs to the end."""
    sc = load_scenario(path, FAST)
    cfg = sc.config
    period = cfg.train_time + cfg.latency
    last = max(e.at for e in cfg.timeline)
    scale = min(1.0, (ROUNDS - 0.5) * period / last) if last > 0 else 1.0
    timeline = tuple(replace(e, at=e.at * scale) for e in cfg.timeline)
    sim = Simulation(replace(cfg, timeline=timeline))
    rows = sim.run()
    assert len(rows) == ROUNDS
    fired = [e for e in sim.events if e.get("peer") == -1]
    assert len(fired) == len(timeline)
    assert all(r.peers_alive >= 1 for r in rows)


def test_timeline_roles_are_the_simulations_roles(tmp_path: Path) -> None:
    """The timeline's oracle (relays, Byzantine peers) agrees with what the simulator does."""
    path = tmp_path / "roles.toml"
    path.write_text('[network]\npeers = 20\ntopology = "ba:2"\nseed = 7\n'
                    '[data]\nrelay_fraction = 0.4\n'
                    '[learning]\nrounds = 1\nattack = "sign-flip"\nbyzantine = 5\n')
    cfg = load_scenario(path).config
    sim = Simulation(cfg)
    graph = build_topology(cfg.topology, cfg.peers, cfg.seed)
    assert sim.byzantine == byzantine_peers(cfg, graph)
    assert sim.relays == relay_peers(cfg.peers, cfg.relay_fraction, cfg.seed)
