"""Bristle through the one engine (Simulation: real Peers, envelopes, validator, merger)
on non-IID data with label-flipping peers. Validation data is each peer's own: "unseen"
classes are classes a peer never held a single labelled sample of."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from rumor.aggregation.bristle import Bristle
from rumor.node.bristle import PRESET, class_accuracy, method_config
from rumor.node.simulation import Simulation

BASE = replace(PRESET, peers=16, byzantine=3, topology="regular:12", rounds=4, seed=3)


def _run(method: str) -> Simulation:
    sim = Simulation(method_config(BASE, method, "label-flip"))
    assert len(sim.run()) == BASE.rounds  # every round completes
    return sim


def test_bristle_on_the_engine_distrusts_label_flippers_and_local_learns_no_unseen_class(
) -> None:
    local = class_accuracy(_run("local"))
    assert local.acc_unseen == 0.0  # alone, a peer never learns a class it lacks
    assert local.unseen_classes_mean > 3

    sim = _run("bristle")
    byz = {sim.ids[b].peer_id for b in sim.byzantine}
    honest_scores, byz_scores = [], []
    for p in sim.honest:
        defense = sim.peers[p].merger.defense
        assert isinstance(defense, Bristle)
        ev = defense.evaluator
        own = set(sim.indices[p].tolist())
        assert set(ev.indices.tolist()) <= own  # validation: the peer's own data only
        for sender, s in defense.state.scores.items():
            (byz_scores if sender in byz else honest_scores).append(s)
    assert byz_scores and honest_scores
    assert np.mean(byz_scores) < np.mean(honest_scores)
    bristle = class_accuracy(sim)
    assert bristle.acc_seen > 0.8  # own classes are kept under attack
