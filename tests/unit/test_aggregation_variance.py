"""Variance-corrected averaging and the vc:<rule> composition."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rumor.aggregation import REGISTRY, LayerSlice, get, single_tensor_layout, variance_correct
from rumor.protocols.errors import AggregationError

VC = REGISTRY["variance-corrected"]

# weights w1 (2 entries), bias b (2 entries), weights w2 (2 entries)
LAYOUT = (
    LayerSlice("w1", 0, 2, (2,), True),
    LayerSlice("b", 2, 4, (2,), False),
    LayerSlice("w2", 4, 6, (2,), True),
)


def test_variance_corrected_matches_a_hand_computation() -> None:
    own = torch.tensor([0.0, 2.0, 1.0, 5.0, 0.0, 4.0], dtype=torch.float64)
    received = torch.tensor(
        [[2.0, 0.0, 3.0, 3.0, 1.0, 1.0], [0.0, 2.0, 5.0, 1.0, 0.0, 2.0]], dtype=torch.float64
    )
    out = VC(received, own=own, layout=LAYOUT)
    # w1: merged = 0.5*[0,2] + 0.5*[1,1] = [0.5,1.5]; tau² = (1+1+1)/3 = 1; Var = 0.25
    #     -> 1 + (merged - 1) * sqrt(1/0.25) = [0, 2]
    # b:  plain merged 0.5*[1,5] + 0.5*[4,2] = [2.5, 3.5]
    # w2: merged = 0.5*[0,4] + 0.5*[0.5,1.5] = [0.25,2.75]; tau² = (4+0+1)/3; Var = 1.5625
    s = math.sqrt((5 / 3) / 1.5625)
    expected = torch.tensor(
        [0.0, 2.0, 2.5, 3.5, 1.5 - 1.25 * s, 1.5 + 1.25 * s], dtype=torch.float64
    )
    torch.testing.assert_close(out, expected)


@st.composite
def models(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, tuple[LayerSlice, ...]]:
    sizes = draw(st.lists(st.integers(2, 20), min_size=1, max_size=5))
    flags = draw(st.lists(st.booleans(), min_size=len(sizes), max_size=len(sizes)))
    layout, start = [], 0
    for i, (size, flag) in enumerate(zip(sizes, flags, strict=True)):
        layout.append(LayerSlice(f"p{i}", start, start + size, (size,), flag))
        start += size
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    n = draw(st.integers(1, 8))
    received = torch.randn(n, start, generator=gen, dtype=torch.float64)
    received *= torch.rand(n, 1, generator=gen, dtype=torch.float64) + 0.1
    own = torch.randn(start, generator=gen, dtype=torch.float64)
    return received, own, tuple(layout)


@settings(max_examples=40, deadline=None)
@given(models())
def test_corrected_weight_slices_have_variance_tau2_and_biases_are_plain(
    case: tuple[torch.Tensor, torch.Tensor, tuple[LayerSlice, ...]],
) -> None:
    received, own, layout = case
    out = VC(received, own=own, layout=layout)
    plain = 0.5 * own + 0.5 * received.mean(0)
    everyone = torch.cat([own[None], received])
    for piece in layout:
        s = slice(piece.start, piece.stop)
        if piece.is_weight:
            tau2 = everyone[:, s].var(dim=1, correction=0).mean()
            torch.testing.assert_close(out[s].var(correction=0), tau2)
            torch.testing.assert_close(out[s].mean(), plain[s].mean())
        else:
            torch.testing.assert_close(out[s], plain[s])


def test_constant_merged_slice_is_left_as_is() -> None:
    own = torch.ones(4)
    received = torch.ones(3, 4)
    received[0] = torch.tensor([0.0, 2.0, 0.0, 2.0])
    received[1] = torch.tensor([2.0, 0.0, 2.0, 0.0])  # mean of received = ones
    out = VC(received, own=own)
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out, torch.ones(4))


def test_no_received_updates_returns_own() -> None:
    own = torch.randn(6)
    out = VC(torch.zeros(0, 6), own=own, layout=LAYOUT)
    torch.testing.assert_close(out, own)
    assert out.data_ptr() != own.data_ptr()


def test_without_own_the_received_mean_is_corrected() -> None:
    received = torch.randn(4, 10, dtype=torch.float64)
    out = VC(received)
    tau2 = received.var(dim=1, correction=0).mean()
    torch.testing.assert_close(out.var(correction=0), tau2)
    torch.testing.assert_close(out.mean(), received.mean())


def test_variance_correct_can_follow_any_rule_by_name() -> None:
    gen = torch.Generator().manual_seed(3)
    received = torch.randn(6, 30, generator=gen, dtype=torch.float64)
    own = torch.randn(30, generator=gen, dtype=torch.float64)
    rule = get("vc:trimmed-mean")
    out = rule(received, own=own, f=1, layout=single_tensor_layout(30))
    base = REGISTRY["trimmed-mean"](received, own=own, f=1)
    everyone = torch.cat([own[None], received])
    torch.testing.assert_close(out, variance_correct(base, everyone))
    torch.testing.assert_close(out.var(correction=0), everyone.var(dim=1, correction=0).mean())
    with pytest.raises(AggregationError):
        rule(received, own=own, f=4)  # the base rule still validates


def test_median_tau2_ignores_a_huge_input() -> None:
    gen = torch.Generator().manual_seed(4)
    received = torch.randn(6, 50, generator=gen, dtype=torch.float64)
    received[0] *= 1e6
    own = torch.randn(50, generator=gen, dtype=torch.float64)
    out = get("vc:median")(received, own=own, f=1, tau2_from="median")
    assert float(out.var(correction=0)) < 10.0


def test_bad_layouts_and_weights_are_rejected() -> None:
    with pytest.raises(AggregationError):
        VC(torch.randn(3, 4), own=torch.randn(4), layout=(LayerSlice("w", 0, 9, (9,), True),))
    with pytest.raises(AggregationError):
        VC(torch.randn(3, 4), own=torch.randn(4), own_weight=1.5)
    with pytest.raises(AggregationError):
        variance_correct(torch.randn(4), torch.randn(3, 5))
