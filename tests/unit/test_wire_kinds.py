"""The message kinds beyond UPDATE/GLOBAL: STATE, PULL, HISTORY, PING, PONG."""

from __future__ import annotations

import numpy as np
import pytest

from rumor.protocols import codec
from rumor.protocols.errors import RejectedMessage
from rumor.protocols.messages import EmptyBody, Kind, ModelBody, RecordBody, TensorPayload
from rumor.protocols.validation import ValidationConfig, Validator
from tests.helpers import SWARM, ident, update_bytes


def _msg(kind: Kind, body: object, *, sender: int = 1, round_: int = 3, seq: int = 1) -> bytes:
    return codec.encode(kind, swarm=SWARM, sender=ident(sender), round_=round_, seq=seq,
                        sent_at=0.0, body=body)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", [Kind.PULL, Kind.PING, Kind.PONG])
def test_empty_kinds_round_trip_signed(kind: Kind) -> None:
    env = codec.decode(_msg(kind, EmptyBody()), swarm=SWARM)
    assert env.kind is kind and isinstance(env.body, EmptyBody) and env.round == 3


def test_history_carries_the_origins_signed_update_verbatim() -> None:
    inner = update_bytes(ident(7), np.arange(4, dtype=np.float32), round_=2)
    env = codec.decode(_msg(Kind.HISTORY, RecordBody(inner, 2)), swarm=SWARM)
    assert isinstance(env.body, RecordBody) and env.body.inner == inner and env.body.hops == 2
    v = Validator(ValidationConfig(swarm=SWARM, shape=(4,)))
    rec = v.check_record(env.body.inner)
    assert rec is not None and rec.sender == ident(7).peer_id_bytes


def test_forged_record_is_rejected_as_bad_record_and_counted() -> None:
    inner = bytearray(update_bytes(ident(7), np.arange(4, dtype=np.float32)))
    inner[-70] ^= 0xFF  # inside the tensor bytes or signature: the origin's signature fails
    v = Validator(ValidationConfig(swarm=SWARM, shape=(4,)))
    assert v.check_record(bytes(inner)) is None
    assert v.rejects["bad_record"] == 1


def test_hops_and_body_kind_are_signed() -> None:
    inner = update_bytes(ident(7), np.zeros(4, dtype=np.float32))
    raw = _msg(Kind.HISTORY, RecordBody(inner, 2))
    tampered = raw.replace(b"\xa1h\x02", b"\xa1h\x03")
    assert tampered != raw
    with pytest.raises(RejectedMessage) as exc:
        codec.decode(tampered, swarm=SWARM)
    assert exc.value.reason == "bad_signature"


def test_encoding_a_body_of_the_wrong_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        _msg(Kind.PULL, ModelBody(TensorPayload.from_array(np.zeros(2, np.float32)), 1))


def test_state_may_be_far_ahead_but_updates_may_not() -> None:
    v = Validator(ValidationConfig(swarm=SWARM, shape=(4,), max_ahead=10))
    far = 10_000
    up = update_bytes(ident(2), np.zeros(4, np.float32), round_=far)
    assert v.check(up, now=0.0, current_round=0) is None
    assert v.rejects["too_far_ahead"] == 1
    st = update_bytes(ident(2), np.zeros(4, np.float32), round_=far, kind=Kind.STATE)
    assert v.check(st, now=0.0, current_round=0) is not None


def test_pull_from_a_peer_far_behind_is_not_stale() -> None:
    v = Validator(ValidationConfig(swarm=SWARM, shape=(4,), max_lag=2))
    assert v.check(_msg(Kind.PULL, EmptyBody(), round_=0), now=0.0, current_round=50) is not None
