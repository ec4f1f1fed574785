"""SharedDecoder has codec.decode's contract; RoundStats matches the stacked formulas."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rumor.node.engine import SharedDecoder
from rumor.node.round_stats import RoundStats
from rumor.protocols import codec
from rumor.protocols.errors import RejectedMessage
from rumor.protocols.identity import Identity
from rumor.protocols.messages import Kind, ModelBody, TensorPayload

ME = Identity.from_seed(b"\x01" * 32)


def _update(vec: np.ndarray, round_: int = 3) -> bytes:
    return codec.encode(Kind.UPDATE, swarm="s", sender=ME, round_=round_, seq=1, sent_at=0.0,
                        body=ModelBody(TensorPayload.from_array(vec), 5), sign=False)


def test_one_decode_per_object_and_on_header_on_every_call() -> None:
    raw = _update(np.arange(4, dtype=np.float32))
    dec = SharedDecoder()
    seen: list[tuple[Kind, bytes]] = []
    envs = [dec(raw, swarm="s", verify_signature=False,
                on_header=lambda k, s: seen.append((k, s))) for _ in range(3)]
    assert envs[0] == codec.decode(raw, swarm="s", verify_signature=False)
    assert envs[0] is envs[1] is envs[2]
    assert (dec.hits, dec.misses) == (2, 1) and len(seen) == 3


def test_on_header_still_rejects_on_a_hit_and_arguments_are_part_of_the_key() -> None:
    raw = _update(np.zeros(3, dtype=np.float32))
    dec = SharedDecoder()
    dec(raw, swarm="s", verify_signature=False)

    def flood(kind: Kind, sender: bytes) -> None:
        raise RejectedMessage("flood", "rate limit exceeded")

    with pytest.raises(RejectedMessage, match="flood"):
        dec(raw, swarm="s", verify_signature=False, on_header=flood)
    with pytest.raises(RejectedMessage) as exc:
        dec(raw, swarm="other", verify_signature=False)
    assert exc.value.reason == "wrong_swarm"
    with pytest.raises(RejectedMessage) as exc:
        dec(b"\x00garbage", swarm="s")
    assert exc.value.reason == "malformed"


def test_capacity_bounds_the_memo() -> None:
    dec = SharedDecoder(capacity=4)
    raws = [_update(np.full(2, k, dtype=np.float32), round_=k) for k in range(10)]
    for raw in raws:
        dec(raw, swarm="s", verify_signature=False)
    assert len(dec._memo) == 4
    assert dec(raws[0], swarm="s", verify_signature=False).round == 0  # a miss decodes again
    assert dec.misses == 11


def test_finiteness_is_scanned_once_per_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    scans: list[int] = []
    real = np.isfinite

    def counting(a: Any) -> Any:
        scans.append(1)
        return real(a)

    monkeypatch.setattr(np, "isfinite", counting)
    bad = TensorPayload.from_array(np.array([1.0, np.nan], dtype=np.float32))
    assert bad.all_finite is False and bad.all_finite is False
    assert len(scans) == 1  # the second read is the cached answer
    assert TensorPayload.from_array(np.ones(3, dtype=np.float32)).all_finite
    assert len(scans) == 2


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), st.integers(0, 2**31 - 1), st.floats(0.0, 100.0))
def test_round_stats_match_the_stacked_consensus_distance(n: int, seed: int,
                                                          offset: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n + 2, 16, generator=gen) + offset
    stats = RoundStats(16, {0}, keep_all=True)
    for i in range(n + 2):
        stats.add(i, x[i], byzantine=i == n + 1)
    stats.remove(n)  # left before the round completed
    group, cons = stats.group()
    rows = x[list(range(n))]
    expected = float(((rows - rows.mean(0, keepdim=True)) ** 2).sum(1).mean().sqrt())
    assert group == list(range(n))
    assert cons == pytest.approx(expected, rel=1e-5, abs=1e-4)


def test_identical_models_have_zero_consensus_distance() -> None:
    stats = RoundStats(8, set(), keep_all=False)
    for i in range(5):
        stats.add(i, torch.full((8,), 3.7), byzantine=False)
    assert stats.group() == ([0, 1, 2, 3, 4], 0.0)
    assert not stats.rows  # nothing kept beyond the evaluated rows
