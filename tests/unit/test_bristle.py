"""Bristle's pure parts: prioritizer, scores, weights and the per-class merge."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rumor.aggregation.bristle import (
    BristleState,
    bristle_round,
    certainty,
    merge_per_class,
    per_class_f1,
    prioritize,
    score_delta,
    trust,
)
from rumor.protocols.errors import AggregationError


def test_prioritizer_takes_the_nearest_then_random_others() -> None:
    own = torch.zeros(3)
    cands = torch.tensor([[float(k), 0.0, 0.0] for k in range(40)])
    got = prioritize(own, cands, k_close=20, k_random=5, generator=np.random.default_rng(0))
    assert got[:20] == list(range(20))
    assert len(got) == 25 and len(set(got)) == 25
    assert all(k >= 20 for k in got[20:])
    again = prioritize(own, cands, k_close=20, k_random=5, generator=np.random.default_rng(0))
    assert again == got
    few = prioritize(own, cands[:7], generator=np.random.default_rng(0))
    assert few == list(range(7))  # a partial view smaller than 25: take all


def test_per_class_f1_from_a_confusion_matrix() -> None:
    m = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])  # class 2 absent and never predicted
    f1 = per_class_f1(m)
    assert f1[0] == pytest.approx(2 * 3 / (2 * 3 + 0 + 1))
    assert f1[1] == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))
    assert f1[2] == 0.0
    assert per_class_f1(np.stack([m, m])).shape == (2, 3)


def test_score_moves_up_by_delta_cubed_and_down_by_delta_to_the_fourth() -> None:
    own = np.array([0.5, 0.5, 0.0])
    better = np.array([0.7, 0.5, 0.9])
    fam = np.array([True, True, False])  # class 2 is not familiar: not compared
    assert score_delta(own, better, fam) == pytest.approx(2.0 ** 3.7)
    worse = np.array([0.2, 0.5, 0.9])
    assert score_delta(own, worse, fam) == pytest.approx(-(3.0 ** 4.2))


def test_trust_is_one_for_a_newcomer_zero_when_distrusted_and_at_most_six() -> None:
    assert trust(0.0) == pytest.approx(1.0)
    assert trust(-41.0) == 0.0
    assert trust(-40.0) > 0.0
    assert trust(1e6) == pytest.approx(6.0)
    assert trust(-1e6) == 0.0


def test_certainty_is_mean_minus_std_over_familiar_classes() -> None:
    f1 = np.array([0.8, 0.6, 0.0])
    assert certainty(f1, [True, True, False]) == pytest.approx(0.7 - 0.1)
    assert certainty(f1, [False, False, False]) == 0.0
    assert certainty(np.array([1.0, 0.0]), [True, True]) == 0.0


def test_class_columns_are_merged_separately() -> None:
    own = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    other = torch.tensor([[[3.0, 3.0], [5.0, 5.0]]])
    # own is good at class 0, useless at class 1; the other is good at both
    out = merge_per_class(own, other, np.array([1.0, 0.0]), np.array([[1.0, 1.0]]), [1.0])
    assert torch.allclose(out[0], torch.tensor([2.0, 2.0]))  # averaged
    assert torch.allclose(out[1], torch.tensor([5.0, 5.0]))  # taken over
    zero = merge_per_class(own, other, np.array([1.0, 0.0]), np.array([[1.0, 1.0]]), [0.0])
    assert torch.equal(zero, own)  # no weight: own columns stay


def test_a_poor_sender_is_distrusted_and_ignored() -> None:
    state = BristleState()
    own = torch.zeros(2, 3)
    layers = torch.stack([torch.ones(2, 3), 100 * torch.ones(2, 3)])
    f1_own = np.array([0.8, 0.0])
    f1 = np.array([[0.85, 0.9], [0.1, 0.1]])
    fam = np.array([True, False])
    out, w = bristle_round(state, own, layers, ["good", "bad"], f1_own, f1, fam)
    assert state.scores["bad"] == -1000.0  # clipped
    assert w[1] == 0.0 and w[0] > 0
    assert float(out.max()) <= 1.0
    saved = state.state_dict()
    other = BristleState()
    other.load_state_dict(saved)
    assert other.scores == state.scores
    assert math.isfinite(other.score_clip)


def test_shapes_are_checked() -> None:
    with pytest.raises(AggregationError):
        merge_per_class(torch.zeros(2, 3), torch.zeros(1, 3, 2), np.zeros(2),
                        np.zeros((1, 2)), [1.0])
    with pytest.raises(AggregationError):
        prioritize(torch.zeros(3), torch.zeros(4, 2), generator=np.random.default_rng(0))
