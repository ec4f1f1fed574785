"""Geometric median by Weiszfeld iterations (smoothed)."""

from __future__ import annotations

from torch import Tensor

from rumor.aggregation._linalg import sq_dists_to, weighted_sum
from rumor.aggregation._start import Start, start_point
from rumor.aggregation.registry import register


@register("geometric-median", min_honest=2)
def geometric_median(
    updates: Tensor,
    *,
    own: Tensor | None = None,
    f: int = 0,
    start: Start | Tensor = "median",
    eps: float = 1e-8,
    max_iter: int = 100,
    tol: float = 1e-7,
) -> Tensor:
    """argmin_z Σ_j ||x_j - z|| over {own} ∪ updates by Weiszfeld; needs n > 2f.

    z <- Σ_j β_j x_j / Σ_j β_j with β_j = 1 / max(||x_j - z||, eps), from ``start``
    (coordinate-wise median by default), until ||z' - z|| <= tol·(1 + ||z||) or
    ``max_iter`` steps. byzfl's GeometricMedian is this with start="zero", eps=nu=0.1,
    max_iter=T=3, tol=0 (and it drops rows containing inf first; we expect finite input).
    """
    z = start_point(updates, own, start)
    for _ in range(max_iter):
        beta = sq_dists_to(updates, own, z).sqrt_().clamp_min_(eps).reciprocal_()
        new = weighted_sum(updates, own, beta / beta.sum()).double()
        step = float((new - z).norm())
        z = new
        if step <= tol * (1.0 + float(z.norm())):
            break
    return z
