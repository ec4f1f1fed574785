"""Rejoining peers catch up through the protocol (PULL -> signed STATE), not an oracle."""

from __future__ import annotations

from rumor.node.simulation import Simulation, SimulationConfig
from rumor.topology import AddPeers, RemovePeers

BASE = dict(peers=12, rounds=14, topology="regular:4", seed=3, test_subset=200)


def test_a_peer_back_after_many_rounds_catches_up_and_every_round_completes() -> None:
    # rounds last ~1.05 virtual s: peer 5 misses rounds ~2..9 and comes back 7 behind
    timeline = (RemovePeers(2.2, (5,)), AddPeers(9.6, (5,)))
    sim = Simulation(SimulationConfig(**BASE, timeline=timeline, sign=True))  # type: ignore[arg-type]
    rows = sim.run()
    assert [r.round for r in rows] == list(range(1, 15))
    caught = [e for e in sim.events if e["event"] == "caught_up" and e["peer"] == 5]
    assert caught and caught[0]["to"] - caught[0]["from"] >= 3
    assert sim.completion()["complete"]
    assert sim.reject_counts().get("bad_signature", 0) == 0
    assert rows[-1].peers_alive == 12


def test_catch_up_is_counted_and_logged() -> None:
    timeline = (RemovePeers(2.2, (5,)), AddPeers(9.6, (5,)))
    on = Simulation(SimulationConfig(**BASE, timeline=timeline))  # type: ignore[arg-type]
    on.run()
    assert on.protocol_events().get("catch_up", 0) >= 1
    assert any(e["event"] == "catching_up" for e in on.events)


def test_a_peer_back_two_rounds_behind_catches_up_instead_of_slowing_the_mesh() -> None:
    """Two rounds behind used to be below the catch-up gap (3) and too far behind to
    rejoin by itself: its updates were never fresh for its neighbours, who waited on it
    every round, and the mesh ran at half its round rate to the end (real-faults.toml
    with the removal one round later: 40 rounds in 80 virtual s instead of 42)."""
    timeline = (RemovePeers(4.3, (5,)), AddPeers(6.4, (5,)))  # away ~2 rounds
    sim = Simulation(SimulationConfig(**BASE, timeline=timeline))  # type: ignore[arg-type]
    rows = sim.run()
    calm = Simulation(SimulationConfig(**BASE)).run()  # type: ignore[arg-type]
    assert [r.round for r in rows] == list(range(1, 15))
    caught = [e for e in sim.events if e["event"] == "caught_up" and e["peer"] == 5]
    assert caught and caught[0]["to"] - caught[0]["from"] >= 2
    per_round = (rows[-1].time - rows[6].time) / (len(rows) - 7)
    calm_round = (calm[-1].time - calm[6].time) / (len(calm) - 7)
    assert per_round < 1.2 * calm_round, (per_round, calm_round)
