"""Attacks and failure timelines in the simulator, end to end but small."""

from __future__ import annotations

from pathlib import Path

import pytest

from rumor.node.scenario import load_scenario
from rumor.node.simulation import Simulation, SimulationConfig
from rumor.protocols.errors import ConfigError
from rumor.topology import Heal, Partition, RemovePeers

BASE = dict(peers=16, rounds=6, topology="regular:6", lr=0.2)


def test_sign_flip_breaks_mean_but_not_trimmed_mean() -> None:
    atk = dict(attack="sign-flip:scale=4", byzantine=3, f=2)
    mean = Simulation(SimulationConfig(**BASE, aggregator="mean", **atk)).run()  # type: ignore[arg-type]
    robust = Simulation(SimulationConfig(**BASE, aggregator="trimmed-mean", **atk)).run()  # type: ignore[arg-type]
    assert robust[-1].acc_mean > mean[-1].acc_mean + 0.2


def test_byzantine_peers_are_not_evaluated_and_sybils_join_the_graph() -> None:
    sim = Simulation(SimulationConfig(**BASE, aggregator="mean", attack="label-flip:pairs=0-1",  # type: ignore[arg-type]
                                      byzantine=2, sybils=3))
    rows = sim.run()
    assert len(sim.honest) == 14 and all(p not in sim.byzantine for p in sim.eval_rows)
    assert sim.total == 19 and sim.graph.degree(18) == 4
    assert 0.0 <= (sim.attack_success() or 0.0) <= 1.0
    assert rows[-1].peers_alive == 14


def test_removed_peers_stop_and_the_rest_keep_learning() -> None:
    cfg = SimulationConfig(**BASE, aggregator="mean",  # type: ignore[arg-type]
                           timeline=(RemovePeers(2.5, (0, 1, 2, 3)),))
    sim = Simulation(cfg)
    rows = sim.run()
    assert len(rows) == cfg.rounds
    assert rows[0].peers_alive == 16 and rows[-1].peers_alive == 12
    assert rows[-1].acc_mean > 0.5


def test_partition_then_heal_completes_every_round() -> None:
    halves = (tuple(range(8)), tuple(range(8, 16)))
    cfg = SimulationConfig(**BASE, aggregator="variance-corrected",  # type: ignore[arg-type]
                           timeline=(Partition(1.5, halves), Heal(4.5)))
    rows = Simulation(cfg).run()
    assert [r.round for r in rows] == list(range(1, 7))


def test_shipped_scenarios_parse(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "experiments"
    files = [f for f in sorted(root.glob("*.toml")) if "[modest]" not in f.read_text()]
    assert len(files) >= 5
    for f in files:
        sc = load_scenario(f)
        # a file with a timeline parses into events; attack-only files have none
        assert bool(sc.config.timeline) == ("[[timeline]]" in f.read_text()), f


def test_bad_scenario_names_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[network]\npeers = 10\ncolour = "red"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml.*colour"):
        load_scenario(bad)
    bad.write_text('[[timeline]]\naction = "explode"\nat = 1\n')
    with pytest.raises(ConfigError, match="action"):
        load_scenario(bad)


def test_backdoor_plants_a_trigger_that_honest_models_learn() -> None:
    cfg = SimulationConfig(**BASE, aggregator="mean", attack="backdoor:target=0,fraction=0.8",  # type: ignore[arg-type]
                           byzantine=4)
    sim = Simulation(cfg)
    sim.run()
    assert sim.dataset.num_train > 1438  # triggered copies were appended
    success = sim.attack_success()
    assert success is not None and success > 0.15  # chance level would be ~0.1
