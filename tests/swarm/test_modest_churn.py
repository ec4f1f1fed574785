"""MoDeST on the virtual clock: training keeps going while peers crash."""

from __future__ import annotations

from rumor.node.modest_sim import ModestConfig, ModestSim

SMALL = ModestConfig(peers=30, s=6, a=1, duration=240.0, crash_count=3, crash_every=20.0,
                     crash_until=0.6, train_time=5.0, batch_size=24, lr=0.2, seed=2)


def test_training_keeps_going_while_most_peers_crash() -> None:
    sim = ModestSim(SMALL)
    rows = sim.run()
    last_crash = max(ev.at for ev in sim.timeline)
    assert last_crash == 120.0 and len(sim.alive) == 12  # 60 % of 30 gone
    after = [r for r in rows if r.time > last_crash]
    assert len(after) >= 8  # rounds still complete with 12 of 30 peers left
    assert rows[-1].acc > 0.8 and rows[-1].acc > rows[0].acc + 0.4
    assert all(r.aggregator in sim.alive or r.time <= last_crash for r in after)
    assert [r.round for r in rows] == list(range(1, len(rows) + 1))  # no round skipped


def test_same_seed_gives_the_same_run() -> None:
    cfg = ModestConfig(**{**SMALL.__dict__, "duration": 40.0})
    a = ModestSim(cfg).run()
    b = ModestSim(cfg).run()
    assert a == b
