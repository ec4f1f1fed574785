"""Coordinate-wise trimmed mean."""

from __future__ import annotations

import torch
from torch import Tensor

from rumor.aggregation._linalg import CHUNK
from rumor.aggregation.registry import register, with_own


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
    out = torch.empty(x.shape[1], dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[1], CHUNK):
        stop = start + CHUNK
        lo_c, hi_c = lo[start:stop], hi[start:stop]
        kept = x[:, start:stop].clamp(lo_c, hi_c).sum(dim=0, dtype=torch.float64)
        out[start:stop] = kept - f * (lo_c.double() + hi_c.double())
    return (out / (n - 2 * f)).to(x.dtype)


@register("trimmed-mean", min_honest=2)
def trimmed_mean(updates: Tensor, *, own: Tensor | None = None, f: int = 0) -> Tensor:
    """Coordinate-wise mean after dropping the f largest and f smallest values.

    x_k = mean(sort(u_1k .. u_nk)[f : n - f]) over {own} ∪ updates; needs n > 2f.
    Same as byzfl's TrMean (which sorts).
    """
    return coordinate_trimmed_mean(with_own(updates, own), f)
