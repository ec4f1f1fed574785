"""Krum and Multi-Krum (Blanchard et al., 2017)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from rumor.aggregation._linalg import pairwise_sq_dists, smallest_norm_row, stable_smallest
from rumor.aggregation.registry import register, with_own
from rumor.protocols.errors import AggregationError

Neighbours = Literal["paper", "byzfl"]


def krum_scores(
    x: Tensor, f: int, neighbours: Neighbours = "paper", center: Tensor | None = None
) -> Tensor:
    """score_i = Σ of the k smallest ||x_i - x_j||² over j != i; (n,) float64.

    k = n - f - 2 (the paper) or n - f - 1 (``neighbours="byzfl"``, byzfl's Krum).
    Distances come from one Gram matrix of the vectors centred at ``center`` (own if
    given, else the row of smallest norm): ||a||² + ||b||² - 2a·b, clamped at 0.
    """
    n = x.shape[0]
    if neighbours not in ("paper", "byzfl"):
        raise AggregationError(f"neighbours must be 'paper' or 'byzfl', got {neighbours!r}")
    k = n - f - (2 if neighbours == "paper" else 1)
    dists = pairwise_sq_dists(x, smallest_norm_row(x) if center is None else center)
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
    x = with_own(updates, own)
    scores = krum_scores(x, f, neighbours, own)
    return x[int(stable_smallest(scores, 1)[0])].clone()


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
    x = with_own(updates, own)
    n = x.shape[0]
    m = n - f if m is None else m
    if not 1 <= m <= n:
        raise AggregationError(f"multi-krum needs 1 <= m <= n, got m={m}, n={n}")
    chosen = stable_smallest(krum_scores(x, f, neighbours, own), m).to(x.device)
    return x.index_select(0, chosen).mean(dim=0)
