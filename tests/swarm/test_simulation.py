"""An in-memory swarm of real Peers on the virtual clock: seconds, not minutes."""

from __future__ import annotations

from pathlib import Path

import pytest

from rumor.node.results import write_metrics_csv
from rumor.node.simulation import Simulation, SimulationConfig
from rumor.protocols.errors import ConfigError

SMALL = SimulationConfig(peers=12, rounds=6, topology="regular:4", aggregator="mean", lr=0.2)


def test_same_seed_gives_byte_identical_metrics(tmp_path: Path) -> None:
    files = []
    for k in range(2):
        sim = Simulation(SMALL)
        rows = sim.run()
        path = tmp_path / f"m{k}.csv"
        write_metrics_csv(path, rows)
        files.append(path.read_bytes())
    assert files[0] == files[1]
    other = Simulation(SimulationConfig(**{**SMALL.__dict__, "seed": 2})).run()
    assert [r.acc_mean for r in other] != [r.acc_mean for r in rows]


def test_swarm_learns_and_reaches_consensus() -> None:
    rows = Simulation(SMALL).run()
    assert len(rows) == SMALL.rounds
    assert rows[-1].acc_mean > rows[0].acc_mean + 0.2
    assert rows[-1].consensus_distance < rows[0].consensus_distance
    # every peer pushes to its 4 neighbours; at the start it also PULLs each of them once
    # (nobody answers: nobody is ahead)
    assert rows[0].messages == 2 * 12 * 4
    assert all(r.messages == 12 * 4 for r in rows[1:])


def test_fedavg_star_keeps_every_client_identical() -> None:
    cfg = SimulationConfig(peers=8, rounds=4, aggregator="fedavg", lr=0.2)
    rows = Simulation(cfg).run()
    assert rows[-1].acc_min == rows[-1].acc_max
    assert rows[-1].consensus_distance == pytest.approx(0.0, abs=1e-6)
    assert rows[-1].messages == 16  # 8 updates up, 8 global models down


def test_lossy_links_trigger_timeouts_but_training_goes_on() -> None:
    cfg = SimulationConfig(**{**SMALL.__dict__, "loss": 0.3, "round_timeout": 2.0})
    sim = Simulation(cfg)
    rows = sim.run()
    assert len(rows) == cfg.rounds
    assert rows[-1].timeouts > 0
    assert rows[-1].acc_mean > 0.3


def test_signed_swarm_verifies_every_message() -> None:
    cfg = SimulationConfig(**{**SMALL.__dict__, "rounds": 2, "sign": True})
    sim = Simulation(cfg)
    sim.run()
    assert sum(p.validator.accepted for p in sim.peers) == 2 * 12 * 4 + 12 * 4  # + PULLs
    assert sim.reject_counts() == {}


@pytest.mark.parametrize(
    "kw",
    [{"aggregator": "nope"}, {"topology": "hexagon"}, {"split": "dirichlet:x"},
     {"model": "resnet"}, {"dataset": "cifar"}, {"init": "zeros"}],
)
def test_bad_config_is_a_config_error(kw: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Simulation(SimulationConfig(**{**SMALL.__dict__, **kw}))
