"""SybilWall: histories, FoolsGold weights per sender, gossip forwarding, state."""

from __future__ import annotations

import math

import pytest
import torch

from rumor.aggregation import make_defense
from rumor.aggregation.sybilwall import (
    Forwarded,
    SybilWall,
    choose_forwards,
    forward_probability,
)
from rumor.protocols.errors import AggregationError

D = 64


def _honest(gen: torch.Generator, k: int) -> torch.Tensor:
    """k dissimilar directions (honest peers trained on different data)."""
    return torch.randn(k, D, generator=gen)


def _round(sw: SybilWall, own: torch.Tensor, honest: torch.Tensor, sybil: torch.Tensor,
           n_sybils: int, gen: torch.Generator, r: int) -> torch.Tensor:
    sy = sybil + 1e-3 * torch.randn(n_sybils, D, generator=gen)
    updates = torch.cat([own + honest, own + sy])
    senders = [f"h{k}" for k in range(len(honest))] + [f"s{k}" for k in range(n_sybils)]
    return sw.merge(own, updates, senders, round=r, f=0)


def test_sybils_with_near_identical_histories_get_weight_zero_honest_keep_weight() -> None:
    gen = torch.Generator().manual_seed(0)
    sw = SybilWall()
    own = torch.zeros(D)
    sybil_dir = torch.randn(D, generator=gen)
    for r in range(5):
        _round(sw, own, _honest(gen, 4), sybil_dir, 3, gen, r)
    w = sw.last_weights
    assert all(w[f"s{k}"] < 1e-6 for k in range(3))
    assert all(w[f"h{k}"] > 0.2 for k in range(4))


def test_merge_is_own_weight_one_weighted_average_and_inputs_untouched() -> None:
    gen = torch.Generator().manual_seed(1)
    sw = SybilWall()
    own = torch.randn(D, generator=gen)
    updates = own + torch.randn(3, D, generator=gen)
    before_own, before_upd = own.clone(), updates.clone()
    out = sw.merge(own, updates, ["a", "b", "c"], round=0, f=0)
    w = torch.tensor([sw.last_weights[s] for s in "abc"], dtype=torch.float64)
    expect = (own.double() + (w[:, None] * updates.double()).sum(0)) / (1 + w.sum())
    torch.testing.assert_close(out, expect.float())
    assert torch.equal(own, before_own) and torch.equal(updates, before_upd)


def test_history_is_the_sum_of_updates_relative_to_own() -> None:
    sw = SybilWall(gossip=False)
    own1, own2 = torch.zeros(D), torch.ones(D)
    x1, x2 = torch.full((1, D), 3.0), torch.full((1, D), 5.0)
    sw.merge(own1, x1, ["a"], round=0, f=0)
    sw.merge(own2, x2, ["a"], round=1, f=0)
    torch.testing.assert_close(sw.histories["a"], torch.full((D,), 3.0 + 4.0))


def test_no_updates_returns_own_and_no_senders_mismatch_is_rejected() -> None:
    sw = SybilWall()
    own = torch.randn(D)
    assert torch.equal(sw.merge(own, torch.zeros(0, D), [], round=0, f=0), own)
    with pytest.raises(AggregationError):
        sw.merge(own, torch.zeros(2, D), ["a"], round=0, f=0)


def test_forward_probability_decays_with_hops() -> None:
    assert forward_probability(1) == 1.0
    assert forward_probability(3) == pytest.approx(math.exp(-1.6))
    gen = torch.Generator().manual_seed(3)
    hops = [1] * 200 + [2] * 2000 + [5] * 10
    pick = set(choose_forwards(hops, gen, max_hops=4))
    assert set(range(200)) <= pick  # hops 1: always
    frac2 = len([k for k in pick if 200 <= k < 2200]) / 2000
    assert frac2 == pytest.approx(math.exp(-0.8), abs=0.04)
    assert not pick & set(range(2200, 2210))  # beyond max_hops: never
    again = choose_forwards(hops, torch.Generator().manual_seed(3), max_hops=4)
    assert sorted(pick) == again  # seeded


def test_forwarded_vectors_feed_histories_but_are_not_merged() -> None:
    gen = torch.Generator().manual_seed(4)
    a, b = SybilWall(seed=1), SybilWall(seed=2)
    own = torch.zeros(D)
    a.merge(own, torch.randn(2, D, generator=gen), ["x", "y"], round=0, f=0)
    out = a.take_outbox()
    assert {it.origin for it in out} == {"x", "y"} and all(it.hops == 2 for it in out)
    assert a.take_outbox() == []
    b.receive([*out, Forwarded("b-itself", 0, torch.zeros(D), 2)], me="b-itself")
    upd = torch.randn(1, D, generator=gen)
    merged = b.merge(own, upd, ["z"], round=1, f=0)
    assert set(b.histories) == {"x", "y", "z"}
    w = b.last_weights["z"]
    torch.testing.assert_close(merged, (own + w * upd[0]) / (1 + w))
    # the same (origin, round) arriving again is counted once
    hx = b.histories["x"].clone()
    b.receive(out)
    b.merge(own, upd, ["z"], round=2, f=0)
    assert torch.equal(b.histories["x"], hx)


def test_state_round_trip_gives_identical_future_merges() -> None:
    gen = torch.Generator().manual_seed(5)
    sw = make_defense("sybilwall", seed=9)
    assert isinstance(sw, SybilWall)
    own = torch.randn(D, generator=gen)
    for r in range(3):
        sw.merge(own, own + torch.randn(4, D, generator=gen), list("abcd"), round=r, f=0)
        sw.receive([Forwarded("far", r, torch.randn(D, generator=gen), 2)])
    clone = make_defense("sybilwall")
    clone.load_state_dict(sw.state_dict())
    upd = own + torch.randn(4, D, generator=gen)
    x1 = sw.merge(own, upd, list("abcd"), round=3, f=0)
    x2 = clone.merge(own, upd, list("abcd"), round=3, f=0)
    assert torch.equal(x1, x2)
    assert isinstance(clone, SybilWall)
    o1, o2 = sw.take_outbox(), clone.take_outbox()
    assert [(i.origin, i.round, i.hops) for i in o1] == [(i.origin, i.round, i.hops) for i in o2]
