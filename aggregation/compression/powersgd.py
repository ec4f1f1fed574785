"""PowerSGD: rank-r approximation of every weight matrix by one warm-started power step.

For each layer of the model layout whose tensor has >= 2 dims, M = the layer as an
(m, n) matrix (m = shape[0], n = the rest), factored when r (m + n) < m n::

    P = orth(M Q_prev);   Q = M^T P;   C(M) = P Q^T        (Vogels et al. 2019)

Q_prev is this compressor's Q of the previous call (warm start: the power iteration
continues across rounds; the first Q is seeded Gaussian). Every other layer (biases,
small matrices) travels raw. P has orthonormal columns, so C(M) = P P^T M is the
projection of M on span(P): ||C(M) - M||² = ||M||² - ||P^T M||² <= ||M||², contractive
(delta > 0 unless M is orthogonal to P). The warm-start state is this object's only
state (``q``); the receiver needs none of it (P and Q travel).

Travels as the ``lowrank`` scheme: float32 values, per layer in layout order, P (m x r,
C order) then Q (n x r) for a factored layer and the raw values otherwise; the receiver
derives the same plan from its own layout and r, and rejects a rank no layer can take
or a size that does not match.
"""

from __future__ import annotations

import numpy as np

from rumor.aggregation.compression.base import (
    F32,
    Compressed,
    Param,
    check_finite,
    int_in,
    layout_dim,
    register_compressor,
    register_scheme,
)
from rumor.aggregation.layout import Layout
from rumor.protocols.errors import RejectedMessage

MAX_RANK = 1024

#: one layer's part of the plan: (start, stop, m, n, factored)
Part = tuple[int, int, int, int, bool]


def plan(layout: Layout, rank: int) -> list[Part]:
    out: list[Part] = []
    for ls in layout:
        size = ls.stop - ls.start
        if len(ls.shape) >= 2:
            m = int(ls.shape[0])
            n = size // max(1, m)
            out.append((ls.start, ls.stop, m, n, rank * (m + n) < m * n))
        else:
            out.append((ls.start, ls.stop, size, 1, False))
    return out


def payload_size(parts: list[Part], rank: int) -> int:
    return sum(rank * (m + n) if f else stop - start for start, stop, m, n, f in parts)


def max_rank(layout: Layout) -> int:
    """The largest rank at which some layer is still factored (0: none can be)."""
    best = 0
    for ls in layout:
        if len(ls.shape) >= 2:
            m = int(ls.shape[0])
            n = (ls.stop - ls.start) // max(1, m)
            best = max(best, (m * n - 1) // (m + n))
    return best


class PowerSGD:
    def __init__(self, *, rank: int, layout: Layout, seed: int = 0) -> None:
        self.rank = rank
        self.layout = layout
        self.name = f"powersgd:rank={rank}"
        self.parts = plan(layout, rank)
        rng = np.random.default_rng(seed)
        self.q: dict[int, F32] = {
            start: rng.standard_normal((n, rank)).astype(np.float32)
            for start, _, _, n, f in self.parts if f}

    def compress(self, x: F32, *, seed: int) -> Compressed:
        if x.shape[0] != layout_dim(self.layout):
            raise ValueError(f"powersgd: vector of {x.shape[0]} for a layout of "
                             f"{layout_dim(self.layout)}")
        chunks: list[F32] = []
        for start, stop, m, n, factored in self.parts:
            if not factored:
                chunks.append(x[start:stop])
                continue
            mat = x[start:stop].reshape(m, n).astype(np.float64)
            p, _ = np.linalg.qr(mat @ self.q[start])
            q = mat.T @ p
            if np.isfinite(q).all() and np.abs(q).sum() > 0:
                self.q[start] = q.astype(np.float32)  # warm start for the next call
            chunks += [p.astype(np.float32).reshape(-1), q.astype(np.float32).reshape(-1)]
        values = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return Compressed("lowrank", x.shape[0], values.astype(np.float32), rank=self.rank)


register_compressor("powersgd", "rank-r factors P, Q of every weight matrix (warm-started "
                    "power step), other layers raw",
                    {"rank": Param(int_in(1, MAX_RANK), 2, "rank r of the factors")},
                    gamma=0.3)(PowerSGD)


@register_scheme("lowrank")
def decode_lowrank(c: Compressed, seed: int, layout: Layout) -> F32:
    """x = per layer P Q^T or the raw values; checks d, rank vs layer shapes, size."""
    if c.dim != layout_dim(layout):
        raise RejectedMessage("shape_mismatch", f"lowrank: d={c.dim} vs {layout_dim(layout)}")
    top = max_rank(layout)
    if not 1 <= c.rank <= top:
        raise RejectedMessage("bad_compressed", f"lowrank: rank {c.rank} outside [1, {top}] "
                                                "for this model's layers")
    parts = plan(layout, c.rank)
    if c.values.shape != (payload_size(parts, c.rank),):
        raise RejectedMessage("bad_compressed", f"lowrank: {c.values.size} values, "
                                                f"{payload_size(parts, c.rank)} expected")
    check_finite(c.values, "lowrank values")
    out = np.empty(c.dim, dtype=np.float32)
    pos, r = 0, c.rank
    with np.errstate(over="ignore", invalid="ignore"):
        for start, stop, m, n, factored in parts:
            if not factored:
                out[start:stop] = c.values[pos:pos + stop - start]
                pos += stop - start
                continue
            p = c.values[pos:pos + m * r].reshape(m, r)
            q = c.values[pos + m * r:pos + r * (m + n)].reshape(n, r)
            pos += r * (m + n)
            out[start:stop] = (p @ q.T).reshape(-1)
    return out
