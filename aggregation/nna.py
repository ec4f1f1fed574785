"""Nearest-neighbour averaging, the aggregation step of MoNNA (Farhadkhani et al., 2023)."""

from __future__ import annotations

import torch
from torch import Tensor

from rumor.aggregation._linalg import sq_dists_to, stable_smallest, weighted_sum
from rumor.aggregation.registry import register
from rumor.protocols.errors import AggregationError


@register("nna", min_honest=1)
def nna(updates: Tensor, *, own: Tensor | None = None, f: int = 0) -> Tensor:
    """Drop the f received vectors farthest from own, average the rest with own.

    K = the r - f updates nearest to own (r = len(updates), Euclidean, ties to the lower
    index); x = (own + Σ_{j∈K} u_j) / (r - f + 1). Needs own and n = r + 1 > f (when
    r == f the result is own). One distance pass plus one matrix-vector product: O(n·d).
    Equals byzfl's MoNNA(f, idx=0) on [own, *updates] (byzfl also demands n > 2f) and
    row 0 of byzfl's NNM, which computes all n rows with an (n, n - f, d) temporary.
    """
    if own is None:
        raise AggregationError("nna needs own: it keeps the updates nearest to own")
    r = updates.shape[0]
    keep = r - f
    total = own.to(updates.dtype).clone()
    if keep > 0:
        chosen = stable_smallest(sq_dists_to(updates, None, own), keep)
        w = torch.zeros(r, dtype=updates.dtype, device=updates.device)
        w[chosen.to(updates.device)] = 1.0
        total += weighted_sum(updates, None, w)
    return total / (keep + 1)
