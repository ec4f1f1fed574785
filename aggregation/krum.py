"""Krum and Multi-Krum (Blanchard et al., 2017)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from rumor.aggregation._linalg import (
    pairwise_sq_dists,
    row,
    row_count,
    smallest_norm_row,
    stable_smallest,
    weighted_sum,
)
from rumor.aggregation.registry import register
from rumor.protocols.errors import AggregationError

Neighbours = Literal["paper", "byzfl"]


def krum_scores(
    updates: Tensor, own: Tensor | None, f: int, neighbours: Neighbours = "paper"
) -> Tensor:
    """score_i = Σ of the k smallest ||x_i - x_j||² over j != i, x = {own} ∪ updates.

    k = n - f - 2 (the paper) or n - f - 1 (``neighbours="byzfl"``, byzfl's Krum).
    Distances come from one Gram matrix of the vectors centred at own (else at the row
    of smallest norm): ||a||² + ||b||² - 2a·b, clamped at 0. Returns (n,) float64.
    """
    n = row_count(updates, own)
    if neighbours not in ("paper", "byzfl"):
        raise AggregationError(f"neighbours must be 'paper' or 'byzfl', got {neighbours!r}")
    k = n - f - (2 if neighbours == "paper" else 1)
    center = own if own is not None else smallest_norm_row(updates, None)
    dists = pairwise_sq_dists(updates, own, center)
    dists.fill_diagonal_(torch.inf)
    return dists.topk(k, dim=1, largest=False, sorted=False).values.sum(dim=1)


@register("krum", min_honest=2, min_extra=2)
def krum(
    updates: Tensor, *, own: Tensor | None = None, f: int = 0, neighbours: Neighbours = "paper"
) -> Tensor:
    """The vector of {own} ∪ updates with the smallest Krum score; needs n > 2f + 2.

    i* = argmin_i Σ_{j ∈ N_k(i)} ||x_i - x_j||², N_k(i) = the k nearest others,
    k = n - f - 2 as in the paper. ``neighbours="byzfl"`` uses k = n - f - 1 like
    byzfl's Krum (which also only checks n > 2f). Ties go to the lower index (own first).
    """
    scores = krum_scores(updates, own, f, neighbours)
    return row(updates, own, int(stable_smallest(scores, 1)[0]))


@register("multi-krum", min_honest=2, min_extra=2)
def multi_krum(
    updates: Tensor,
    *,
    own: Tensor | None = None,
    f: int = 0,
    m: int | None = None,
    neighbours: Neighbours = "paper",
) -> Tensor:
    """Mean of the m vectors of {own} ∪ updates with the smallest Krum scores.

    m defaults to n - f (byzfl's MultiKrum always uses n - f); needs 1 <= m <= n and
    n > 2f + 2. Scores as in ``krum`` (k = n - f - 2, or n - f - 1 with
    ``neighbours="byzfl"``). Ties go to the lower index.
    """
    n = row_count(updates, own)
    m = n - f if m is None else m
    if not 1 <= m <= n:
        raise AggregationError(f"multi-krum needs 1 <= m <= n, got m={m}, n={n}")
    chosen = stable_smallest(krum_scores(updates, own, f, neighbours), m)
    w = torch.zeros(n, dtype=torch.float64)
    w[chosen] = 1.0 / m
    return weighted_sum(updates, own, w.to(updates.device))
