"""Centered clipping (Karimireddy et al., 2021; ClippedGossip, He et al., 2022), stateless."""

from __future__ import annotations

import torch
from torch import Tensor

from rumor.aggregation._linalg import row_count, sq_dists_to, weighted_sum_of_diffs
from rumor.aggregation._start import Start, start_point
from rumor.aggregation.registry import register


@register("centered-clipping", min_honest=2)
def centered_clipping(
    updates: Tensor,
    *,
    own: Tensor | None = None,
    f: int = 0,
    tau: float | None = None,
    iters: int = 3,
    start: Start | Tensor | None = None,
) -> Tensor:
    """v <- v + (1/n) Σ_j clip(x_j - v, tau), ``iters`` times, over {own} ∪ updates.

    clip(y, tau) = y · min(1, tau / ||y||). v starts at own, or at the coordinate-wise
    median when own is None (the mean would let one huge input move the start
    arbitrarily far; pass start="mean" for it). ``tau=None`` picks, once, the median of
    ||x_j - v_0||, which honest vectors bound when n > 2f. Stateless: byzfl's
    CenteredClipping instead starts at zero and then at its previous output (hidden
    state), with tau=100, L=1; this rule with start="zero", tau=100, iters=1 and
    own=None equals a fresh byzfl instance. Needs n > 2f.
    """
    if start is None:
        start = "own" if own is not None else "median"
    v = start_point(updates, own, start)
    n = row_count(updates, own)
    radius = None if tau is None else torch.tensor(float(tau), dtype=torch.float64)
    for _ in range(iters):
        dist = sq_dists_to(updates, own, v).sqrt_()
        if radius is None:
            radius = dist.median()
        scale = torch.where(dist > radius, radius / dist, torch.ones_like(dist)) / n
        v = v + weighted_sum_of_diffs(updates, own, scale, v)
    return v
