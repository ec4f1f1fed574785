"""msgpack codec and Ed25519 signing for rumor messages.

Wire layout: one flat msgpack map with short keys (see docs/wire-protocol.md)::

    {"v": 1, "k": kind, "sw": swarm, "s": sender PeerID (bin, 38 B), "r": round,
     "q": seq, "t": sent_at, <body fields>, "sig": signature (bin, 64 B)}

Body fields by kind: UPDATE, GLOBAL, STATE (a model): "n": num_samples, "dt": "<f4",
"sh": [d, ...], "x": tensor bytes (bin, little-endian). HISTORY (a forwarded record):
"h": hops (1..255), "in": the origin's signed message (bin, verbatim). PULL, PING,
PONG: none.

Signed digest (domain separated; integers big-endian, strings length-prefixed)::

    D = sha256( b"rumor/" + kind + b"/v1"
                || u16(len(swarm)) || swarm || u16(len(sender)) || sender
                || u64(round) || u64(seq) || <body digest> )
    model body:  u64(num_samples) || u8(len(dtype)) || dtype
                 || u8(len(shape)) || u64(dim) for each dim || sha256(x)
    record body: u8(hops) || sha256(in)
    empty body:  nothing
    sig = Ed25519_sign(key, D)

``sent_at`` is informational and not signed. The map is flat so the tensor bytes are
packed and unpacked once (no nested msgpack). Decoding checks cheap things first:
total size before unpacking, msgpack container limits during unpacking, version and
swarm before the signature, byte length against dtype x shape before any
allocation. Every failure raises RejectedMessage with the reason it is counted under.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from rumor.protocols.errors import RejectedMessage
from rumor.protocols.identity import PEER_ID_BYTES, Identity, verify
from rumor.protocols.messages import (
    ALLOWED_DTYPES,
    MODEL_KINDS,
    RECORD_KINDS,
    WIRE_VERSION,
    Body,
    EmptyBody,
    Envelope,
    Kind,
    ModelBody,
    RecordBody,
    TensorPayload,
)

DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024
_MAX_DIMS = 8
_MAX_SWARM = 256
_MAX_HOPS = 255


@dataclass(frozen=True)
class Limits:
    """Hard limits checked before allocation."""

    max_message: int = DEFAULT_MAX_MESSAGE
    max_elements: int = 16 * 1024 * 1024


def digest(
    kind: Kind,
    swarm: str,
    sender: bytes,
    round_: int,
    seq: int,
    body: Body,
) -> bytes:
    """The domain-separated digest that is signed (formula in the module docstring)."""
    sw = swarm.encode()
    h = hashlib.sha256()
    h.update(b"rumor/" + kind.value.encode() + b"/v1")
    h.update(struct.pack(">H", len(sw)) + sw)
    h.update(struct.pack(">H", len(sender)) + sender)
    h.update(struct.pack(">QQ", round_, seq))
    if isinstance(body, ModelBody):
        t = body.tensor
        dt = t.dtype.encode()
        h.update(struct.pack(">Q", body.num_samples))
        h.update(struct.pack(">B", len(dt)) + dt)
        h.update(struct.pack(">B", len(t.shape)) + b"".join(struct.pack(">Q", d) for d in t.shape))
        h.update(hashlib.sha256(t.data).digest())
    elif isinstance(body, RecordBody):
        h.update(struct.pack(">B", body.hops))
        h.update(hashlib.sha256(body.inner).digest())
    return h.digest()


def _check_body(kind: Kind, body: Body) -> None:
    want: type = (ModelBody if kind in MODEL_KINDS
                  else RecordBody if kind in RECORD_KINDS else EmptyBody)
    if not isinstance(body, want):
        raise ValueError(f"a {kind.value} message needs a {want.__name__}")
    if isinstance(body, RecordBody) and not 1 <= body.hops <= _MAX_HOPS:
        raise ValueError(f"hops must be in [1, {_MAX_HOPS}]")


def encode(
    kind: Kind,
    *,
    swarm: str,
    sender: Identity | bytes,
    round_: int,
    seq: int,
    sent_at: float,
    body: Body,
    sign: bool = True,
) -> bytes:
    """Encode (and, when ``sign`` and an Identity is given, sign) one message."""
    _check_body(kind, body)
    sender_bytes = sender.peer_id_bytes if isinstance(sender, Identity) else sender
    signature = b""
    if sign:
        if not isinstance(sender, Identity):
            raise ValueError("signing needs the sender's Identity, not its PeerID bytes")
        signature = sender.sign(digest(kind, swarm, sender_bytes, round_, seq, body))
    fields: dict[str, Any] = {
        "v": WIRE_VERSION,
        "k": kind.value,
        "sw": swarm,
        "s": sender_bytes,
        "r": round_,
        "q": seq,
        "t": float(sent_at),
    }
    if isinstance(body, ModelBody):
        t = body.tensor
        fields.update({"n": body.num_samples, "dt": t.dtype, "sh": list(t.shape), "x": t.data})
    elif isinstance(body, RecordBody):
        fields.update({"h": body.hops, "in": body.inner})
    fields["sig"] = signature
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


def _unpack(raw: bytes, limits: Limits, max_bin: int) -> Any:
    try:
        return msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=True,
            max_bin_len=max_bin,
            max_str_len=4096,
            max_array_len=_MAX_DIMS * 2 + 16,
            max_map_len=16,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises many types on garbage
        raise RejectedMessage("malformed", f"msgpack: {type(exc).__name__}") from None


def _field(obj: dict[str, Any], key: str, typ: type | tuple[type, ...]) -> Any:
    if key not in obj:
        raise RejectedMessage("malformed", f"missing field {key!r}")
    val = obj[key]
    if not isinstance(val, typ) or (typ is int and isinstance(val, bool)):
        raise RejectedMessage("malformed", f"field {key!r} has type {type(val).__name__}")
    return val


def decode(
    raw: bytes,
    *,
    swarm: str | None = None,
    verify_signature: bool = True,
    limits: Limits = Limits(),
    on_header: Callable[[Kind, bytes], None] | None = None,
) -> Envelope:
    """Parse and check one message; RejectedMessage(reason) on any problem.

    ``on_header(kind, sender)`` runs after the header is parsed and before the
    signature is verified: the place for cheap per-sender checks (rate limits) that
    may raise RejectedMessage themselves.

    Checks, in order: size (oversize), msgpack structure (malformed), version
    (unknown_version), swarm (wrong_swarm, when ``swarm`` is given), kind
    (unknown_kind), sender form (bad_sender), signature (bad_signature), tensor
    dtype/shape/byte-length (bad_tensor) and finiteness (nan_inf).
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise RejectedMessage("malformed", "not bytes")
    if len(raw) > limits.max_message:
        raise RejectedMessage("oversize", f"{len(raw)} > {limits.max_message} bytes")
    obj = _unpack(raw, limits, limits.max_message)
    if not isinstance(obj, dict):
        raise RejectedMessage("malformed", "envelope is not a map")
    version = _field(obj, "v", int)
    if version != WIRE_VERSION:
        raise RejectedMessage("unknown_version", f"version {version}")
    msg_swarm = _field(obj, "sw", str)
    if len(msg_swarm) > _MAX_SWARM or (swarm is not None and msg_swarm != swarm):
        raise RejectedMessage("wrong_swarm", f"swarm {msg_swarm[:40]!r}")
    try:
        kind = Kind(_field(obj, "k", str))
    except ValueError:
        raise RejectedMessage("unknown_kind", repr(obj.get("k"))[:40]) from None
    sender = _field(obj, "s", bytes)
    if len(sender) != PEER_ID_BYTES:
        raise RejectedMessage("bad_sender", f"sender is {len(sender)} bytes")
    round_ = _field(obj, "r", int)
    seq = _field(obj, "q", int)
    if not (0 <= round_ < 2**63 and 0 <= seq < 2**63):
        raise RejectedMessage("malformed", "round/seq out of range")
    sent_at = _field(obj, "t", (float, int))
    signature = _field(obj, "sig", bytes)
    if on_header is not None:
        on_header(kind, sender)
    body = _body(kind, obj, limits)
    if verify_signature:
        ok = len(signature) == 64 and verify(
            sender, signature, digest(kind, msg_swarm, sender, round_, seq, body)
        )
        if not ok:
            raise RejectedMessage("bad_signature", "signature does not match the sender")
    return Envelope(
        kind=kind,
        swarm=msg_swarm,
        sender=sender,
        round=round_,
        seq=seq,
        sent_at=float(sent_at),
        body=body,
        signature=signature,
        version=version,
    )


def _body(kind: Kind, obj: dict[str, Any], limits: Limits) -> Body:
    if kind in MODEL_KINDS:
        return _model_body(obj, limits)
    if kind in RECORD_KINDS:
        hops = _field(obj, "h", int)
        if not 1 <= hops <= _MAX_HOPS:
            raise RejectedMessage("malformed", f"hops {hops} out of range")
        return RecordBody(_field(obj, "in", bytes), hops)
    return EmptyBody()


def _model_body(obj: dict[str, Any], limits: Limits) -> ModelBody:
    dtype = _field(obj, "dt", str)
    shape_list = _field(obj, "sh", list)
    data = _field(obj, "x", bytes)
    num_samples = _field(obj, "n", int)
    if dtype not in ALLOWED_DTYPES:
        raise RejectedMessage("bad_tensor", f"dtype {dtype[:16]!r} not allowed")
    if len(shape_list) > _MAX_DIMS or not all(
        isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in shape_list
    ):
        raise RejectedMessage("bad_tensor", "bad shape")
    shape = tuple(shape_list)
    count = math.prod(shape)
    if count > limits.max_elements:
        raise RejectedMessage("oversize", f"{count} elements > {limits.max_elements}")
    itemsize = int(dtype[-1])
    if len(data) != count * itemsize:
        raise RejectedMessage("bad_tensor", f"{len(data)} bytes for {dtype} x {shape}")
    if not 0 <= num_samples < 2**63:
        raise RejectedMessage("malformed", "sample count out of range")
    return ModelBody(TensorPayload(dtype, shape, data), num_samples)
