"""Weighted averaging (sample counts, Metropolis-Hastings weights, reputations)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from rumor.aggregation._linalg import weighted_sum
from rumor.aggregation.mean import mean
from rumor.aggregation.registry import register
from rumor.protocols.errors import AggregationError


def normalised_weights(weights: Tensor | Sequence[float], n: int) -> Tensor:
    """Check ``weights`` (n finite, non-negative, positive sum) and return w / Σw (f64)."""
    w = torch.as_tensor(weights, dtype=torch.float64).detach().cpu()
    if w.shape != (n,):
        raise AggregationError(f"weights must have shape ({n},), got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise AggregationError("weights must be finite")
    if bool((w < 0).any()):
        raise AggregationError("weights must be non-negative")
    total = float(w.sum())
    if total <= 0.0:
        raise AggregationError("weights must have a positive sum")
    return w / total


@register("weighted-mean")
def weighted_mean(
    updates: Tensor,
    *,
    own: Tensor | None = None,
    f: int = 0,
    weights: Tensor | Sequence[float] | None = None,
) -> Tensor:
    """x = Σ_j w_j u_j / Σ_j w_j over {own} ∪ updates. Ignores f.

    ``weights`` holds one non-negative weight per vector, own's first when own is given
    (n = len(updates) + 1); they are normalised here. None means uniform (= "mean").
    AggregationError on a wrong length, a negative or non-finite weight, or a zero sum.
    byzfl has no weighted mean.
    """
    if weights is None:
        return mean(updates, own=own)
    w = normalised_weights(weights, updates.shape[0] + (own is not None))
    return weighted_sum(updates, own, w.to(updates.device))
