"""The hooks a Peer calls: its merger and, for a Byzantine peer, its adversary.

The Peer decides *when* and *with what* to merge and what to send; these hooks decide
*how* (the aggregation rule with its defenses and guards, the attack's crafted vector).
Both are pure computations (no I/O, no clock), built once per peer by
``rumor.node.engine.build_peer`` so every runtime runs the same ones; a runtime only
chooses where they execute (inline in the simulator, a worker thread on the mesh).

Contracts:

- ``Merger.merge(own, cmd) -> MergeOutcome``: the new model for ``cmd.round`` from
  ``own`` and ``cmd.updates`` (and ``cmd.forwarded`` for gossiping defenses). Never
  raises on any input a validated message can carry: a rule that cannot run on a small
  view degrades (fewer assumed Byzantine peers) and says so in ``events``; a result that
  is not finite keeps ``own`` and sets ``rejected``.
- ``Adversary.craft(round, base, trained, view) -> vector``: what a Byzantine peer sends
  instead of its honestly trained model; ``view`` holds only vectors this peer received
  (no global oracle).
- ``Evaluator``: what a merger may ask of the peer's *own* local data at merge time
  (Bristle): ``familiar`` is the (C,) mask of the classes the peer holds, and
  ``per_class_f1(vectors)`` the (n, C) per-class F1 of each model vector (n, d) on the
  peer's local validation set (drawn from its own data only). The runtime's learner
  provides it when the peer is built; it is a computation, never I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from rumor.protocols.events import Merge, Relay, Vector


@dataclass(frozen=True)
class MergeOutcome:
    vector: Vector
    forward: tuple[Relay, ...] = ()
    rejected: bool = False
    events: tuple[tuple[str, dict[str, Any]], ...] = field(default=())


class Merger(Protocol):
    def merge(self, own: Vector, cmd: Merge) -> MergeOutcome: ...


class Evaluator(Protocol):
    @property
    def familiar(self) -> npt.NDArray[np.bool_]: ...

    def per_class_f1(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]: ...


class Adversary(Protocol):
    name: str

    def craft(self, round_: int, base: Vector, trained: Vector,
              view: Sequence[Vector]) -> Vector: ...
