"""Random-k sparsification with seeded indices: only the values travel.

    k = max(1, ceil(ratio * d));  S = the k coordinates i with the smallest
    h(seed, i) = splitmix64(seed + (i + 1) * 0x9E3779B97F4A7C15)   (ties: lower i)
    C(x)_i = x_i for i in S, else 0

S is a uniform random k-subset fixed by ``seed``; sender and receiver derive the same
seed from the message header (sender, round, seq: rumor.protocols.choco.shared_seed),
so the wire carries k float32 values and nothing else (the ``seeded`` scheme).
Contractive in expectation: E||C(x) - x||² = (1 - k/d) ||x||² (delta = k/d). Not
scaled by d/k (the unbiased variant is not contractive).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from rumor.aggregation.compression.base import (
    F32,
    Compressed,
    Param,
    check_finite,
    ratio,
    register_compressor,
    register_scheme,
)
from rumor.aggregation.compression.topk import top_count
from rumor.aggregation.layout import Layout
from rumor.protocols.errors import RejectedMessage

_MASK = (1 << 64) - 1


def splitmix64(seed: int, d: int) -> npt.NDArray[np.uint64]:
    """h(seed, i) for i in [0, d), vectorized (uint64 arithmetic wraps mod 2**64)."""
    with np.errstate(over="ignore"):
        i = np.arange(1, d + 1, dtype=np.uint64)
        z = np.uint64(seed & _MASK) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def seeded_indices(seed: int, d: int, k: int) -> npt.NDArray[np.int64]:
    """The sorted k-subset S of [0, d) the seed picks (module docstring)."""
    if k >= d:
        return np.arange(d, dtype=np.int64)
    h = splitmix64(seed, d)
    thr = np.partition(h, k - 1)[k - 1]
    below = np.flatnonzero(h < thr)
    ties = np.flatnonzero(h == thr)[: k - below.size]
    return np.sort(np.concatenate([below, ties])).astype(np.int64)


class RandK:
    def __init__(self, *, ratio: float, layout: Layout | None = None, seed: int = 0) -> None:
        self.ratio = ratio
        self.name = f"randk:ratio={ratio}"

    def compress(self, x: F32, *, seed: int) -> Compressed:
        d = x.shape[0]
        k = top_count(self.ratio, d)
        idx = seeded_indices(seed, d, k)
        return Compressed("seeded", d, x[idx].astype(np.float32), k=k)


register_compressor("randk", "k = ceil(ratio d) coordinates chosen by a seed both sides "
                    "derive (values only)",
                    {"ratio": Param(ratio, 0.01, "fraction of coordinates kept, in (0, 1]")},
                    gamma=0.3)(RandK)


@register_scheme("seeded")
def decode_seeded(c: Compressed, seed: int, layout: Layout) -> F32:
    """Scatter k values at seeded_indices(seed, d, k); checks 1 <= k <= d and sizes."""
    if not 1 <= c.k <= c.dim or c.values.shape != (c.k,):
        raise RejectedMessage("bad_compressed", f"seeded: k={c.k}, {c.values.size} values, "
                                                f"d={c.dim}")
    check_finite(c.values, "seeded values")
    out = np.zeros(c.dim, dtype=np.float32)
    out[seeded_indices(seed, c.dim, c.k)] = c.values
    return out
