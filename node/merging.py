"""One merge step, shared by the simulator and the real node so they cannot drift.

FedAvg server: x = Σ_j n_j u_j / Σ_j n_j over the clients' updates (n_j = sample
counts; own model not included). Any other rule: ``rule(stack(updates), own=own, f=f,
**params)`` from rumor.aggregation, with ``layout=`` added for rules that act per
weight tensor (variance correction). No updates -> own unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from rumor import aggregation
from rumor.aggregation.layout import Layout
from rumor.protocols.events import ReceivedUpdate

FEDAVG = "fedavg"


def aggregator_names() -> list[str]:
    """Every name ``--aggregator`` takes: the registered rules, the stateful defenses
    (monna, sybilwall, ...), fedavg, and the composed ``vc:<rule>``."""
    return [*sorted({*aggregation.names(), *aggregation.defense_names()}), FEDAVG,
            "vc:<rule>"]


def needs_layout(name: str) -> bool:
    return name.startswith("variance") or name.startswith("vc:")


def resolve_rule(name: str) -> aggregation.Rule | None:
    """The registered rule, or None for FedAvg and stateful defenses (handled here)."""
    if name == FEDAVG or name in aggregation.DEFENSES:
        return None
    return aggregation.get(name)


def is_stateful(name: str) -> bool:
    return name in aggregation.DEFENSES


def _stack(updates: Sequence[ReceivedUpdate]) -> npt.NDArray[np.float32]:
    """The (n, d) float32 stack of the update vectors (one copy)."""
    return np.stack([u.vector for u in updates]).astype(np.float32, copy=False)


def merge_updates(
    name: str,
    rule: aggregation.Rule | None,
    own: torch.Tensor,
    updates: Sequence[ReceivedUpdate],
    *,
    f: int,
    layout: Layout,
    params: dict[str, Any] | None = None,
    defense: aggregation.Defense | None = None,
    round_: int = 0,
) -> torch.Tensor:
    """The merged model vector (a new tensor; ``own`` is not modified).

    ``defense`` (a per-peer stateful defense) takes precedence over ``rule``; it is
    called even with no updates so it can update its state.
    """
    if defense is not None:
        stack = (torch.from_numpy(_stack(updates)) if updates
                 else own.new_zeros((0, own.shape[0])))
        return defense.merge(own.clone(), stack, [u.sender for u in updates],
                             round=round_, f=f)
    if not updates:
        return own.clone()
    stack = torch.from_numpy(_stack(updates))
    if rule is None:
        w = torch.tensor([float(max(u.num_samples, 1)) for u in updates])
        return (w[:, None] * stack).sum(0) / w.sum()
    kw = dict(params or {})
    if needs_layout(name):
        kw.setdefault("layout", layout)
    return rule(stack, own=own.clone(), f=f, **kw)
