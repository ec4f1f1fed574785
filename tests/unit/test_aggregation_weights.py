"""Weighted mean, FoolsGold and Krum specifics."""

from __future__ import annotations

import pytest
import torch

from rumor.aggregation import REGISTRY
from rumor.aggregation.foolsgold import foolsgold_weights
from rumor.protocols.errors import AggregationError


def test_weighted_mean_normalises_weights_with_own_first() -> None:
    own = torch.tensor([0.0, 0.0])
    updates = torch.tensor([[4.0, 8.0], [8.0, 4.0]])
    out = REGISTRY["weighted-mean"](updates, own=own, weights=[2.0, 1.0, 1.0])
    torch.testing.assert_close(out, torch.tensor([3.0, 3.0]))
    out = REGISTRY["weighted-mean"](updates, weights=torch.tensor([0.0, 5.0]))
    torch.testing.assert_close(out, torch.tensor([8.0, 4.0]))


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ([1.0, -1.0, 1.0], "non-negative"),
        ([0.0, 0.0, 0.0], "positive sum"),
        ([1.0, 1.0], "shape"),
        ([1.0, float("nan"), 1.0], "finite"),
    ],
)
def test_weighted_mean_rejects_bad_weights(weights: list[float], match: str) -> None:
    with pytest.raises(AggregationError, match=match):
        REGISTRY["weighted-mean"](torch.randn(2, 3), own=torch.randn(3), weights=weights)


def test_foolsgold_gives_sybils_echoing_one_update_no_weight() -> None:
    gen = torch.Generator().manual_seed(0)
    honest = torch.randn(5, 200, generator=gen)
    sybil = torch.randn(200, generator=gen)
    sybils = sybil + 1e-3 * torch.randn(4, 200, generator=gen)
    w = foolsgold_weights(torch.cat([honest, sybils]))
    assert bool((w[:5] > 0.9).all())
    assert bool((w[5:] == 0).all())
    own = torch.randn(200, generator=gen)
    out = REGISTRY["foolsgold"](torch.cat([honest, sybils]), own=own)
    expected = (own + honest.sum(0)) / 6  # honest weights are 1 here
    torch.testing.assert_close(out, expected, rtol=1e-2, atol=1e-2)


def test_foolsgold_uses_separate_histories_when_given() -> None:
    models = torch.tensor([[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]])
    histories = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    out = REGISTRY["foolsgold"](models, own=torch.zeros(2), histories=histories)
    # senders 1 and 2 have identical histories -> weight 0; sender 0 keeps weight 1
    torch.testing.assert_close(out, torch.tensor([0.5, 0.5]))
    with pytest.raises(AggregationError, match="histories"):
        REGISTRY["foolsgold"](models, histories=histories[:2])


def test_krum_picks_the_vector_in_the_dense_cluster() -> None:
    updates = torch.tensor([[0.0], [0.1], [0.2], [0.15], [50.0], [-40.0]])
    out = REGISTRY["krum"](updates, f=1)
    torch.testing.assert_close(out, updates[1])  # score .0025 + .01 + .01 beats 0.15
    out = REGISTRY["multi-krum"](updates, f=1, m=4)
    torch.testing.assert_close(out, torch.tensor([0.1125]))
    with pytest.raises(AggregationError, match="m"):
        REGISTRY["multi-krum"](updates, f=1, m=0)
    with pytest.raises(AggregationError, match="neighbours"):
        REGISTRY["krum"](updates, f=1, neighbours="nope")
