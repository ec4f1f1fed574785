"""Properties every aggregation rule must have, and the errors they must raise."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rumor.aggregation import REGISTRY, get, names
from rumor.aggregation.krum import krum_scores
from rumor.protocols.errors import AggregationError

ALL = names()
# (min_honest, min_extra): the rule rejects n <= min_honest * f + min_extra.
NEEDS = {
    "median": (2, 0),
    "trimmed-mean": (2, 0),
    "geometric-median": (2, 0),
    "centered-clipping": (2, 0),
    "krum": (2, 2),
    "multi-krum": (2, 2),
    "nna": (1, 0),
}
NEEDS_OWN = {"nna"}
COORDINATE_BOUNDED = ["median", "trimmed-mean", "krum", "multi-krum", "nna"]
FAST = settings(max_examples=25, deadline=None)


def max_f(name: str, n: int) -> int:
    """The largest f the rule accepts with n vectors."""
    k, extra = NEEDS.get(name, (0, 0))
    if k == 0:
        return 3
    return max(-1, (n - extra - 1) // k)


@st.composite
def cases(draw: st.DrawFn, name: str) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Random (updates, own, f) that ``name`` accepts; continuous values, so no ties."""
    use_own = name in NEEDS_OWN or draw(st.booleans())
    k, extra = NEEDS.get(name, (0, 0))
    min_n = extra + 1 if k else 1
    received = draw(st.integers(max(0, min_n - int(use_own)), 9))
    n = received + int(use_own)
    f = draw(st.integers(0, max(0, max_f(name, n))))
    d = draw(st.integers(1, 12))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    shift = draw(st.sampled_from([0.0, 5.0]))
    updates = torch.randn(received, d, generator=gen, dtype=torch.float64) * scale + shift
    own = torch.randn(d, generator=gen, dtype=torch.float64) * scale + shift if use_own else None
    return updates.to(dtype), None if own is None else own.to(dtype), f


def call(name: str, updates: torch.Tensor, own: torch.Tensor | None, f: int) -> torch.Tensor:
    return REGISTRY[name](updates, own=own, f=f)


def tol(x: torch.Tensor) -> dict[str, float]:
    return (
        {"rtol": 1e-4, "atol": 1e-4} if x.dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-9}
    )


@pytest.mark.parametrize("name", ALL)
@FAST
@given(data=st.data())
def test_rule_returns_shape_d_in_input_dtype_and_leaves_inputs_unchanged(
    name: str, data: st.DataObject
) -> None:
    updates, own, f = data.draw(cases(name))
    before_u = updates.clone()
    before_o = None if own is None else own.clone()
    out = call(name, updates, own, f)
    assert out.shape == (updates.shape[1],)
    assert out.dtype == updates.dtype
    assert bool(torch.isfinite(out).all())
    assert torch.equal(updates, before_u)
    if own is not None:
        assert before_o is not None and torch.equal(own, before_o)
    out.add_(1.0)  # the result is a fresh tensor, never a view of the inputs
    assert torch.equal(updates, before_u)


@pytest.mark.parametrize("name", ALL)
@FAST
@given(data=st.data())
def test_rule_is_invariant_to_the_order_of_updates(name: str, data: st.DataObject) -> None:
    updates, own, f = data.draw(cases(name))
    if name in ("krum", "multi-krum"):
        # mutual nearest neighbours tie exactly; ties go to the lower index by design
        scores = krum_scores(updates.double(), None if own is None else own.double(), f)
        scores = scores.sort().values
        cut = 1 if name == "krum" else len(scores) - f
        assume(cut >= len(scores) or scores[cut] - scores[cut - 1] > 1e-3 * scores[cut])
    perm = torch.randperm(updates.shape[0], generator=torch.Generator().manual_seed(1))
    a = call(name, updates, own, f)
    b = call(name, updates[perm], own, f)
    torch.testing.assert_close(a, b, **tol(a))


@pytest.mark.parametrize("name", ALL)
@FAST
@given(data=st.data())
def test_rule_returns_the_input_when_all_inputs_are_equal(name: str, data: st.DataObject) -> None:
    updates, own, f = data.draw(cases(name))
    v = updates[0] if updates.shape[0] else own
    assert v is not None
    same = v.expand_as(updates).clone()
    out = call(name, same, None if own is None else v.clone(), f)
    torch.testing.assert_close(out, v, **tol(v))


@st.composite
def attacked(
    draw: st.DrawFn, name: str
) -> tuple[torch.Tensor, torch.Tensor | None, int, torch.Tensor]:
    """Honest vectors in [-1, 1] plus exactly f huge ones; returns (updates, own, f, honest)."""
    use_own = name in NEEDS_OWN or draw(st.booleans())
    k, extra = NEEDS.get(name, (2, 0))
    f = draw(st.integers(1, 3))
    n = draw(st.integers(k * f + extra + 1, k * f + extra + 5))
    d = draw(st.integers(1, 8))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    honest = torch.rand(n - f, d, generator=gen, dtype=torch.float64) * 2 - 1
    huge = draw(st.sampled_from([1e4, 1e8, -1e8]))
    byz = huge * (1 + torch.rand(f, d, generator=gen, dtype=torch.float64))
    if draw(st.booleans()):
        byz = byz[:1].expand(f, d).clone()  # colluding: identical huge vectors
    rows = torch.cat([honest[1:] if use_own else honest, byz])
    rows = rows[torch.randperm(rows.shape[0], generator=gen)]
    return rows, honest[0].clone() if use_own else None, f, honest


@pytest.mark.parametrize("name", COORDINATE_BOUNDED)
@FAST
@given(data=st.data())
def test_robust_rule_stays_in_the_honest_coordinate_range_under_f_huge_inputs(
    name: str, data: st.DataObject
) -> None:
    updates, own, f, honest = data.draw(attacked(name))
    out = call(name, updates, own, f)
    assert bool((out >= honest.amin(0) - 1e-9).all() and (out <= honest.amax(0) + 1e-9).all())


@FAST
@given(data=st.data())
def test_geometric_median_stays_in_the_breakdown_ball_under_f_huge_inputs(
    data: st.DataObject,
) -> None:
    updates, own, f, honest = data.draw(attacked("geometric-median"))
    out = call("geometric-median", updates, own, f)
    n, h = updates.shape[0] + int(own is not None), honest.shape[0]
    y = honest.mean(0)
    r = float((honest - y).norm(dim=1).max())
    # exact geometric median: ||z - y|| <= 2hr / (2h - n) for any y and r covering H
    assert float((out - y).norm()) <= 2 * h * r / (2 * h - n) * 1.01 + 1e-6


@FAST
@given(data=st.data())
def test_centered_clipping_stays_near_the_honest_vectors_under_f_huge_inputs(
    data: st.DataObject,
) -> None:
    updates, own, f, honest = data.draw(attacked("centered-clipping"))
    out = call("centered-clipping", updates, own, f)
    diam = float((honest.amax(0) - honest.amin(0)).norm())
    # start in the honest box, then at most `iters` steps of length tau <= diam
    assert float((out - honest.mean(0)).norm()) <= 4 * diam + 1e-9


@pytest.mark.parametrize("name", ALL)
def test_empty_view_is_rejected(name: str) -> None:
    with pytest.raises(AggregationError):
        REGISTRY[name](torch.zeros(0, 4), own=None, f=0)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(4),
        torch.zeros(2, 3, 4),
        torch.zeros(3, 4, dtype=torch.int64),
        torch.zeros(3, 0),
        [[0.0, 1.0]],
    ],
    ids=["1-D", "3-D", "int", "d=0", "list"],
)
def test_malformed_updates_are_rejected(name: str, bad: Any) -> None:
    with pytest.raises(AggregationError):
        REGISTRY[name](bad, own=None, f=0)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "own", [torch.zeros(5), torch.zeros(1, 4), torch.zeros(4, dtype=torch.int32)]
)
def test_mismatched_own_is_rejected(name: str, own: torch.Tensor) -> None:
    with pytest.raises(AggregationError):
        REGISTRY[name](torch.zeros(3, 4), own=own, f=0)


@pytest.mark.parametrize("name", ALL)
def test_negative_f_is_rejected(name: str) -> None:
    with pytest.raises(AggregationError):
        REGISTRY[name](torch.zeros(3, 4), own=torch.zeros(4), f=-1)


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_too_many_byzantine_peers_are_rejected(name: str) -> None:
    k, extra = NEEDS[name]
    f = 2
    n = k * f + extra  # the largest n the rule must refuse
    with pytest.raises(AggregationError, match="needs n >"):
        REGISTRY[name](torch.randn(n - 1, 4), own=torch.randn(4), f=f)
    REGISTRY[name](torch.randn(n, 4), own=torch.randn(4), f=f)  # one more is enough


def test_nna_needs_own() -> None:
    with pytest.raises(AggregationError, match="own"):
        REGISTRY["nna"](torch.randn(5, 4), f=1)


def test_nna_with_exactly_f_updates_returns_own() -> None:
    own = torch.randn(4)
    torch.testing.assert_close(REGISTRY["nna"](torch.randn(2, 4) * 100, own=own, f=2), own)


def test_unknown_rule_names_the_choices() -> None:
    with pytest.raises(AggregationError, match="trimmed-mean"):
        get("trimed-mean")
    with pytest.raises(AggregationError, match="unknown"):
        get("vc:nope")


def test_every_rule_the_design_asks_for_is_registered() -> None:
    assert set(ALL) >= {
        "mean",
        "weighted-mean",
        "median",
        "trimmed-mean",
        "krum",
        "multi-krum",
        "geometric-median",
        "centered-clipping",
        "foolsgold",
        "nna",
        "variance-corrected",
    }
