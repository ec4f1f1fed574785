"""Shared one-pass kernels: distances, Gram matrices, weighted sums (float64 results).

All work on column chunks so that temporaries stay small (CHUNK columns at a time) and
no (n, n, d) or (n, d) float64 copy is ever made.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK = 1 << 16


def sq_dists_to(x: Tensor, y: Tensor) -> Tensor:
    """Squared Euclidean distances ||x_i - y||² of each row of x (n, d) to y (d,); (n,) f64.

    Computed from the differences (not the Gram expansion), so it is exact up to rounding
    even when the rows are far from the origin and close to y.
    """
    out = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    y = y.to(x.dtype)
    for start in range(0, x.shape[1], CHUNK):
        diff = x[:, start : start + CHUNK] - y[start : start + CHUNK]
        out += diff.square().sum(dim=1, dtype=torch.float64)
    return out


def gram(x: Tensor, center: Tensor | None = None, exact: bool = False) -> Tensor:
    """G_ij = (x_i - c)·(x_j - c) as an (n, n) float64 matrix, c = center or 0.

    Chunked matmuls in the input dtype (in float64 when ``exact``), accumulated across
    chunks in float64.
    """
    n = x.shape[0]
    g = torch.zeros(n, n, dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[1], CHUNK):
        block = x[:, start : start + CHUNK]
        if center is not None:
            block = block - center[start : start + CHUNK].to(x.dtype)
        if exact:
            block = block.to(torch.float64)
        g += (block @ block.T).to(torch.float64)
    return g


def pairwise_sq_dists(x: Tensor, center: Tensor | None = None) -> Tensor:
    """(n, n) float64 squared distances ||a||² + ||b||² - 2a·b (Gram form), clamped at 0.

    ``center`` (an honest-looking vector, e.g. own) is subtracted first: distances are
    translation invariant, and centring keeps the Gram form from cancelling
    catastrophically when all vectors are far from the origin. Diagonal is exactly 0.
    """
    g = gram(x, center)
    sq = g.diagonal()
    d = (sq[:, None] + sq[None, :] - 2.0 * g).clamp_min_(0.0)
    d.fill_diagonal_(0.0)
    return d


def weighted_sum(x: Tensor, w: Tensor) -> Tensor:
    """Σ_i w_i x_i for x (n, d) and w (n,), as one matrix-vector product in x's dtype."""
    return w.to(x.dtype) @ x


def smallest_norm_row(x: Tensor) -> Tensor:
    """The row of x with the smallest norm: a cheap centre no huge outlier can be."""
    return x[int(torch.argmin(torch.linalg.vector_norm(x, dim=1)))]


def stable_smallest(scores: Tensor, k: int) -> Tensor:
    """Indices of the k smallest scores; ties go to the lower index (deterministic)."""
    return torch.sort(scores, stable=True).indices[:k]


def weighted_sum_of_diffs(x: Tensor, w: Tensor, y: Tensor) -> Tensor:
    """Σ_i w_i (x_i - y) as a float64 (d,) tensor, chunked; no cancellation against y."""
    out = torch.empty(x.shape[1], dtype=torch.float64, device=x.device)
    wx = w.to(x.dtype)
    yx = y.to(x.dtype)
    for start in range(0, x.shape[1], CHUNK):
        stop = start + CHUNK
        out[start:stop] = wx @ (x[:, start:stop] - yx[start:stop])
    return out
