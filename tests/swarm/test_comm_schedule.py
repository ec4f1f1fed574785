"""Round plans in a swarm: silent rounds, gossip steps, the final merge and SAM, in the
simulator and in the real runtime over MemoryTransport (the same Peer)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from rumor.node.assembly import NodeConfig
from rumor.node.results import final_merge_report
from rumor.node.simulation import Simulation, SimulationConfig
from rumor.node.transport.memory import MemoryHub
from rumor.protocols.errors import ConfigError
from tests.helpers import memory_mesh

SMALL = SimulationConfig(peers=16, rounds=4, topology="regular:4", test_subset=100)


def test_final_merge_brings_the_swarm_to_consensus() -> None:
    sim = Simulation(dataclasses.replace(SMALL, final_merge=25))
    rows = sim.run()
    assert len(rows) == 4 + 25 and sim.completion()["complete"]
    report = final_merge_report(rows, 25)
    assert report is not None
    # gossip averaging on a connected 4-regular graph contracts the disagreement
    # geometrically: 25 rounds take it below a thousandth of where training left it
    assert report["consensus_after"] < 1e-3 * report["consensus_before"]
    assert report["consensus_after"] < 1e-2
    assert rows[-1].acc_max - rows[-1].acc_min <= 0.011  # (nearly) one model everywhere
    # the final rounds exchange models but never train: the mean of all models is
    # what it was at the end of training (plain mean on a regular graph keeps it)
    assert all(r.messages == 16 * 4 for r in rows[-25:])


def test_final_merge_with_compressed_gossip_sends_full_models_and_reaches_consensus(
        ) -> None:
    """Compressed differences with gamma 0.3 diverged in the final merge (consensus
    distance 4.2 -> 77); final-merge rounds now send exact float32 keyframes."""
    sim = Simulation(dataclasses.replace(SMALL, final_merge=25,
                                         compress="topk:ratio=0.05"))
    rows = sim.run()
    assert len(rows) == 4 + 25 and sim.completion()["complete"]
    report = final_merge_report(rows, 25)
    assert report is not None
    assert report["consensus_after"] < 1e-3 * report["consensus_before"]
    assert rows[-1].acc_max - rows[-1].acc_min <= 0.011
    plain = Simulation(dataclasses.replace(SMALL, final_merge=1)).run()
    # a training round's top-5 % differences are a fraction of a full model; a final
    # round costs what an uncompressed round costs (the float32 model, a bit of header)
    assert rows[2].bytes_sent < 0.2 * plain[2].bytes_sent
    assert 0.95 < rows[-1].bytes_sent / plain[-1].bytes_sent < 1.1


def test_silent_rounds_send_nothing_and_late_spends_the_same_budget() -> None:
    runs = {}
    for spec in ("every:2", "late:0.5:2", "constant"):
        rows = Simulation(dataclasses.replace(SMALL, rounds=6, schedule=spec)).run()
        assert len(rows) == 6
        runs[spec] = rows
    talk = {s: [r.messages > 0 for r in rows] for s, rows in runs.items()}
    assert talk["every:2"][1:] == [True, False, True, False, True]
    assert talk["late:0.5:2"][1:] == [False, False, True, True, True]
    assert all(talk["constant"])
    # round 1 also carries the start-up PULLs; beyond it, equal budgets cost equal bytes
    assert sum(r.bytes_sent for r in runs["every:2"]) == sum(
        r.bytes_sent for r in runs["late:0.5:2"])
    assert sum(r.bytes_sent for r in runs["constant"]) > sum(
        r.bytes_sent for r in runs["every:2"])


def test_gossip_steps_mix_q_times_per_training_round() -> None:
    one = Simulation(dataclasses.replace(SMALL, rounds=3)).run()
    mgs = Simulation(dataclasses.replace(SMALL, rounds=3, gossip_steps=3)).run()
    assert len(mgs) == 9
    assert mgs[2].consensus_distance < one[0].consensus_distance  # more mixing, closer
    assert all(r.messages >= 16 * 4 for r in mgs)


def test_sam_trains_in_the_simulator_and_differs_from_sgd() -> None:
    sgd = Simulation(dataclasses.replace(SMALL, rounds=3)).run()
    sam = Simulation(dataclasses.replace(SMALL, rounds=3, optimizer="sam:rho=0.05")).run()
    assert sam[-1].acc_mean > 0.3
    assert sam[-1].consensus_distance != sgd[-1].consensus_distance


@pytest.mark.parametrize("bad", [{"schedule": "late:0.5", "aggregator": "fedavg"},
                                 {"final_merge": 3, "mode": "modest",
                                  "topology": "complete"},
                                 {"gossip_steps": 0}, {"schedule": "every:0"},
                                 {"optimizer": "adam"}])
def test_plans_the_simulator_cannot_run_are_config_errors(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        dataclasses.replace(SMALL, **bad).validate()  # type: ignore[arg-type]


@pytest.mark.timeout(120)
async def test_real_runtime_runs_the_plan_and_ends_at_the_global_average(
        tmp_path: Path) -> None:
    cfg = NodeConfig(swarm="plan", rounds=4, round_timeout=5.0, shards=4, aggregator="mean",
                     min_updates=3,
                     schedule="every:2", final_merge=3, optimizer="sam:rho=0.05")
    rts = await memory_mesh(MemoryHub(), 4, tmp_path, cfg)
    await asyncio.wait_for(asyncio.gather(*(rt.run(s) for rt, s, _ in rts)), 90)
    for rt, _, _ in rts:
        hist = rt.history
        assert rt.finished and len(hist) == 4 + 3
        assert [h["received"] for h in hist[:4]] == [0, 3, 0, 3]  # silent rounds: local
        assert [h["final_merge"] for h in hist] == [False] * 4 + [True] * 3
    models = np.stack([rt.learner.params.numpy() for rt, _, _ in rts])
    spread = float(np.sqrt(((models - models.mean(0)) ** 2).sum(1).mean()))
    assert spread < 1e-5  # everyone hears everyone: one averaging round is the mean


def test_study_results_reload_from_their_files_and_give_the_merge_curve(
        tmp_path: Path) -> None:
    from rumor.node.comm_study import StudyRun, load_result, run_study
    from rumor.scripts.reporting import write_run

    cfg = SimulationConfig(peers=6, rounds=2, topology="ring", test_subset=20, final_merge=3,
                           init="same", aggregator="mean")
    run = StudyRun("final-merge", "tiny", cfg)
    (first,) = run_study([run])
    assert first.sim is not None
    write_run(tmp_path / run.name, first.sim, first.rows)
    (again,) = run_study([run], reuse=tmp_path)
    assert again.sim is None and len(again.rows) == len(first.rows) == 5
    for a, b in zip(again.rows, first.rows, strict=True):  # metrics.csv keeps 6 decimals
        assert (a.round, a.messages, a.bytes_sent) == (b.round, b.messages, b.bytes_sent)
        assert a.consensus_distance == pytest.approx(b.consensus_distance, abs=1e-6)
    curve = first.merge_curve((0, 1, 2, 3, 30))
    assert [t for t, *_ in curve] == [0, 1, 2, 3]
    assert curve[0][2] == first.rows[1].consensus_distance  # t = 0: the end of training
    assert curve[3][2] < curve[0][2] and curve[3][3] > 0
    other = StudyRun("final-merge", "tiny", dataclasses.replace(cfg, seed=2))
    assert load_result(other, tmp_path / run.name) is None  # another config: run it
