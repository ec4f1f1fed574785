"""SybilWall (Werthenbach & Pouwelse, "Towards Sybil Resilience in Decentralized
Learning", 2023): FoolsGold on per-sender update histories, plus probabilistic gossip.

One ``SybilWall`` instance per peer i (``make_defense("sybilwall", **params)``).

Histories. There is no global model in gossip learning, so the update of a vector x_j
that i receives is taken relative to i's own model before the merge::

    h_j <- h_j + (x_j - own_i)                       (every time i receives x_j)

Sybils echo one poisoned vector, so at any receiver their relative updates (and hence
histories) are nearly parallel, while honest peers trained on different data are not.

Weights. k = every sender i has a history for (direct neighbours and senders heard of
through gossip); w = ``foolsgold_weights(H, kappa)`` over those k histories (cosine
similarity, max similarity per sender, pardoning, w = 1 - max cs, w / max w, logit
rescale kappa·(ln(w/(1-w)) + 0.5) clipped to [0, 1]). Only this round's direct updates
are merged::

    x_i = (own_i + Σ_{j ∈ R_i} w_j x_j) / (1 + Σ_{j ∈ R_i} w_j)      (own weight 1)

Gossip. A sender's twin Sybil is usually not a neighbour of the same honest peer (each
Sybil attaches to a few random peers), so neighbours alone cannot expose it. After a
merge the peer forwards vectors it saw to its neighbours: a vector that reached it in
``hops`` hops (direct: 1) is forwarded with probability exp(-decay·(hops - 1))
(decay = 0.8), arriving with hops + 1, and never beyond ``max_hops``. A receiver adds
a forwarded x_o to h_o relative to its own model (as above) at its next merge, but
does not merge it: forwarded vectors only inform the similarity. Each (origin, round)
counts once. The pure step is ``choose_forwards``; the runtime carries the vectors
(``take_outbox`` on the sender, ``receive`` on each neighbour). Without a runtime that
does so, SybilWall degrades to FoolsGold over the neighbours' histories.

Forwarded vectors are compared with the receiver's model at the merge after they
arrive, which may be one round later than the round they were sent in (stale by at
most one round in the simulator).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rumor.aggregation.foolsgold import foolsgold_weights
from rumor.aggregation.stateful import register_defense
from rumor.protocols.errors import AggregationError

FORWARD_DECAY = 0.8


def forward_probability(hops: int, decay: float = FORWARD_DECAY) -> float:
    """exp(-decay·(hops - 1)): 1 for a vector received directly (hops = 1)."""
    if hops < 1:
        raise AggregationError(f"hops must be >= 1, got {hops}")
    return math.exp(-decay * (hops - 1))


def choose_forwards(
    hops: Sequence[int],
    generator: torch.Generator,
    *,
    decay: float = FORWARD_DECAY,
    max_hops: int | None = None,
) -> list[int]:
    """Indices k of the items to forward: one uniform draw u_k per item, in order, and
    item k is forwarded iff u_k < exp(-decay·(hops_k - 1)) and (max_hops is None or
    hops_k < max_hops). Same generator state and hops -> same choice."""
    if not hops:
        return []
    u = torch.rand(len(hops), generator=generator, dtype=torch.float64)
    out = []
    for k, h in enumerate(hops):
        if max_hops is not None and h >= max_hops:
            continue
        if float(u[k]) < forward_probability(h, decay):
            out.append(k)
    return out


@dataclass(frozen=True)
class Forwarded:
    """A vector that ``origin`` sent in ``round``, seen ``hops`` hops away from it."""

    origin: str
    round: int
    vector: Tensor
    hops: int


@register_defense("sybilwall")
class SybilWall:
    """One peer's SybilWall state: histories, the gossip inbox/outbox and its RNG.

    Params: ``kappa`` (FoolsGold logit scale, 1), ``decay`` (0.8), ``max_hops`` (4:
    a vector travels at most 4 hops from its origin), ``gossip`` (True; False keeps no
    outbox), ``seed`` (the forwarding RNG), ``keep_rounds`` (3: how many recent rounds
    of (origin, round) pairs are remembered to drop duplicates).
    Histories are stored in float32; similarities are computed in float64.
    """

    def __init__(
        self,
        *,
        kappa: float = 1.0,
        decay: float = FORWARD_DECAY,
        max_hops: int = 4,
        gossip: bool = True,
        seed: int = 0,
        keep_rounds: int = 3,
    ) -> None:
        if kappa <= 0 or decay < 0 or max_hops < 1 or keep_rounds < 1:
            raise AggregationError("sybilwall needs kappa > 0, decay >= 0, max_hops >= 1, "
                                   "keep_rounds >= 1")
        self.kappa = float(kappa)
        self.decay = float(decay)
        self.max_hops = int(max_hops)
        self.gossip = bool(gossip)
        self.keep_rounds = int(keep_rounds)
        self.histories: dict[str, Tensor] = {}
        self.inbox: list[Forwarded] = []
        self.outbox: list[Forwarded] = []
        self.seen: dict[tuple[str, int], int] = {}  # (origin, round) -> hops
        self.generator = torch.Generator().manual_seed(int(seed))
        self.last_weights: dict[str, float] = {}

    # ------------------------------------------------------------------ merge
    def merge(
        self, own: Tensor, updates: Tensor, senders: Sequence[str], *, round: int, f: int
    ) -> Tensor:
        """Update histories with this round's direct and forwarded vectors, then merge
        the direct ones with FoolsGold weights (own weight 1). ``f`` is ignored."""
        r = updates.shape[0] if updates.dim() == 2 else -1
        if updates.dim() != 2 or updates.shape[1] != own.shape[0] or len(senders) != r:
            raise AggregationError(
                f"sybilwall needs updates (n, {own.shape[0]}) and n senders, got "
                f"{tuple(updates.shape)} and {len(senders)} senders")
        own32 = own.detach().to(torch.float32)
        direct: list[Forwarded] = []
        for k, s in enumerate(senders):
            vec = updates[k].detach().to(torch.float32, copy=True)
            self._accumulate(s, vec, own32)
            self.seen[(s, round)] = 1
            direct.append(Forwarded(s, round, vec, 1))
        relayed: list[Forwarded] = []
        for item in self.inbox:
            key = (item.origin, item.round)
            if key in self.seen or item.round < round - self.keep_rounds:
                continue
            self.seen[key] = item.hops
            self._accumulate(item.origin, item.vector.to(torch.float32), own32)
            relayed.append(item)
        self.inbox = []
        self._forget(round)
        if self.gossip:
            candidates = direct + relayed
            pick = choose_forwards([c.hops for c in candidates], self.generator,
                                   decay=self.decay, max_hops=self.max_hops)
            self.outbox.extend(Forwarded(c.origin, c.round, c.vector, c.hops + 1)
                               for c in (candidates[k] for k in pick))
        if r == 0:
            self.last_weights = {}
            return own.clone()
        weights = self.weights()
        self.last_weights = weights
        w = torch.tensor([weights[s] for s in senders], dtype=torch.float64)
        total = own.to(torch.float64) + (w[:, None] * updates.to(torch.float64)).sum(0)
        return (total / (1.0 + w.sum())).to(own.dtype)

    def weights(self) -> dict[str, float]:
        """FoolsGold weight in [0, 1] of every sender with a history."""
        keys = sorted(self.histories)
        if not keys:
            return {}
        w = foolsgold_weights(torch.stack([self.histories[k] for k in keys]), self.kappa)
        return {k: float(w[i]) for i, k in enumerate(keys)}

    def _accumulate(self, sender: str, vec: Tensor, own: Tensor) -> None:
        delta = vec - own
        prev = self.histories.get(sender)
        self.histories[sender] = delta if prev is None else prev + delta

    def _forget(self, round: int) -> None:
        old = [k for k in self.seen if k[1] < round - self.keep_rounds]
        for k in old:
            del self.seen[k]

    # ----------------------------------------------------------------- gossip
    def take_outbox(self) -> list[Forwarded]:
        """The vectors to send to every neighbour now (the outbox is emptied)."""
        out, self.outbox = self.outbox, []
        return out

    def receive(self, items: Iterable[Forwarded], *, me: str | None = None) -> None:
        """Queue forwarded vectors for the next merge (those whose origin is ``me`` are
        dropped)."""
        self.inbox.extend(it for it in items if it.origin != me)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        def items(xs: list[Forwarded]) -> list[dict[str, Any]]:
            return [{"origin": x.origin, "round": x.round, "vector": x.vector.clone(),
                     "hops": x.hops} for x in xs]

        return {
            "params": {"kappa": self.kappa, "decay": self.decay, "max_hops": self.max_hops,
                       "gossip": self.gossip, "keep_rounds": self.keep_rounds},
            "histories": {k: v.clone() for k, v in self.histories.items()},
            "inbox": items(self.inbox),
            "outbox": items(self.outbox),
            "seen": [[o, r, h] for (o, r), h in self.seen.items()],
            "generator": self.generator.get_state().clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def items(xs: list[dict[str, Any]]) -> list[Forwarded]:
            return [Forwarded(str(x["origin"]), int(x["round"]),
                              torch.as_tensor(x["vector"], dtype=torch.float32).clone(),
                              int(x["hops"])) for x in xs]

        p = state["params"]
        self.kappa = float(p["kappa"])
        self.decay = float(p["decay"])
        self.max_hops = int(p["max_hops"])
        self.gossip = bool(p["gossip"])
        self.keep_rounds = int(p["keep_rounds"])
        self.histories = {str(k): torch.as_tensor(v, dtype=torch.float32).clone()
                          for k, v in state["histories"].items()}
        self.inbox = items(state["inbox"])
        self.outbox = items(state["outbox"])
        self.seen = {(str(o), int(r)): int(h) for o, r, h in state["seen"]}
        self.generator = torch.Generator()
        self.generator.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8))
        self.last_weights = {}
