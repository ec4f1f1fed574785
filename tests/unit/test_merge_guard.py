"""Poison through overflow (issue 9, class 4): the merger never adopts a non-finite model.

Two finite float32 updates of 3.4e38 overflow to Inf in a mean and to NaN after variance
correction. Validation lets them through (they are finite), so the guard is the merger's:
for every registered rule, every stateful defense and every ``vc:<rule>``, and for any
finite updates (huge ones included), ``RuleMerger.merge`` returns a finite model, and a
result that is non-finite or larger than ``max_abs`` is not adopted (the previous model
comes back, ``rejected`` is set and ``poisoned_merge`` is logged).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rumor import aggregation
from rumor.aggregation.layout import LayerSlice, Layout
from rumor.node.engine.merger import RuleMerger
from rumor.protocols.events import Merge, ReceivedUpdate

D = 8
LAYOUT: Layout = (
    LayerSlice("w", 0, 6, (2, 3), True),
    LayerSlice("b", 6, 8, (2,), False),
)
MAX_ABS = 1e6
F32_MAX = float(np.finfo(np.float32).max)

RULES = sorted(aggregation.names())
EVERY_RULE = [*RULES, *sorted(aggregation.defense_names()), *(f"vc:{r}" for r in RULES)]

#: finite float32 values, with the overflow-prone extremes drawn often
_HUGE = st.sampled_from([F32_MAX, -F32_MAX, 3.4e38, -3.4e38, 1e38, 1e20, 2e6, -2e6])
_VALUES = st.one_of(
    _HUGE,
    st.floats(-1e3, 1e3, width=32),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
)
_OWN = hnp.arrays(np.float32, D, elements=st.floats(-10.0, 10.0, width=32))
_UPDATE = hnp.arrays(np.float32, D, elements=_VALUES)


def _merge(name: str, f: int, own: np.ndarray, updates: list[np.ndarray],
           merger: RuleMerger | None = None, round_: int = 0):
    m = merger or RuleMerger(name, f=f, layout=LAYOUT, max_abs=MAX_ABS)
    ups = tuple(ReceivedUpdate(f"p{i}", round_, u, 10 + i) for i, u in enumerate(updates))
    return m.merge(own, Merge(round_, ups, False))


def _check(outcome, own: np.ndarray) -> None:
    vec = np.asarray(outcome.vector)
    assert vec.shape == own.shape and vec.dtype == np.float32
    assert np.isfinite(vec).all(), "the merger returned a non-finite model"
    names = [e for e, _ in outcome.events]
    if outcome.rejected:
        np.testing.assert_array_equal(vec, own)  # the previous model is kept
        assert "poisoned_merge" in names or "merge_failed" in names
    else:
        assert float(np.abs(vec).max()) <= MAX_ABS
        assert "poisoned_merge" not in names


@pytest.mark.parametrize("name", EVERY_RULE)
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(own=_OWN, updates=st.lists(_UPDATE, min_size=0, max_size=6), f=st.integers(0, 2))
def test_merger_never_returns_or_adopts_a_non_finite_model(
    name: str, own: np.ndarray, updates: list[np.ndarray], f: int
) -> None:
    _check(_merge(name, f, own, updates), own)


@pytest.mark.parametrize("name", EVERY_RULE)
def test_a_stateful_merger_stays_finite_over_rounds_of_huge_updates(name: str) -> None:
    """State carried between merges (momentum, similarity history) cannot smuggle the
    overflow into a later round."""
    rng = np.random.default_rng(7)
    merger = RuleMerger(name, f=1, layout=LAYOUT, max_abs=MAX_ABS)
    own = rng.normal(size=D).astype(np.float32)
    for r in range(6):
        huge = [np.full(D, 3.4e38 * (-1) ** i, np.float32) for i in range(2)]
        honest = [own + rng.normal(scale=0.1, size=D).astype(np.float32) for _ in range(3)]
        out = _merge(name, 1, own, (huge + honest) if r % 2 == 0 else honest, merger, r)
        _check(out, own)
        own = np.asarray(out.vector)


def test_the_overflow_is_real_without_the_guard() -> None:
    """The threat the guard answers: the bare rule turns two finite updates into NaN."""
    own = torch.zeros(D)
    stack = torch.full((2, D), 3.4e38)
    raw = aggregation.get("variance-corrected")(stack, own=own, f=0, layout=LAYOUT)
    assert not bool(torch.isfinite(raw).all())
    out = _merge("variance-corrected", 0, own.numpy(), [s.numpy() for s in stack])
    assert out.rejected and ("poisoned_merge", {"round": 0}) in out.events
    np.testing.assert_array_equal(out.vector, own.numpy())


def test_a_result_above_max_abs_is_not_adopted_but_one_below_is() -> None:
    own = np.zeros(D, np.float32)
    big = [np.full(D, 4e6, np.float32)] * 2
    assert _merge("mean", 0, own, big).rejected
    small = [np.full(D, 3e5, np.float32)] * 2
    out = _merge("mean", 0, own, small)
    assert not out.rejected and float(np.abs(out.vector).max()) == pytest.approx(2e5)
