"""Plain averaging."""

from __future__ import annotations

from torch import Tensor

from rumor.aggregation.registry import register, with_own


@register("mean")
def mean(updates: Tensor, *, own: Tensor | None = None, f: int = 0) -> Tensor:
    """Uniform average over {own} ∪ updates: x = (1/n) Σ_j u_j. Ignores f.

    Same as byzfl's Average.
    """
    return with_own(updates, own).mean(dim=0)
