"""Shared test helpers: deterministic identities, message builders, an in-memory mesh."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rumor.protocols import codec
from rumor.protocols.identity import Identity
from rumor.protocols.messages import Kind, ModelBody, TensorPayload

if TYPE_CHECKING:
    from rumor.node.assembly import NodeConfig
    from rumor.node.transport.memory import MemoryHub

SWARM = "test-swarm"


async def until(what: str, cond: Callable[[], object], deadline: float = 30.0,
                poll: float = 0.05) -> None:
    """Await ``cond()`` being truthy, checked every ``poll`` s; AssertionError naming
    ``what`` after ``deadline`` s."""
    end = time.monotonic() + deadline
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:.0f} s waiting for {what}")
        await asyncio.sleep(poll)


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


async def memory_mesh(hub: MemoryHub, n: int, tmp: Path,
                      cfg: NodeConfig) -> list[tuple[Any, int, Any]]:
    """n real runtimes (peer i on shard i, data dir tmp/p{i}) over MemoryTransport,
    every pair connected; (runtime, start round, transport) each, not yet running."""
    from rumor.node.assembly import build_runtime
    from rumor.node.transport.memory import MemoryTransport

    rts = []
    for i in range(n):
        me = ident(i)
        tr = MemoryTransport(hub, me.peer_id)
        rt, start = build_runtime(dataclasses.replace(cfg, shard=i), me, tr,
                                  data_dir=tmp / f"p{i}")
        rts.append((rt, start, tr))
    for _, _, tr in rts:
        await tr.start()
    for _, _, tr in rts:
        for _, _, other in rts:
            if other is not tr:
                await tr.connect(other.local_id, [])
    return rts
