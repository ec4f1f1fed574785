"""Shared test helpers: deterministic identities and message builders."""

from __future__ import annotations

import hashlib

import numpy as np

from rumor.protocols import codec
from rumor.protocols.identity import Identity
from rumor.protocols.messages import Kind, ModelBody, TensorPayload

SWARM = "test-swarm"


def ident(i: int) -> Identity:
    return Identity.from_seed(hashlib.sha256(f"test/{i}".encode()).digest())


def update_bytes(
    sender: Identity,
    vector: np.ndarray,
    *,
    round_: int = 0,
    seq: int = 1,
    swarm: str = SWARM,
    kind: Kind = Kind.UPDATE,
    sign: bool = True,
    num_samples: int = 10,
) -> bytes:
    return codec.encode(
        kind,
        swarm=swarm,
        sender=sender,
        round_=round_,
        seq=seq,
        sent_at=0.0,
        body=ModelBody(TensorPayload.from_array(vector.astype(np.float32)), num_samples),
        sign=sign,
    )
