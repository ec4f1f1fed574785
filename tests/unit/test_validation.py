"""Every reject is counted under its reason and never changes the receiver's state."""

from __future__ import annotations

import msgpack
import numpy as np

from rumor.protocols.validation import ValidationConfig, Validator
from tests.helpers import SWARM, ident, update_bytes

D = 6


def make(**kw: object) -> Validator:
    return Validator(ValidationConfig(swarm=SWARM, shape=(D,), **kw))  # type: ignore[arg-type]


def vec(v: float = 1.0) -> np.ndarray:
    return np.full(D, v, dtype=np.float32)


def test_valid_update_is_accepted() -> None:
    v = make()
    env = v.check(update_bytes(ident(1), vec()), now=0.0, current_round=0)
    assert env is not None and v.accepted == 1 and not v.rejects


def test_replayed_update_is_rejected_and_counted() -> None:
    v = make()
    raw = update_bytes(ident(1), vec(), round_=2, seq=5)
    assert v.check(raw, now=0.0, current_round=2) is not None
    assert v.check(raw, now=1.0, current_round=2) is None
    older = update_bytes(ident(1), vec(), round_=2, seq=4)
    assert v.check(older, now=1.0, current_round=2) is None
    assert v.rejects["replay"] == 2


def test_stale_round_is_rejected() -> None:
    v = make(max_lag=1)
    assert v.check(update_bytes(ident(1), vec(), round_=3), now=0, current_round=5) is None
    assert v.rejects == {"stale": 1}


def test_shape_dtype_nan_and_inf_are_rejected() -> None:
    v = make()
    assert v.check(update_bytes(ident(1), np.ones(D + 1, np.float32)), now=0,
                   current_round=0) is None
    bad = vec()
    bad[2] = np.nan
    assert v.check(update_bytes(ident(2), bad), now=0, current_round=0) is None
    bad[2] = np.inf
    assert v.check(update_bytes(ident(3), bad), now=0, current_round=0) is None
    assert v.rejects == {"shape_mismatch": 1, "nan_inf": 2}


def test_forged_signature_is_rejected_and_does_not_block_the_real_sender() -> None:
    v = make()
    obj = msgpack.unpackb(update_bytes(ident(9), vec(), round_=7, seq=7), raw=False)
    obj["s"] = ident(1).peer_id_bytes  # forged: claims to be peer 1 with a high (round, seq)
    assert v.check(msgpack.packb(obj, use_bin_type=True), now=0, current_round=0) is None
    assert v.rejects == {"bad_signature": 1}
    assert v.check(update_bytes(ident(1), vec(), round_=0, seq=1), now=0,
                   current_round=0) is not None


def test_flood_is_rate_limited_per_sender() -> None:
    v = make(flood_rate=1.0, flood_burst=3.0)
    results = [
        v.check(update_bytes(ident(1), vec(), round_=0, seq=s), now=0.0, current_round=0)
        for s in range(1, 6)
    ]
    assert sum(r is not None for r in results) == 3
    assert v.rejects["flood"] == 2
    # another sender is unaffected, and the bucket refills with time
    assert v.check(update_bytes(ident(2), vec()), now=0.0, current_round=0) is not None
    assert v.check(update_bytes(ident(1), vec(), seq=9), now=2.0, current_round=0) is not None


def test_update_relayed_under_another_link_identity_is_rejected() -> None:
    v = make()
    raw = update_bytes(ident(1), vec())
    assert v.check(raw, now=0, current_round=0, link_sender=ident(2).peer_id_bytes) is None
    assert v.rejects == {"sender_mismatch": 1}


def test_garbage_is_counted_as_malformed() -> None:
    v = make()
    assert v.check(b"\xc1\xff garbage", now=0, current_round=0) is None
    assert v.check(b"", now=0, current_round=0) is None
    assert v.rejects["malformed"] == 2
