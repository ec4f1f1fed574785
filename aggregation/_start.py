"""Starting points shared by the iterative rules (geometric median, centered clipping)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from rumor.aggregation.mean import mean
from rumor.aggregation.median import median
from rumor.protocols.errors import AggregationError

Start = Literal["own", "median", "mean", "zero"]


def start_point(updates: Tensor, own: Tensor | None, start: Start | Tensor) -> Tensor:
    """The initial iterate over {own} ∪ updates as a float64 (d,) tensor: own, the
    coordinate-wise median, the mean, zero (byzfl's choice) or a given (d,) tensor."""
    d = updates.shape[1]
    if isinstance(start, Tensor):
        if start.shape != (d,):
            raise AggregationError(f"start must have shape ({d},), got {tuple(start.shape)}")
        return start.to(torch.float64).clone()
    if start == "own":
        if own is None:
            raise AggregationError("start='own' needs own")
        return own.to(torch.float64).clone()
    if start == "median":
        return median(updates, own=own).to(torch.float64)
    if start == "mean":
        return mean(updates, own=own).to(torch.float64)
    if start == "zero":
        return torch.zeros(d, dtype=torch.float64, device=updates.device)
    raise AggregationError(f"unknown start {start!r}: own, median, mean, zero or a tensor")
