"""The wire codec: round trips, signatures, and garbage that must never crash."""

from __future__ import annotations

import time

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumor.protocols import codec
from rumor.protocols.errors import RejectedMessage
from rumor.protocols.messages import (
    COMPRESSED_KINDS,
    MODEL_KINDS,
    RECORD_KINDS,
    Body,
    CompressedBody,
    EmptyBody,
    Kind,
    ModelBody,
    RecordBody,
    TensorPayload,
)
from tests.helpers import SWARM, ident, update_bytes


def test_signed_update_round_trips_exactly() -> None:
    vec = np.arange(10, dtype=np.float32) / 7
    raw = update_bytes(ident(1), vec, round_=3, seq=9)
    env = codec.decode(raw, swarm=SWARM)
    assert env.kind is Kind.UPDATE and env.round == 3 and env.seq == 9
    assert env.sender == ident(1).peer_id_bytes
    np.testing.assert_array_equal(env.body.tensor.to_array(), vec)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(width=32, allow_nan=False), min_size=0, max_size=64),
    round_=st.integers(0, 2**40),
    seq=st.integers(0, 2**40),
    swarm=st.text(max_size=30),
)
def test_any_update_round_trips(values: list[float], round_: int, seq: int, swarm: str) -> None:
    vec = np.array(values, dtype=np.float32)
    raw = update_bytes(ident(2), vec, round_=round_, seq=seq, swarm=swarm)
    env = codec.decode(raw, swarm=swarm)
    assert (env.round, env.seq, env.swarm) == (round_, seq, swarm)
    np.testing.assert_array_equal(env.body.tensor.to_array(), vec)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_garbage_bytes_are_rejected_never_crash(data: bytes) -> None:
    try:
        codec.decode(data, swarm=SWARM)
    except RejectedMessage as rej:
        assert rej.reason in {"malformed", "unknown_version", "wrong_swarm", "unknown_kind",
                              "bad_sender", "bad_signature", "bad_tensor", "oversize"}


_KEYS = ["v", "k", "sw", "s", "r", "q", "t", "n", "dt", "sh", "x", "sig"]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS),
                       st.one_of(st.integers(-5, 2**64 - 1), st.binary(max_size=40),
                                 st.text(max_size=10), st.floats(), st.none(),
                                 st.lists(st.integers(-5, 100), max_size=3))))
def test_wellformed_msgpack_with_wrong_fields_is_rejected(obj: dict[str, object]) -> None:
    with pytest.raises(RejectedMessage):
        codec.decode(msgpack.packb(obj, use_bin_type=True), swarm=SWARM)


def test_tampered_tensor_fails_the_signature() -> None:
    raw = bytearray(update_bytes(ident(1), np.ones(8, dtype=np.float32)))
    raw[-80] ^= 0x01  # a byte inside the body
    with pytest.raises(RejectedMessage) as exc:
        codec.decode(bytes(raw), swarm=SWARM)
    assert exc.value.reason in {"bad_signature", "malformed"}


def test_update_signed_by_another_key_is_rejected() -> None:
    obj = msgpack.unpackb(update_bytes(ident(1), np.ones(4, np.float32)), raw=False)
    obj["s"] = ident(2).peer_id_bytes  # claim to be someone else
    with pytest.raises(RejectedMessage, match="bad_signature"):
        codec.decode(msgpack.packb(obj, use_bin_type=True), swarm=SWARM)


def test_unsigned_message_is_rejected_when_signatures_are_required() -> None:
    raw = update_bytes(ident(1), np.ones(4, np.float32), sign=False)
    with pytest.raises(RejectedMessage, match="bad_signature"):
        codec.decode(raw, swarm=SWARM)
    assert codec.decode(raw, swarm=SWARM, verify_signature=False).round == 0


def test_oversize_is_rejected_before_unpacking() -> None:
    raw = update_bytes(ident(1), np.zeros(1000, np.float32))
    with pytest.raises(RejectedMessage, match="oversize"):
        codec.decode(raw, swarm=SWARM, limits=codec.Limits(max_message=1000))


def test_element_count_limit_checked_before_allocation() -> None:
    raw = update_bytes(ident(1), np.zeros(100, np.float32))
    with pytest.raises(RejectedMessage, match="oversize"):
        codec.decode(raw, swarm=SWARM, limits=codec.Limits(max_elements=10))


def test_byte_length_must_match_dtype_and_shape() -> None:
    obj = msgpack.unpackb(update_bytes(ident(1), np.ones(4, np.float32), sign=False), raw=False)
    obj["sh"] = [1_000_000]
    with pytest.raises(RejectedMessage, match="bad_tensor"):
        codec.decode(msgpack.packb(obj, use_bin_type=True), swarm=SWARM, verify_signature=False)


def test_wrong_swarm_and_version_are_named() -> None:
    raw = update_bytes(ident(1), np.ones(4, np.float32), swarm="other")
    with pytest.raises(RejectedMessage, match="wrong_swarm"):
        codec.decode(raw, swarm=SWARM)
    obj = msgpack.unpackb(raw, raw=False)
    obj["v"] = 99
    with pytest.raises(RejectedMessage, match="unknown_version"):
        codec.decode(msgpack.packb(obj, use_bin_type=True))


def test_digest_is_domain_separated_by_kind() -> None:
    body = ModelBody(TensorPayload.from_array(np.ones(3, np.float32)), 5)
    a = codec.digest(Kind.UPDATE, "s", b"x", 1, 2, body)
    b = codec.digest(Kind.GLOBAL, "s", b"x", 1, 2, body)
    assert a != b
    # length prefixes keep (swarm, sender) boundaries unambiguous
    assert codec.digest(Kind.UPDATE, "ab", b"c", 1, 2, body) != codec.digest(
        Kind.UPDATE, "a", b"bc", 1, 2, body
    )


def test_sample_count_and_shape_are_signed() -> None:
    for key, value in (("n", 10_000), ("sh", [2, 2]), ("r", 99)):
        obj = msgpack.unpackb(update_bytes(ident(1), np.ones(4, np.float32)), raw=False)
        obj[key] = value
        with pytest.raises(RejectedMessage, match="bad_signature"):
            codec.decode(msgpack.packb(obj, use_bin_type=True), swarm=SWARM)


# ------------------------------------------------ strict structure (issue 9, class 1)


def _bodies() -> dict[Kind, Body]:
    model = ModelBody(TensorPayload.from_array(np.ones((2, 3), np.float32)), 4)
    inner = update_bytes(ident(3), np.ones(3, np.float32))
    diff = CompressedBody("quant", 5, b"\x01" * 5, base=3, num_samples=4, bits=8, block=4,
                          scales=np.ones(2, "<f4").tobytes())
    return {
        kind: model if kind in MODEL_KINDS
        else RecordBody(inner, 2) if kind in RECORD_KINDS
        else diff if kind in COMPRESSED_KINDS
        else EmptyBody()
        for kind in Kind
    }


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_round_trips_through_the_strict_parser(kind: Kind) -> None:
    body = _bodies()[kind]
    raw = codec.encode(kind, swarm=SWARM, sender=ident(1), round_=2, seq=5, sent_at=1.5,
                       body=body)
    assert set(msgpack.unpackb(raw, raw=False)) <= set(codec.FIELDS)
    env = codec.decode(raw, swarm=SWARM)
    assert (env.kind, env.round, env.seq, env.sent_at, env.body) == (kind, 2, 5, 1.5, body)


_SCALARS: dict[str, st.SearchStrategy[object]] = {
    codec.INT: st.integers(-(2**63), 2**64 - 1),
    codec.NUMBER: st.one_of(st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False)),
    codec.STR: st.text(max_size=300),
    codec.BIN: st.binary(max_size=300),
    codec.INT_LIST: st.lists(st.integers(-(2**63), 2**64 - 1), max_size=8),
}


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_strict_parser_reads_well_typed_maps_exactly_like_msgpack(data: st.DataObject) -> None:
    keys = data.draw(st.lists(st.sampled_from(sorted(codec.FIELDS)), unique=True))
    obj = {k: data.draw(_SCALARS[codec.FIELDS[k]]) for k in keys}
    raw = msgpack.packb(obj, use_bin_type=True)
    assert codec._unpack(raw, codec.Limits()) == msgpack.unpackb(raw, raw=False) == obj
    assert codec._unpack(bytearray(raw), codec.Limits()) == obj
    assert codec._unpack(memoryview(raw), codec.Limits()) == obj


def _signed_fields() -> dict[str, object]:
    obj: dict[str, object] = msgpack.unpackb(
        update_bytes(ident(1), np.ones(4, np.float32)), raw=False
    )
    return obj


@pytest.mark.parametrize(
    ("change", "reason", "detail"),
    [
        ({"x": [[]] * 3}, "malformed", "field 'x' is array, not bin"),
        ({"sw": {"a": 1}}, "malformed", "field 'sw' is map, not str"),
        ({"sh": [[4]]}, "bad_tensor", "holds array, not int"),
        ({"sh": [1] * 9}, "bad_tensor", "9 entries"),
        ({"sh": [1.5]}, "bad_tensor", "holds float, not int"),
        ({"r": True}, "malformed", "field 'r' is bool, not int"),
        ({"t": None}, "malformed", "field 't' is nil, not number"),
        ({"zz": 1}, "malformed", "unknown field 'zz'"),
        ({"sig": "not bin"}, "malformed", "field 'sig' is str, not bin"),
    ],
)
def test_a_field_of_the_wrong_shape_is_refused_with_its_reason(
    change: dict[str, object], reason: str, detail: str
) -> None:
    obj = _signed_fields() | change
    with pytest.raises(RejectedMessage, match=reason) as exc:
        codec.decode(msgpack.packb(obj, use_bin_type=True), swarm=SWARM)
    assert exc.value.reason == reason and detail in exc.value.detail


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"\x91\xa1v", "envelope is not a map but array"),
        (b"\xc0", "envelope is not a map but nil"),
        (b"\xdf\xff\xff\xff\xff", "fields >"),
        (b"\x82\xa1v\x01\xa1v\x01", "field 'v' repeated"),
        (b"\x81\x01\x01", "a key is int, not a short str"),
        (b"\x81\x81\xa1a\x01\x01", "a key is map, not a short str"),
        (b"\x81\xa1x\xc6\xff\xff\xff\xff", "oversize"),
        (b"\x81\xa1x\xc5\x00\x10ab", "runs past the end"),
        (b"\x81\xa1x\xc7\x05\x01abcde", "field 'x' is ext, not bin"),
        (b"\x81\xa1x\xc1", "field 'x' is byte 0xc1, not bin"),
        (b"\x81\xa2k\xff\x01", "UTF-8"),
        (b"\x81\xa1v\x01\x00", "1 bytes after the map"),
        (b"\x81\xa1v\xcd\x01", "truncated"),
        (b"\x81", "truncated"),
    ],
)
def test_hostile_structures_are_refused_at_their_first_bad_byte(raw: bytes, detail: str) -> None:
    with pytest.raises(RejectedMessage) as exc:
        codec.decode(raw)
    assert detail in str(exc.value)


def test_a_nested_container_frame_costs_time_linear_in_its_size_and_no_memory() -> None:
    # ~8 MiB of nested empty arrays under "x": the old decoder built ~500 MB of lists.
    from tests.adversarial.frames import nested_frame, top_level_array

    for raw in (nested_frame(8 * 1024 * 1024), top_level_array(8 * 1024 * 1024)):
        t0 = time.perf_counter()
        with pytest.raises(RejectedMessage, match="malformed"):
            codec.decode(raw, swarm=SWARM)
        assert time.perf_counter() - t0 < 1.0
