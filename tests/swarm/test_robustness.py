"""SybilWall and the robustness command, end to end but small."""

from __future__ import annotations

import json
from pathlib import Path

from rumor.node.simulation import Simulation, SimulationConfig
from rumor.scripts.cli import main

# seed 1: the Sybils' shared data slice holds class 0, so the 0<->1 flip bites
SYBIL = dict(peers=30, rounds=30, topology="rgg:0.2:maxdeg=7", split="dirichlet:0.1",
             lr=0.2, seed=1, attack="label-flip:pairs=0-1", sybils=6)


def test_sybilwall_lowers_the_sybils_attack_success_below_plain_mean() -> None:
    mean = Simulation(SimulationConfig(**SYBIL, aggregator="mean"))  # type: ignore[arg-type]
    mean.run()
    wall = Simulation(SimulationConfig(**SYBIL, aggregator="sybilwall"))  # type: ignore[arg-type]
    wall.run()
    asr_mean, asr_wall = mean.attack_success(), wall.attack_success()
    assert asr_mean is not None and asr_wall is not None
    assert asr_mean > 0.15 and asr_wall < asr_mean / 3
    # the weights that are merged: each honest peer's directly connected Sybils (a Sybil
    # known only from a few relayed vectors has a short history and may look unique;
    # its weight is never used, it is not merged)
    seen = [w for p, d in wall.defenses.items() if p < 30
            for s, w in d.last_weights.items()  # type: ignore[attr-defined]
            if wall.index_of[s] in wall.sybil_ids and wall.graph.has_edge(p, wall.index_of[s])]
    assert seen and max(seen) < 0.05


def test_monna_runs_with_persistent_momentum_in_the_simulator() -> None:
    sim = Simulation(SimulationConfig(peers=8, rounds=3, topology="complete",
                                      aggregator="monna", f=1, attack="alie", byzantine=1))
    rows = sim.run()
    assert sim.polyak_beta == 0.99 and sim.momentum_state is not None
    assert float(sim.momentum_state.abs().sum()) > 0 and len(rows) == 3


def test_robustness_quick_writes_tables_and_plots(tmp_path: Path) -> None:
    assert main(["robustness", "--quick", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "robustness.md").read_text()
    for title in ("Rules x attacks", "MoNNA", "SybilWall"):
        assert title in md
    for png in ("rules_x_attacks.png", "monna.png", "sybilwall.png"):
        assert (tmp_path / png).stat().st_size > 1000
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["rules"]["grid"]) == {"mean", "trimmed-mean", "monna"}
