"""MoNNA (Farhadkhani et al., "Robust Collaborative Learning with Linear Gradient
Overhead", ICML 2023): Polyak momentum locally, nearest-neighbour averaging on merge.

Each honest peer i, every round t:

1. local step with Polyak momentum kept across rounds (done by the trainer, see
   ``BatchedTrainer.train(momentum_state=..., polyak_beta=...)``)::

       m_i <- beta·m_i + (1 - beta)·g_i        (beta = 0.99; m_i starts at 0 once)
       x_i^{t+1/2} = x_i^t - lr·m_i

2. it gossips the momentum-based model x_i^{t+1/2} and merges what it received with
   NNA: drop the f received vectors farthest (Euclidean) from its own, average the rest
   with its own (``rumor.aggregation.nna``)::

       x_i^{t+1} = (x_i^{t+1/2} + Σ_{j ∈ K} x_j^{t+1/2}) / (|K| + 1),  |K| = r - min(f, r)

The paper assumes a complete graph and n > 2f overall; on a partial view of r
received vectors this defense uses f' = min(f, r), so a peer that heard from fewer than
f neighbours keeps only its own model rather than failing. The defense itself is
stateless apart from its parameters (the momentum lives with the trainer, where the
gradients are); it is a defense (not just the ``nna`` rule) so that runtimes can see
the name ``monna`` and switch Polyak momentum on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from rumor.aggregation._linalg import sq_dists_to, stable_smallest
from rumor.aggregation.nna import nna
from rumor.aggregation.stateful import register_defense
from rumor.protocols.errors import AggregationError

DEFAULT_BETA = 0.99


@register_defense("monna")
class MoNNA:
    """NNA merge with f from the config (or ``f=`` given here, which takes precedence).

    ``last_dropped`` lists the senders dropped by the latest merge. The momentum's beta
    is the runtime's setting (the simulator's ``polyak_beta``, default DEFAULT_BETA).
    """

    def __init__(self, *, f: int | None = None) -> None:
        if f is not None and f < 0:
            raise AggregationError(f"monna: f must be >= 0, got {f}")
        self.f = f
        self.last_dropped: list[str] = []

    def merge(
        self, own: Tensor, updates: Tensor, senders: Sequence[str], *, round: int, f: int
    ) -> Tensor:
        """NNA over the received momentum-based models with f' = min(f, r)."""
        if updates.dim() != 2 or len(senders) != updates.shape[0]:
            raise AggregationError(
                f"monna needs updates (n, d) and n senders, got {tuple(updates.shape)} "
                f"and {len(senders)} senders")
        r = updates.shape[0]
        if r == 0:
            self.last_dropped = []
            return own.clone()
        fe = min(self.f if self.f is not None else f, r)
        out = nna(updates, own=own, f=fe)
        kept = {int(k) for k in stable_smallest(sq_dists_to(updates, None, own), r - fe)}
        self.last_dropped = [s for k, s in enumerate(senders) if k not in kept]
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"params": {"f": self.f}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        p = state["params"]
        self.f = None if p["f"] is None else int(p["f"])
        self.last_dropped = []
