"""MoDeST sampling: who trains and who aggregates in round r, without coordination.

Every peer orders all peer ids it knows by ``MD5(peer_id || r)`` (``r`` as 8 bytes,
big endian) and takes the first ``s`` it believes active: that is the sample of round
r. The aggregators are the first ``a`` of the sample, in that order, that answer a
ping. Two peers with the same view of who is active compute the same sample; a peer
whose view still holds a crashed peer computes a sample with that peer in it, and the
ping (or the round timeout) finds it out. Defaults s=10, a=1 (de Vos et al., MoDeST).

Pure: hashing only, no I/O, no clock. The "active" view and the ping answers come
from the caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable
from typing import TypeVar

from rumor.protocols.errors import ConfigError

SAMPLE_SIZE = 10
AGGREGATORS = 1

T = TypeVar("T")


def sample_key(peer_id: str, round_: int) -> bytes:
    """MD5(peer_id || round) where round is 8 bytes big endian."""
    if round_ < 0:
        raise ConfigError(f"round must be >= 0, got {round_}")
    return hashlib.md5(peer_id.encode() + round_.to_bytes(8, "big"),
                       usedforsecurity=False).digest()


def round_order(peers: Iterable[str], round_: int) -> list[str]:
    """All ``peers`` sorted by their key for ``round_`` (ties, impossible in practice,
    by id)."""
    return sorted(set(peers), key=lambda p: (sample_key(p, round_), p))


def sample(peers: Iterable[str], round_: int, s: int = SAMPLE_SIZE,
           active: Collection[str] | None = None) -> list[str]:
    """The first ``s`` peers of round ``round_``'s order that are in ``active``
    (default: all of ``peers``), in that order."""
    if s < 1:
        raise ConfigError(f"sample size must be >= 1, got {s}")
    out: list[str] = []
    for p in round_order(peers, round_):
        if active is None or p in active:
            out.append(p)
            if len(out) == s:
                break
    return out


def aggregators(sample_: Iterable[T], answers: Callable[[T], bool],
                a: int = AGGREGATORS) -> list[T]:
    """The first ``a`` peers of ``sample_`` (in order) for which ``answers(peer)``
    (a ping) is True; ``answers`` is not called past the a-th answer."""
    if a < 1:
        raise ConfigError(f"number of aggregators must be >= 1, got {a}")
    picked: list[T] = []
    for p in sample_:
        if answers(p):
            picked.append(p)
            if len(picked) == a:
                break
    return picked
