"""Coordinate-wise trimmed mean."""

from __future__ import annotations

import torch
from torch import Tensor

from rumor.aggregation._linalg import chunks
from rumor.aggregation.median import BLOCK
from rumor.aggregation.registry import register


def coordinate_trimmed_mean(x: Tensor, f: int) -> Tensor:
    """Mean of sort(x_1k .. x_nk)[f : n - f] per coordinate k, without sorting.

    With s_1 <= .. <= s_n, lo = s_{f+1} and hi = s_{n-f} (two topk(f + 1) calls):
    Σ_{i=f+1}^{n-f} s_i = Σ_i clamp(s_i, lo, hi) - f·lo - f·hi, exact with ties, and the
    clamp keeps f huge values from cancelling the honest ones (float64 sum).
    """
    n = x.shape[0]
    if f == 0:
        return x.mean(dim=0)
    lo = x.topk(f + 1, dim=0, largest=False, sorted=False).values.amax(dim=0)
    hi = x.topk(f + 1, dim=0, largest=True, sorted=False).values.amin(dim=0)
    kept = x.clamp(lo, hi).sum(dim=0, dtype=torch.float64)
    kept -= f * (lo.to(torch.float64) + hi.to(torch.float64))
    return (kept / (n - 2 * f)).to(x.dtype)


@register("trimmed-mean", min_honest=2)
def trimmed_mean(updates: Tensor, *, own: Tensor | None = None, f: int = 0) -> Tensor:
    """Coordinate-wise mean after dropping the f largest and f smallest values.

    x_k = mean(sort(u_1k .. u_nk)[f : n - f]) over {own} ∪ updates; needs n > 2f.
    Same as byzfl's TrMean (which sorts).
    """
    out = torch.empty(updates.shape[1], dtype=updates.dtype, device=updates.device)
    for cols, block in chunks(updates, own, BLOCK):
        out[cols] = coordinate_trimmed_mean(block, f)
    return out
