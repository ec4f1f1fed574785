"""MoDeST through the one engine (Simulation, mode="modest"): training keeps going while
peers crash. Every peer is a ModestPeer; nobody holds a global view."""

from __future__ import annotations

from dataclasses import replace

from rumor.node.simulation import Simulation
from rumor.scripts.modest_cmd import ModestConfig

SMALL = ModestConfig(peers=30, s=6, a=1, duration=240.0, crash_count=3, crash_every=20.0,
                     crash_until=0.6, train_time=5.0, batch_size=24, lr=0.2, seed=2,
                     test_subset=300)


def test_training_keeps_going_while_most_peers_crash() -> None:
    sim = Simulation(SMALL.simulation())
    sim.run()
    rows = sim.modest_rounds
    last_crash = max(ev.at for ev in sim.config.timeline)
    assert last_crash == 120.0 and len(sim._alive_learners) == 12  # 60 % of 30 gone
    after = [r for r in rows if r["time"] > last_crash]
    assert len(after) >= 8  # rounds still complete with 12 of 30 peers left
    assert rows[-1]["acc"] > 0.8 and rows[-1]["acc"] > rows[0]["acc"] + 0.4
    assert all(r["aggregator"] in sim.alive for r in after)
    assert [r["round"] for r in rows] == list(range(1, len(rows) + 1))  # no round skipped
    assert sim.reject_counts().get("replay", 0) == 0


def test_same_seed_gives_the_same_run() -> None:
    cfg = replace(SMALL, duration=40.0).simulation()
    a = Simulation(cfg)
    a.run()
    b = Simulation(cfg)
    b.run()
    assert a.modest_rounds == b.modest_rounds and a.metrics == b.metrics
