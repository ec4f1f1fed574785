"""The simulator's fast path (shared decoding, batched linear merges, accumulated round
metrics, bounded memory) against the reference per-message path, on small swarms with
every feature.

Batched merges (MergeBatch) sum in another order than one merge at a time, so rounds
whose rule is linear (mean, variance-corrected, FedAvg's final merge...) agree to float
rounding, not bit for bit: counts must be equal, floats close (an accuracy may move by
a prediction or two that sit on a decision boundary)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rumor.node.engine import SharedDecoder
from rumor.node.results import RoundMetrics, write_metrics_csv
from rumor.node.simulation import Simulation, SimulationConfig
from rumor.topology import AddPeers, Heal, Partition, RemovePeers

BASE: dict[str, Any] = dict(peers=12, rounds=5, topology="regular:4", lr=0.2)

CASES = {
    "mean": dict(aggregator="mean"),
    "variance-corrected+partition": dict(
        aggregator="variance-corrected",
        timeline=(Partition(1.5, (tuple(range(6)), tuple(range(6, 12)))), Heal(3.2))),
    "trimmed-mean+attack+churn": dict(
        aggregator="trimmed-mean", f=1, attack="sign-flip:scale=4", byzantine=2,
        timeline=(RemovePeers(1.5, (3, 4)), AddPeers(3.5, (3, 4)))),
    "sybilwall+sybils": dict(aggregator="sybilwall", attack="label-flip:pairs=0-1",
                             byzantine=1, sybils=2),
    "fedavg": dict(aggregator="fedavg", peers=8),
}


def _assert_close(rows: list[RoundMetrics], ref: list[RoundMetrics]) -> None:
    assert len(rows) == len(ref)
    for a, b in zip(rows, ref, strict=True):
        for name in ("round", "time", "messages", "bytes_sent", "rejects", "timeouts",
                     "peers_alive"):
            assert getattr(a, name) == getattr(b, name), (a.round, name)
        for name in ("acc_mean", "acc_min", "acc_max", "acc_std"):
            assert getattr(a, name) == pytest.approx(getattr(b, name), abs=6e-3), (a.round, name)
        assert a.consensus_distance == pytest.approx(b.consensus_distance, rel=1e-4, abs=1e-9)


def _run(fast: bool, **kw: Any) -> tuple[Simulation, list[Any]]:
    sim = Simulation(SimulationConfig(**{**BASE, **kw}), fast=fast)
    return sim, sim.run()


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_path_agrees_with_the_reference_path(case: str) -> None:
    fast, rows = _run(True, **CASES[case])
    ref, ref_rows = _run(False, **CASES[case])
    assert len(rows) == BASE["rounds"]
    _assert_close(rows, ref_rows)
    assert fast.reject_counts() == ref.reject_counts()
    assert fast.protocol_events() == ref.protocol_events()
    final, ref_final = fast.final_evaluation(), ref.final_evaluation()
    assert final.keys() == ref_final.keys() and final["peers"] == ref_final["peers"]
    for k in final:
        assert final[k] == pytest.approx(ref_final[k], abs=6e-3), k
    success, ref_success = fast.attack_success(), ref.attack_success()
    assert (success is None) == (ref_success is None)
    if success is not None:
        assert success == pytest.approx(ref_success, abs=6e-3)
    batch = fast.merge_batch
    assert batch is not None and ref.merge_batch is None
    if case in ("mean", "variance-corrected+partition"):  # every merge batched
        assert batch.merged == BASE["rounds"] * 12 and batch.flushes >= BASE["rounds"]
    if case == "sybilwall+sybils":  # a defense merges alone
        assert batch.merged == 0
    # each broadcast was decoded once, not once per receiver (FedAvg clients send to
    # the server alone, only its GLOBAL is shared; PULLs go to one peer each)
    dec = fast.decode
    assert isinstance(dec, SharedDecoder) and dec.hits > 0
    if case == "mean":  # 12 x 4 PULLs, then 12 UPDATEs a round, each to 4 neighbours
        assert (dec.misses, dec.hits) == (48 + 12 * 5, 12 * 3 * 5)


def test_fast_path_with_every_feature_gives_byte_identical_metrics(tmp_path: Path) -> None:
    files = []
    for k in range(2):
        _, rows = _run(True, **CASES["trimmed-mean+attack+churn"])
        write_metrics_csv(tmp_path / f"m{k}.csv", rows)
        files.append((tmp_path / f"m{k}.csv").read_bytes())
    assert files[0] == files[1]


def test_received_bytes_are_kept_only_where_they_can_be_forwarded() -> None:
    sim, _ = _run(True, aggregator="mean", rounds=8)
    assert all(not p._raw for p in sim.peers)  # mean never forwards
    sim, _ = _run(True, aggregator="sybilwall", rounds=8)
    lag = max(sim.peers[0].config.validation.max_lag, sim.peers[0].config.relay_keep_rounds)
    for p in sim.peers:  # only rounds that can still be forwarded, not the whole run
        assert p._raw and min(r for _, r in p._raw) >= p.round - lag - 1


def test_large_swarms_evaluate_a_seeded_sample_and_everyone_at_the_end() -> None:
    cfg = SimulationConfig(peers=240, rounds=1, topology="regular:4", test_subset=200)
    sim = Simulation(cfg)
    assert len(sim.eval_rows) == 200 and sim.eval_rows == Simulation(cfg).eval_rows
    rows = sim.run()
    final = sim.final_evaluation()
    assert final["peers"] == 240 and rows[-1].peers_alive == 240
    assert 0.0 <= final["acc_min"] <= final["acc_mean"] <= final["acc_max"] <= 1.0
