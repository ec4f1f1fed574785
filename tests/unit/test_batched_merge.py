"""Batched linear merges (rumor.aggregation.batched, RuleMerger.merge_batch, MergeBatch)
give what merging one peer at a time gives, up to float summation order."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumor.aggregation.batched import merge_many, supports
from rumor.aggregation.layout import LayerSlice
from rumor.node.engine.merger import RuleMerger, Workspace
from rumor.protocols.events import Merge, ReceivedUpdate

LAYOUT = (LayerSlice("w1", 0, 12, (3, 4), True), LayerSlice("b1", 12, 15, (3,), False),
          LayerSlice("w2", 15, 24, (3, 3), True), LayerSlice("one", 24, 25, (1,), True))
D = 25


@st.composite
def swarms(draw: Any) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    s = draw(st.integers(1, 8))
    g = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1e-3, 1.0, 50.0]))
    pool = (rng.standard_normal((s, D)) * scale).astype(np.float32)
    own = (rng.standard_normal((g, D)) * scale).astype(np.float32)
    if draw(st.booleans()):  # a constant weight slice: left as it is
        pool[:, 0:12] = 0.25
        own[:, 0:12] = 0.25
    members = [sorted(set(draw(st.lists(st.integers(0, s - 1), max_size=s))))
               for _ in range(g)]
    return own, pool, members


def _merge_one(name: str, own: np.ndarray, pool: np.ndarray, members: list[int],
               step: float = 1.0, final: bool = False) -> tuple[np.ndarray, bool]:
    merger = RuleMerger(name, f=0, layout=LAYOUT, max_abs=1e6)
    cmd = Merge(3, tuple(ReceivedUpdate(f"p{j}", 3, pool[j], 10) for j in members),
                step=step, final=final)
    out = merger.merge(own, cmd)
    return np.asarray(out.vector), out.rejected


@pytest.mark.parametrize("name", ["mean", "variance-corrected", "vc:mean"])
@settings(max_examples=60, deadline=None)
@given(case=swarms())
def test_batched_linear_rules_equal_one_merge_at_a_time(
        name: str, case: tuple[np.ndarray, np.ndarray, list[list[int]]]) -> None:
    own, pool, members = case
    import torch

    got = merge_many(name, torch.from_numpy(own), torch.from_numpy(pool), members,
                     layout=LAYOUT).numpy()
    for g, m in enumerate(members):
        want, _ = _merge_one(name, own[g], pool, m)
        np.testing.assert_allclose(got[g], want, rtol=1e-4, atol=1e-5 * max(
            1.0, float(np.abs(want).max())))


@settings(max_examples=40, deadline=None)
@given(case=swarms(), step=st.sampled_from([1.0, 0.3]), final=st.booleans())
def test_merge_batch_matches_merge_with_shared_vectors_steps_and_final_merges(
        case: tuple[np.ndarray, np.ndarray, list[list[int]]], step: float,
        final: bool) -> None:
    """Receivers of one broadcast hold distinct array objects over the same memory."""
    own, pool, members = case

    merger = RuleMerger("variance-corrected", f=0, layout=LAYOUT, max_abs=1e6)
    cmds = [Merge(3, tuple(ReceivedUpdate(f"p{j}", 3, pool[j][:], 10) for j in m),
                  step=step, final=final) for m in members]
    key = merger.batch_key(cmds[0])
    assert key is not None
    outcomes = RuleMerger.merge_batch(key, list(own.copy()), cmds, Workspace())
    for g, cmd in enumerate(cmds):
        want = merger.merge(own[g], cmd)
        assert outcomes[g].rejected == want.rejected
        np.testing.assert_allclose(outcomes[g].vector, want.vector, rtol=1e-4,
                                   atol=1e-5 * max(1.0, float(np.abs(want.vector).max())))


def test_a_poisoned_merge_keeps_the_own_model_in_a_batch_too() -> None:

    merger = RuleMerger("mean", f=0, layout=LAYOUT, max_abs=10.0)
    own = np.ones((2, D), dtype=np.float32)
    huge = np.full(D, 1e4, dtype=np.float32)
    cmds = [Merge(1, (ReceivedUpdate("a", 1, huge, 1),)),
            Merge(1, (ReceivedUpdate("b", 1, np.zeros(D, np.float32), 1),))]
    key = merger.batch_key(cmds[0])
    assert key is not None
    out = RuleMerger.merge_batch(key, list(own.copy()), cmds)
    assert out[0].rejected and out[0].events[0][0] == "poisoned_merge"
    np.testing.assert_array_equal(out[0].vector, own[0])
    assert not out[1].rejected
    np.testing.assert_allclose(out[1].vector, 0.5)
    assert merger.merge(own[0], cmds[0]).rejected  # as one merge at a time


def test_only_linear_rules_without_state_are_batched() -> None:
    assert supports("mean", {}) and supports("variance-corrected", {"own_weight": 0.3})
    assert not supports("variance-corrected", {"tau2_from": "median"})
    assert not supports("median", {}) and not supports("trimmed-mean", {})
    cmd = Merge(0, ())
    assert RuleMerger("trimmed-mean", f=1, layout=LAYOUT).batch_key(cmd) is None
    assert RuleMerger("sybilwall", f=0, layout=LAYOUT).batch_key(cmd) is None
    assert RuleMerger("fedavg", f=0, layout=LAYOUT).batch_key(cmd) is None
    assert RuleMerger("median", f=0, layout=LAYOUT).batch_key(
        Merge(0, (), final=True)) is not None  # a final merge is the mean, any rule
    assert RuleMerger("mean", f=0, layout=LAYOUT).batch_key(
        Merge(0, (), catch_up_to=5)) is None


@pytest.mark.parametrize("constant_rows", [(), (0,), (0, 2)])
def test_rescale_hits_the_target_variance_and_leaves_constant_rows_exactly_alone(
        constant_rows: tuple[int, ...]) -> None:
    """The fused path (every row rescaled) and the row-indexed one (some rows kept)."""
    import torch

    from rumor.aggregation.batched import _rescale

    x = torch.from_numpy(np.random.default_rng(3).standard_normal((3, 40)).astype(np.float32))
    for r in constant_rows:
        x[r] = 0.5
    before = x.clone()
    tau2 = torch.tensor([4.0, 0.25, 9.0], dtype=torch.float64)
    _rescale(x, tau2)
    for r in range(3):
        if r in constant_rows:
            assert torch.equal(x[r], before[r])
        else:
            assert float(x[r].var(unbiased=False)) == pytest.approx(float(tau2[r]), rel=1e-4)
            assert float(x[r].mean()) == pytest.approx(float(before[r].mean()), abs=1e-5)
