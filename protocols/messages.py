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


@dataclass(frozen=True)
class TensorPayload:
    """A flat tensor as raw little-endian bytes; ``data`` length = prod(shape) * itemsize."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    @classmethod
    def from_array(cls, array: NDArray[np.floating]) -> TensorPayload:
        """Little-endian, C-contiguous copy of ``array``."""
        arr = np.ascontiguousarray(array)
        le = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        return cls(dtype=le.dtype.str, shape=tuple(int(s) for s in le.shape), data=le.tobytes())

    def to_array(self) -> NDArray[np.floating]:
        """A read-only view of the bytes as a numpy array (no copy)."""
        arr = np.frombuffer(self.data, dtype=np.dtype(self.dtype))
        return arr.reshape(self.shape)


@dataclass(frozen=True)
class ModelBody:
    """Body of UPDATE and GLOBAL messages: the flattened model and its sample count."""

    tensor: TensorPayload
    num_samples: int = 0


@dataclass(frozen=True)
class Envelope:
    """A decoded, validated message."""

    kind: Kind
    swarm: str
    sender: bytes
    round: int
    seq: int
    sent_at: float
    body: ModelBody
    signature: bytes = field(default=b"", repr=False)
    version: int = WIRE_VERSION
