"""msgpack codec and Ed25519 signing for rumor messages.

Wire layout: one flat msgpack map with short keys (see docs/wire-protocol.md)::

    {"v": 1, "k": kind, "sw": swarm, "s": sender PeerID (bin, 38 B), "r": round,
     "q": seq, "t": sent_at, <body fields>, "sig": signature (bin, 64 B)}

Body fields by kind: UPDATE, GLOBAL, STATE (a model): "n": num_samples, "dt": "<f4",
"sh": [d, ...], "x": tensor bytes (bin, little-endian). HISTORY (a forwarded record):
"h": hops (1..255), "in": the origin's signed message (bin, verbatim). DIFF (compressed
gossip): "n", "zv": 1, "zs": scheme, "zd": d, "zb": base, "zx": values, and per scheme
"zi" indices, "zk" k, "zq" bits, "zl" block, "zc" scales, "zr" rank. PULL, PING, PONG,
RESYNC: none.

Signed digest (domain separated; integers big-endian, strings length-prefixed)::

    D = sha256( b"rumor/" + kind + b"/v1"
                || u16(len(swarm)) || swarm || u16(len(sender)) || sender
                || u64(round) || u64(seq) || <body digest> )
    model body:  u64(num_samples) || u8(len(dtype)) || dtype
                 || u8(len(shape)) || u64(dim) for each dim || sha256(x)
    record body: u8(hops) || sha256(in)
    compressed:  u8(zv) || u8(len(zs)) || zs || u64(zd) || u64(zb) || u64(n) || u64(zk)
                 || u8(zq) || u64(zl) || u64(zr) || sha256(zx) || sha256(zi) || sha256(zc)
                 (absent fields: 0 / empty)
    empty body:  nothing
    sig = Ed25519_sign(key, D)

``sent_at`` is informational and not signed. The map is flat so the tensor bytes are
packed and unpacked once (no nested msgpack). Decoding checks cheap things first:
total size before unpacking, the structure while parsing, version and swarm before the
signature, byte length against dtype x shape before any allocation. Every failure
raises RejectedMessage with the reason it is counted under.

Decoding is a strict one-pass parser, not a generic msgpack unpacker: the top level
must be a map of at most ``len(FIELDS)`` entries; every key a short str listed in
FIELDS, at most once; every value of its field's wire type. The only container allowed
is the short int list of ``"sh"``; any other array, map or ext is refused at its
header byte, before anything inside it is built. So decoding costs O(len(raw)) time
and at most one copy of each str/bin field in memory (issue 9, class 1). A new field
is one line in FIELDS.
"""

from __future__ import annotations

import hashlib
import math
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from rumor.protocols.errors import RejectedMessage
from rumor.protocols.identity import PEER_ID_BYTES, Identity, verify
from rumor.protocols.messages import (
    ALLOWED_DTYPES,
    COMPRESSED_KINDS,
    COMPRESSED_SCHEMES,
    COMPRESSED_VERSION,
    MODEL_KINDS,
    RECORD_KINDS,
    WIRE_VERSION,
    Body,
    CompressedBody,
    EmptyBody,
    Envelope,
    Kind,
    ModelBody,
    RecordBody,
    TensorPayload,
    index_width,
)

DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024
_MAX_DIMS = 8
_MAX_SWARM = 256
_MAX_HOPS = 255
_MAX_KEY = 16
_MAX_STR = 4096

# one msgpack Packer per thread, reused: msgpack.packb builds a Packer (and its internal
# buffer) per call, which for a 100 KB model costs ~4x the copy itself (fresh pages)
_packers = threading.local()


def _pack(fields: dict[str, Any]) -> bytes:
    """msgpack.packb(fields, use_bin_type=True), with this thread's reused Packer."""
    packer: msgpack.Packer | None = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
    try:
        packed: bytes = packer.pack(fields)
    except BaseException:
        packer.reset()  # a failed pack leaves partial output in the buffer
        raise
    return packed

# Wire types of envelope fields (what the decoder accepts for a key).
INT: Final = "int"  # a msgpack int (not bool)
NUMBER: Final = "number"  # a msgpack int or float
STR: Final = "str"  # UTF-8 str, at most _MAX_STR bytes
BIN: Final = "bin"  # bin, at most Limits.max_message bytes
INT_LIST: Final = "int_list"  # an array of at most _MAX_DIMS ints

#: Every key an envelope may carry -> the wire type of its value. The decoder refuses
#: any other key, a repeated key, and any value of another type. To add a field to a
#: message kind, add its key here (scalars, str and bin only; containers stay out).
FIELDS: dict[str, str] = {
    "v": INT,  # wire version
    "k": STR,  # kind
    "sw": STR,  # swarm
    "s": BIN,  # sender PeerID
    "r": INT,  # round
    "q": INT,  # seq
    "t": NUMBER,  # sent_at
    "sig": BIN,  # signature
    # model bodies
    "n": INT,  # num_samples
    "dt": STR,  # dtype
    "sh": INT_LIST,  # shape
    "x": BIN,  # tensor bytes
    # record bodies
    "h": INT,  # hops
    "in": BIN,  # the forwarded signed message
    # compressed bodies (DIFF; "n" as for models)
    "zv": INT,  # compressed body version
    "zs": STR,  # scheme: full | sparse | seeded | quant | lowrank
    "zd": INT,  # dimension d of the full vector
    "zb": INT,  # base: seq of the sender's DIFF this difference applies to
    "zx": BIN,  # values (float32) or packed codes (quant)
    "zi": BIN,  # sparse: indices
    "zk": INT,  # seeded: k
    "zq": INT,  # quant: bits
    "zl": INT,  # quant: block
    "zc": BIN,  # quant: scales (float32)
    "zr": INT,  # lowrank: rank
}


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
    elif isinstance(body, CompressedBody):
        sc = body.scheme.encode()
        h.update(struct.pack(">BB", body.version, len(sc)) + sc)
        h.update(struct.pack(">QQQQBQQ", body.dim, body.base, body.num_samples, body.k,
                             body.bits, body.block, body.rank))
        for part in (body.values, body.indices, body.scales):
            h.update(hashlib.sha256(part).digest())
    return h.digest()


def _check_body(kind: Kind, body: Body) -> None:
    want: type = (ModelBody if kind in MODEL_KINDS
                  else RecordBody if kind in RECORD_KINDS
                  else CompressedBody if kind in COMPRESSED_KINDS else EmptyBody)
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
    elif isinstance(body, CompressedBody):
        fields.update({"n": body.num_samples, "zv": body.version, "zs": body.scheme,
                       "zd": body.dim, "zb": body.base, "zx": body.values})
        for key, value, unset in (("zi", body.indices, b""), ("zk", body.k, 0),
                                  ("zq", body.bits, 0), ("zl", body.block, 0),
                                  ("zc", body.scales, b""), ("zr", body.rank, 0)):
            if value != unset:  # scheme fields only: fewer bytes on the wire
                fields[key] = value
    fields["sig"] = signature
    return _pack(fields)


#: FIELDS by their fixstr encoding (type byte + UTF-8), the decoder's fast path.
_KEYS: Final = {bytes([0xA0 | len(k.encode())]) + k.encode(): (k, t) for k, t in FIELDS.items()}

_UNPACK_INT: Final = {
    0xCC: struct.Struct(">B"),
    0xCD: struct.Struct(">H"),
    0xCE: struct.Struct(">I"),
    0xCF: struct.Struct(">Q"),
    0xD0: struct.Struct(">b"),
    0xD1: struct.Struct(">h"),
    0xD2: struct.Struct(">i"),
    0xD3: struct.Struct(">q"),
}
_UNPACK_FLOAT: Final = {0xCA: struct.Struct(">f"), 0xCB: struct.Struct(">d")}
_LEN: Final = (struct.Struct(">B"), struct.Struct(">H"), struct.Struct(">I"))  # 8/16/32-bit


def _type_name(b: int) -> str:
    """What a msgpack type byte starts, for reject details."""
    if b <= 0x7F or b >= 0xE0 or 0xCC <= b <= 0xD3:
        return "int"
    if b <= 0x8F or b in (0xDE, 0xDF):
        return "map"
    if b <= 0x9F or b in (0xDC, 0xDD):
        return "array"
    if b <= 0xBF or 0xD9 <= b <= 0xDB:
        return "str"
    if 0xC4 <= b <= 0xC6:
        return "bin"
    if b in (0xCA, 0xCB):
        return "float"
    if b == 0xC0:
        return "nil"
    if b in (0xC2, 0xC3):
        return "bool"
    if 0xC7 <= b <= 0xC9 or 0xD4 <= b <= 0xD8:
        return "ext"
    return f"byte 0x{b:02x}"


class _Parser:
    """A cursor over one envelope; every method refuses what the envelope may not hold."""

    __slots__ = ("buf", "max_bin", "pos")

    def __init__(self, buf: bytes, max_bin: int) -> None:
        self.buf = buf
        self.pos = 0
        self.max_bin = max_bin

    def _byte(self) -> int:
        if self.pos >= len(self.buf):
            raise RejectedMessage("malformed", "truncated msgpack")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def _length(self, width: int) -> int:
        """A big-endian length field of 1, 2 or 4 bytes (width index 0, 1, 2)."""
        unpack = _LEN[width]
        end = self.pos + unpack.size
        if end > len(self.buf):
            raise RejectedMessage("malformed", "truncated msgpack")
        (n,) = unpack.unpack_from(self.buf, self.pos)
        self.pos = end
        return int(n)

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise RejectedMessage("malformed", f"a {n}-byte value runs past the end")
        data = self.buf[self.pos : end]
        self.pos = end
        return data

    def _view(self, n: int) -> memoryview:
        end = self.pos + n
        if end > len(self.buf):
            raise RejectedMessage("malformed", f"a {n}-byte value runs past the end")
        view = memoryview(self.buf)[self.pos : end]
        self.pos = end
        return view

    def map_header(self) -> int:
        b = self._byte()
        if 0x80 <= b <= 0x8F:
            return b & 0x0F
        if b in (0xDE, 0xDF):
            return self._length(b - 0xDE + 1)
        raise RejectedMessage("malformed", f"envelope is not a map but {_type_name(b)}")

    def key(self) -> tuple[str, str]:
        """The next key and its FIELDS type; refuses keys not in FIELDS."""
        buf, pos = self.buf, self.pos
        b = buf[pos] if pos < len(buf) else -1
        if 0xA0 <= b <= 0xBF:  # fixstr: the common case, one dict lookup
            end = pos + 1 + (b & 0x1F)
            known = _KEYS.get(buf[pos:end])
            if known is not None:
                self.pos = end
                return known
        self.pos += 1
        if b < 0:
            raise RejectedMessage("malformed", "truncated msgpack")
        if 0xA0 <= b <= 0xBF:
            n = b & 0x1F
        elif b == 0xD9:
            n = self._length(0)
        else:
            raise RejectedMessage("malformed", f"a key is {_type_name(b)}, not a short str")
        if n > _MAX_KEY:
            raise RejectedMessage("malformed", f"a {n}-byte key")
        key = self._text(n)
        typ = FIELDS.get(key)  # a str8 key, or a field added to FIELDS after import
        if typ is None:
            raise RejectedMessage("malformed", f"unknown field {key!r}")
        return key, typ

    def _text(self, n: int) -> str:
        try:
            return self._take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise RejectedMessage("malformed", "str is not UTF-8") from None

    def _int(self, b: int) -> int | None:
        """The int that starts with type byte ``b``, or None if ``b`` is not an int."""
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        unpack = _UNPACK_INT.get(b)
        if unpack is None:
            return None
        end = self.pos + unpack.size
        if end > len(self.buf):
            raise RejectedMessage("malformed", "truncated msgpack")
        (value,) = unpack.unpack_from(self.buf, self.pos)
        self.pos = end
        return int(value)

    def value(self, key: str, typ: str) -> Any:
        b = self._byte()
        if typ in (INT, NUMBER):
            number = self._int(b)
            if number is not None:
                return number
            unpack = _UNPACK_FLOAT.get(b)
            if typ == NUMBER and unpack is not None:
                (f,) = unpack.unpack_from(self._take(unpack.size))
                return float(f)
        elif typ == BIN:
            if 0xC4 <= b <= 0xC6:
                n = self._length(b - 0xC4)
                if n > self.max_bin:
                    raise RejectedMessage("oversize", f"field {key!r}: {n}-byte bin")
                if key == "x":  # the tensor: a view of the message, not a copy
                    return self._view(n)
                return self._take(n)
        elif typ == STR:
            if 0xA0 <= b <= 0xBF:
                n = b & 0x1F
            elif 0xD9 <= b <= 0xDB:
                n = self._length(b - 0xD9)
            else:
                n = -1
            if n > _MAX_STR:
                raise RejectedMessage("malformed", f"field {key!r}: {n}-byte str")
            if n >= 0:
                return self._text(n)
        elif typ == INT_LIST:
            if 0x90 <= b <= 0x9F:
                n = b & 0x0F
            elif b in (0xDC, 0xDD):
                n = self._length(b - 0xDC + 1)
            else:
                n = -1
            if n > _MAX_DIMS:
                raise RejectedMessage("bad_tensor", f"field {key!r}: {n} entries > {_MAX_DIMS}")
            if n >= 0:
                items: list[int] = []
                for _ in range(n):
                    eb = self._byte()
                    item = self._int(eb)
                    if item is None:
                        raise RejectedMessage(
                            "bad_tensor", f"field {key!r} holds {_type_name(eb)}, not int"
                        )
                    items.append(item)
                return items
        raise RejectedMessage("malformed", f"field {key!r} is {_type_name(b)}, not {typ}")


def _unpack(raw: bytes | bytearray | memoryview, limits: Limits) -> dict[str, Any]:
    """The envelope's fields, parsed strictly against FIELDS (see the module docstring)."""
    parser = _Parser(raw if isinstance(raw, bytes) else bytes(raw), limits.max_message)
    count = parser.map_header()
    if count > len(FIELDS):
        raise RejectedMessage("malformed", f"{count} fields > {len(FIELDS)}")
    obj: dict[str, Any] = {}
    for _ in range(count):
        key, typ = parser.key()
        if key in obj:
            raise RejectedMessage("malformed", f"field {key!r} repeated")
        obj[key] = parser.value(key, typ)
    if parser.pos != len(parser.buf):
        raise RejectedMessage("malformed", f"{len(parser.buf) - parser.pos} bytes after the map")
    return obj


def _field(obj: dict[str, Any], key: str, typ: type | tuple[type, ...]) -> Any:
    """A field the parser typed already (FIELDS); ``typ`` double-checks the table."""
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
    obj = _unpack(raw, limits)
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
    if kind in COMPRESSED_KINDS:
        return _compressed_body(obj, limits)
    if kind in RECORD_KINDS:
        hops = _field(obj, "h", int)
        if not 1 <= hops <= _MAX_HOPS:
            raise RejectedMessage("malformed", f"hops {hops} out of range")
        return RecordBody(_field(obj, "in", bytes), hops)
    return EmptyBody()


def _model_body(obj: dict[str, Any], limits: Limits) -> ModelBody:
    dtype = _field(obj, "dt", str)
    shape_list = _field(obj, "sh", list)
    data = _field(obj, "x", memoryview)
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


def _opt(obj: dict[str, Any], key: str, typ: type, default: Any) -> Any:
    return _field(obj, key, typ) if key in obj else default


def _compressed_body(obj: dict[str, Any], limits: Limits) -> CompressedBody:
    """Structure and sizes of a DIFF body (the receiver's decoder checks the rest:
    index order and bounds, codes, finiteness, rank vs its layout)."""
    version = _field(obj, "zv", int)
    if version != COMPRESSED_VERSION:
        raise RejectedMessage("unknown_version", f"compressed body version {version}")
    scheme = _field(obj, "zs", str)
    if scheme not in COMPRESSED_SCHEMES:
        raise RejectedMessage("bad_compressed", f"scheme {scheme[:16]!r}")
    dim, base = _field(obj, "zd", int), _field(obj, "zb", int)
    num_samples = _field(obj, "n", int)
    values = _field(obj, "zx", bytes)
    indices = _opt(obj, "zi", bytes, b"")
    scales = _opt(obj, "zc", bytes, b"")
    k, bits = _opt(obj, "zk", int, 0), _opt(obj, "zq", int, 0)
    block, rank = _opt(obj, "zl", int, 0), _opt(obj, "zr", int, 0)
    if not 1 <= dim <= limits.max_elements:
        raise RejectedMessage("bad_compressed" if dim < 1 else "oversize", f"d={dim}")
    if not (0 <= base < 2**63 and 0 <= num_samples < 2**63):
        raise RejectedMessage("malformed", "base/sample count out of range")
    if not all(0 <= v < 2**32 for v in (k, bits, block, rank)):
        raise RejectedMessage("bad_compressed", "a parameter out of range")
    if scheme == "full":
        ok = len(values) == 4 * dim
    elif scheme == "sparse":
        w = index_width(dim)
        nnz = len(indices) // w
        ok = len(indices) % w == 0 and nnz <= dim and len(values) == 4 * nnz
    elif scheme == "seeded":
        ok = 1 <= k <= dim and len(values) == 4 * k
    elif scheme == "quant":
        ok = (2 <= bits <= 8 and block >= 1 and len(scales) == 4 * -(-dim // block)
              and len(values) == -(-dim * bits // 8))
    else:  # lowrank: the size depends on the receiver's layout (its decoder checks)
        ok = rank >= 1 and len(values) % 4 == 0
    if not ok:
        raise RejectedMessage("bad_compressed", f"{scheme}: sizes do not match d={dim}")
    return CompressedBody(scheme, dim, values, base, num_samples, indices, k, bits, block,
                          scales, rank, version)
