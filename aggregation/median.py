"""Coordinate-wise median."""

from __future__ import annotations

import torch
from torch import Tensor

from rumor.aggregation._linalg import chunks
from rumor.aggregation.registry import register

BLOCK = 1 << 14  # columns per torch.median call: cache-sized, no (n, d) copy


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
    above = x > lower
    nearest = torch.where(above, x, torch.inf).amin(dim=0)
    tied = (~above).sum(dim=0) > n // 2
    return (lower + torch.where(tied, lower, nearest)) / 2


@register("median", min_honest=2)
def median(updates: Tensor, *, own: Tensor | None = None, f: int = 0) -> Tensor:
    """x_k = median_j(u_jk) per coordinate over {own} ∪ updates; needs n > 2f.

    Even n: mean of the two middle values, as byzfl's Median (numpy median /
    torch.quantile). byzfl does not check n > 2f; we do (f is only validated).
    """
    out = torch.empty(updates.shape[1], dtype=updates.dtype, device=updates.device)
    for cols, block in chunks(updates, own, BLOCK):
        out[cols] = coordinate_median(block)
    return out
