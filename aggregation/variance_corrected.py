"""Variance-corrected gossip averaging (the "Vanishing Variance" paper's merge)."""

from __future__ import annotations

from torch import Tensor

from rumor.aggregation.layout import Layout
from rumor.aggregation.registry import register, with_own
from rumor.aggregation.variance import Tau2From, variance_correct
from rumor.protocols.errors import AggregationError


@register("variance-corrected")
def variance_corrected(
    updates: Tensor,
    *,
    own: Tensor | None = None,
    f: int = 0,
    layout: Layout | None = None,
    own_weight: float = 0.5,
    tau2_from: Tau2From = "mean",
) -> Tensor:
    """merged = 0.5·own + 0.5·mean(updates), then variance correction per weight tensor.

    Per weight slice s of ``layout`` (default: the whole vector is one weight tensor):
    tau² = mean over updates and own of Var(x[s]); mu = mean(merged[s]);
    merged[s] <- mu + (merged[s] - mu)·sqrt(tau² / Var(merged[s])), population variance.
    Slices with is_weight False get the plain merged value; Var(merged[s]) ~ 0 is left
    as is. ``own_weight`` (default 0.5, the paper's) replaces the 0.5s. With no updates
    the result is own; with own None, merged = mean(updates). Ignores f; not robust.
    byzfl has no such rule.
    """
    if not 0.0 <= own_weight <= 1.0:
        raise AggregationError(f"own_weight must be in [0, 1], got {own_weight}")
    if own is not None and updates.shape[0] == 0:
        return own.clone()
    merged = updates.mean(dim=0)
    if own is not None:
        merged = own_weight * own.to(updates.dtype) + (1.0 - own_weight) * merged
    return variance_correct(merged, with_own(updates, own), layout, tau2_from=tau2_from)
