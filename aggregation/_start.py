"""Starting points shared by the iterative rules (geometric median, centered clipping)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from rumor.aggregation.median import coordinate_median
from rumor.protocols.errors import AggregationError

Start = Literal["own", "median", "mean", "zero"]


def start_point(x: Tensor, own: Tensor | None, start: Start | Tensor) -> Tensor:
    """The initial iterate as a float64 (d,) tensor: own, coordinate-wise median, mean,
    zero (byzfl's choice), or a given (d,) tensor."""
    if isinstance(start, Tensor):
        if start.shape != x.shape[1:]:
            raise AggregationError(f"start must have shape ({x.shape[1]},)")
        return start.to(torch.float64).clone()
    if start == "own":
        if own is None:
            raise AggregationError("start='own' needs own")
        return own.to(torch.float64).clone()
    if start == "median":
        return coordinate_median(x).to(torch.float64)
    if start == "mean":
        return x.mean(dim=0).to(torch.float64)
    if start == "zero":
        return torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    raise AggregationError(f"unknown start {start!r}: own, median, mean, zero or a tensor")
