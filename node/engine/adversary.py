"""Adversaries: what a Byzantine peer sends, as a hook on its own Peer.

``AttackAdversary.craft(round, base, trained, view)`` applies an attack of
rumor.node.attacks to the peer's own training result. Model-poisoning attacks that need
the honest peers' models (ALIE, IPM) use ``view``: the vectors this peer received in its
last merge (its partial view), never a global oracle: on a real network that is all an
attacker sees. With no view yet it uses its own trained model as the honest estimate.

Sybils (k identities of one attacker) share a ``Collusion``: the first to craft in a
round crafts the poisoned vector, the others echo it plus N(0, noise^2). Data attacks
(label-flip, backdoor) change what the peer trains on (``data_label_map`` and the
runtime's data set-up) and send the honestly trained model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from rumor.node.attacks import AttackContext, AttackSpec, craft, label_map
from rumor.protocols.events import Vector


class Collusion:
    """State shared by the identities of one attacker (its Sybils)."""

    def __init__(self, noise: float = 0.001, seed: int = 0) -> None:
        self.noise = noise
        self.seed = seed
        self._leader: dict[int, torch.Tensor] = {}

    def echo(self, round_: int, crafted: torch.Tensor, member: int) -> torch.Tensor:
        lead = self._leader.get(round_)
        if lead is None:
            self._leader = {r: v for r, v in self._leader.items() if r >= round_ - 2}
            self._leader[round_] = crafted
            return crafted
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + round_ * 7919 + member)
        return lead + self.noise * torch.randn(lead.shape, generator=gen, dtype=lead.dtype)


class AttackAdversary:
    """A Byzantine peer's hook; see module docstring."""

    def __init__(self, spec: AttackSpec, *, n: int, f: int, seed: int,
                 collusion: Collusion | None = None, member: int = 0) -> None:
        self.spec = spec
        self.name = spec.name
        self.n = n
        self.f = max(1, f)
        self.seed = seed
        self.collusion = collusion
        self.member = member

    def craft(self, round_: int, base: Vector, trained: Vector,
              view: Sequence[Vector]) -> Vector:
        b = torch.from_numpy(np.array(base, dtype=np.float32))
        t = torch.from_numpy(np.array(trained, dtype=np.float32))
        honest = (torch.from_numpy(np.stack([np.asarray(v, np.float32) for v in view]))
                  if view else t[None])
        digest = hashlib.sha256(f"{self.seed}/{round_}".encode()).digest()
        gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") >> 1)
        n = max(self.n, len(view) + 1)
        out = craft(self.spec, AttackContext(b, t, honest, n=n, f=self.f, generator=gen))
        if self.collusion is not None:
            out = self.collusion.echo(round_, out, self.member)
        return out.numpy()


def data_label_map(spec: AttackSpec | None, num_classes: int) -> dict[int, int] | None:
    """The label map a label-flipping peer trains with; None for every other attack."""
    if spec is None or spec.name != "label-flip":
        return None
    return label_map(spec, num_classes)
