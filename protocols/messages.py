"""Frozen message types that travel between peers.

Every message is an Envelope: who sent it (binary PeerID), for which swarm, which
round and sequence number, when (sender's clock, informational only), a kind, and a
kind-specific body. Bodies are small frozen dataclasses; tensors travel as
TensorPayload: raw little-endian bytes plus dtype and shape, never pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

WIRE_VERSION = 1

#: dtypes a tensor may travel as (little-endian numpy type strings).
ALLOWED_DTYPES: frozenset[str] = frozenset({"<f4", "<f2", "<f8"})


class Kind(StrEnum):
    """What a message carries; the string is its wire value and its signing domain."""

    UPDATE = "update"  # a peer's model after local training (gossip)
    GLOBAL = "global"  # a FedAvg server's aggregated model for a round
    STATE = "state"  # answer to PULL: the sender's current model at its current round
    PULL = "pull"  # "send me your current model": a (re)joining peer catching up
    HISTORY = "history"  # a forwarded signed UPDATE (SybilWall history gossip) + hops
    PING = "ping"  # liveness probe (MoDeST aggregator selection)
    PONG = "pong"  # answer to PING
    DIFF = "diff"  # compressed gossip: a keyframe or a compressed difference (CompressedBody)
    RESYNC = "resync"  # "my copy of you is out of sync: send me a keyframe"


#: kinds whose body is a ModelBody (a tensor that must match the receiver's model)
MODEL_KINDS: frozenset[Kind] = frozenset({Kind.UPDATE, Kind.GLOBAL, Kind.STATE})
#: kinds whose body is a RecordBody
RECORD_KINDS: frozenset[Kind] = frozenset({Kind.HISTORY})
#: kinds whose body is a CompressedBody
COMPRESSED_KINDS: frozenset[Kind] = frozenset({Kind.DIFF})

#: version of the compressed body layout (field "zv")
COMPRESSED_VERSION = 1
#: wire schemes of a CompressedBody: "full" is a keyframe (the public copy itself, d
#: float32 values); the others are a compressed difference to apply on version ``base``
COMPRESSED_SCHEMES: frozenset[str] = frozenset({"full", "sparse", "seeded", "quant", "lowrank"})


def _little_endian(array: NDArray[np.floating]) -> NDArray[np.floating]:
    """``array`` C-contiguous and little-endian (itself when it already is)."""
    arr = np.ascontiguousarray(array)
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False)


@dataclass(frozen=True)
class TensorPayload:
    """A flat tensor as raw little-endian bytes; ``data`` length = prod(shape) * itemsize.

    ``data`` is ``bytes`` when built from an array, and a read-only ``memoryview`` of
    the received message when decoded (no copy of the tensor: it keeps that message's
    bytes alive, which the receiver holds anyway)."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes | memoryview

    @classmethod
    def from_array(cls, array: NDArray[np.floating]) -> TensorPayload:
        """Little-endian, C-contiguous copy of ``array``."""
        le = _little_endian(array)
        return cls(dtype=le.dtype.str, shape=tuple(int(s) for s in le.shape), data=le.tobytes())

    @classmethod
    def view_of(cls, array: NDArray[np.floating]) -> TensorPayload:
        """``from_array`` without the copy when ``array`` is already little-endian and
        C-contiguous: a payload that is encoded at once (a broadcast), while ``array``
        does not change; it must not be kept."""
        le = _little_endian(array)
        return cls(dtype=le.dtype.str, shape=tuple(int(s) for s in le.shape),
                   data=le.reshape(-1).data.cast("B"))

    def to_array(self) -> NDArray[np.floating]:
        """A read-only view of the bytes as a numpy array (no copy); the same array
        object on every call (a payload shared by many receivers is viewed once; it is
        read-only, so sharing it is safe; cached as ``all_finite`` is, and for the same
        reason not with ``functools.cached_property``)."""
        arr: NDArray[np.floating] | None = self.__dict__.get("_array")
        if arr is None:
            arr = np.frombuffer(self.data, dtype=np.dtype(self.dtype)).reshape(self.shape)
            object.__setattr__(self, "_array", arr)
        return arr

    @property
    def all_finite(self) -> bool:
        """No NaN or Inf in the tensor (computed once per payload object: a payload
        shared by many receivers, as in the simulator, is scanned once).

        Not ``functools.cached_property``: on Python 3.11 it takes one lock per class
        attribute, shared by every instance, so the 24 peers of a launch worker queued
        on it in their validators (py-spy: a quarter of a 64-peer worker's samples).
        Two threads computing the same value at once is harmless."""
        cached: bool | None = self.__dict__.get("_all_finite")
        if cached is None:
            cached = bool(np.isfinite(self.to_array()).all())
            object.__setattr__(self, "_all_finite", cached)
        return cached


@dataclass(frozen=True)
class ModelBody:
    """Body of UPDATE and GLOBAL messages: the flattened model and its sample count."""

    tensor: TensorPayload
    num_samples: int = 0


@dataclass(frozen=True)
class RecordBody:
    """Body of HISTORY: another peer's signed message, verbatim, and how far it travelled.

    ``inner`` is checked by the receiver like any message of its origin (signature,
    swarm, shape, finiteness), so a forwarder cannot forge what the origin sent;
    ``hops`` is 2 for a vector forwarded once (1 is the direct receipt).
    """

    inner: bytes
    hops: int


@dataclass(frozen=True)
class CompressedBody:
    """Body of DIFF: the sender's public copy (``scheme="full"``, a keyframe) or a
    compressed difference q to add to the copy the receiver holds at version ``base``
    (the seq of the sender's previous DIFF to it); see rumor.protocols.choco.

    Bytes are little-endian. ``values``: float32 (full, sparse, seeded, lowrank) or the
    packed ``bits``-bit codes (quant). ``indices`` (sparse): sorted unique uint16 when
    ``dim`` <= 65536, else uint32. ``k`` (seeded): how many coordinates the shared seed
    picks. ``scales`` (quant): one float32 per ``block`` coordinates. ``rank`` (lowrank).
    """

    scheme: str
    dim: int
    values: bytes
    base: int = 0
    num_samples: int = 0
    indices: bytes = b""
    k: int = 0
    bits: int = 0
    block: int = 0
    scales: bytes = b""
    rank: int = 0
    version: int = COMPRESSED_VERSION


def index_width(dim: int) -> int:
    """Bytes per sparse index: 2 when every index fits in uint16, else 4."""
    return 2 if dim <= 1 << 16 else 4


@dataclass(frozen=True)
class EmptyBody:
    """Body of PULL, PING, PONG and RESYNC: the envelope's header says everything."""


Body = ModelBody | RecordBody | CompressedBody | EmptyBody


@dataclass(frozen=True)
class Envelope:
    """A decoded, validated message."""

    kind: Kind
    swarm: str
    sender: bytes
    round: int
    seq: int
    sent_at: float
    body: Body
    signature: bytes = field(default=b"", repr=False)
    version: int = WIRE_VERSION
