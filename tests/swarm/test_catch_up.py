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
