"""Coordinate-wise median."""

from __future__ import annotations

import torch
from torch import Tensor

from rumor.aggregation._linalg import CHUNK
from rumor.aggregation.registry import register, with_own


def coordinate_median(x: Tensor) -> Tensor:
    """Per-coordinate median of x (n, d); for even n the mean of the two middle values.

    torch.median gives the lower middle s_m (n = 2m); the upper middle s_{m+1} is then
    s_m where more than m values are <= s_m (ties), else the smallest value > s_m, found
    in one chunked pass. No full sort.
    """
    n = x.shape[0]
    lower = x.median(dim=0).values
    if n % 2 == 1:
        return lower
    upper = torch.empty_like(lower)
    for start in range(0, x.shape[1], CHUNK):
        block = x[:, start : start + CHUNK]
        low = lower[start : start + CHUNK]
        above = block > low
        nearest = torch.where(above, block, torch.inf).amin(dim=0)
        tied = (~above).sum(dim=0) > n // 2
        upper[start : start + CHUNK] = torch.where(tied, low, nearest)
    return (lower + upper) / 2


@register("median", min_honest=2)
def median(updates: Tensor, *, own: Tensor | None = None, f: int = 0) -> Tensor:
    """x_k = median_j(u_jk) per coordinate over {own} ∪ updates; needs n > 2f.

    Even n: mean of the two middle values, as byzfl's Median (numpy median /
    torch.quantile). byzfl does not check n > 2f; we do (f is only validated).
    """
    return coordinate_median(with_own(updates, own))
