"""Plain averaging."""

from __future__ import annotations

from torch import Tensor

from rumor.aggregation.registry import register


@register("mean")
def mean(updates: Tensor, *, own: Tensor | None = None, f: int = 0) -> Tensor:
    """Uniform average over {own} ∪ updates: x = (1/n) Σ_j u_j. Ignores f.

    Same as byzfl's Average.
    """
    if own is None:
        return updates.mean(dim=0)
    return (updates.sum(dim=0) + own.to(updates.dtype)) / (updates.shape[0] + 1)
