"""Shared one-pass kernels over {own} ∪ updates without ever stacking them.

Every function takes ``updates`` (r, d) and an optional ``own`` (d,) that acts as an
extra first row (row 0), and walks the columns in chunks of CHUNK: temporaries stay in
cache, and no (n, d) copy (torch.cat) or (n, n, d) temporary is made. Statistics come
back in float64.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

CHUNK = 4096


def chunks(
    updates: Tensor, own: Tensor | None, size: int = CHUNK
) -> Iterator[tuple[slice, Tensor]]:
    """(columns, block) pairs; block is {own} ∪ updates restricted to the columns."""
    for start in range(0, updates.shape[1], size):
        cols = slice(start, start + size)
        block = updates[:, cols]
        if own is not None:
            block = torch.cat([own[cols].to(updates.dtype).unsqueeze(0), block])
        yield cols, block


def row_count(updates: Tensor, own: Tensor | None) -> int:
    return updates.shape[0] + (own is not None)


def sq_dists_to(updates: Tensor, own: Tensor | None, y: Tensor) -> Tensor:
    """||x_i - y||² for every row x_i of {own} ∪ updates; (n,) float64.

    From the differences (not the Gram expansion): exact up to rounding even when the
    rows are far from the origin and close to y.
    """
    out = torch.zeros(row_count(updates, own), dtype=torch.float64, device=updates.device)
    y = y.to(updates.dtype)
    for cols, block in chunks(updates, own):
        diff = block - y[cols]
        out += torch.linalg.vecdot(diff, diff).to(torch.float64)
    return out


def gram(
    updates: Tensor, own: Tensor | None, center: Tensor | None = None, exact: bool = False
) -> Tensor:
    """G_ij = (x_i - c)·(x_j - c) over {own} ∪ updates, (n, n) float64, c = center or 0.

    Chunked matmuls in the input dtype (float64 when ``exact``), summed in float64.
    """
    n = row_count(updates, own)
    g = torch.zeros(n, n, dtype=torch.float64, device=updates.device)
    for cols, block in chunks(updates, own):
        if center is not None:
            block = block - center[cols].to(block.dtype)
        if exact:
            block = block.to(torch.float64)
        g += (block @ block.T).to(torch.float64)
    return g


def pairwise_sq_dists(updates: Tensor, own: Tensor | None, center: Tensor | None) -> Tensor:
    """(n, n) float64 squared distances ||a||² + ||b||² - 2a·b (Gram form), clamped at 0.

    ``center`` (an honest-looking vector, e.g. own) is subtracted first: distances are
    translation invariant, and centring keeps the Gram form from cancelling
    catastrophically when all vectors are far from the origin. Diagonal is exactly 0.
    """
    g = gram(updates, own, center)
    sq = g.diagonal()
    d = (sq[:, None] + sq[None, :] - 2.0 * g).clamp_min_(0.0)
    d.fill_diagonal_(0.0)
    return d


def weighted_sum(updates: Tensor, own: Tensor | None, w: Tensor) -> Tensor:
    """Σ_i w_i x_i over {own} ∪ updates (w[0] is own's), in the dtype of updates."""
    w = w.to(updates.dtype)
    if own is None:
        return w @ updates
    return w[1:] @ updates + w[0] * own.to(updates.dtype)


def weighted_sum_of_diffs(updates: Tensor, own: Tensor | None, w: Tensor, y: Tensor) -> Tensor:
    """Σ_i w_i (x_i - y) over {own} ∪ updates as float64 (d,); no cancellation against y."""
    out = torch.empty(updates.shape[1], dtype=torch.float64, device=updates.device)
    wx, yx = w.to(updates.dtype), y.to(updates.dtype)
    for cols, block in chunks(updates, own):
        out[cols] = wx @ (block - yx[cols])
    return out


def row(updates: Tensor, own: Tensor | None, i: int) -> Tensor:
    """A fresh copy of row i of {own} ∪ updates."""
    if own is not None:
        return own.to(updates.dtype).clone() if i == 0 else updates[i - 1].clone()
    return updates[i].clone()


def smallest_norm_row(updates: Tensor, own: Tensor | None) -> Tensor:
    """The row of smallest norm: a cheap centre that no huge outlier can be."""
    norms = sq_dists_to(updates, own, torch.zeros_like(updates[0]))
    return row(updates, own, int(torch.argmin(norms)))


def stable_smallest(scores: Tensor, k: int) -> Tensor:
    """Indices of the k smallest scores; ties go to the lower index (deterministic)."""
    return torch.sort(scores, stable=True).indices[:k]
