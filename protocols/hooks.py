"""The hooks a Peer calls: its merger, its compression and, for a Byzantine peer, its
adversary.

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
- ``Compression``: the compressor of compressed gossip (rumor.protocols.choco).
  ``compress(x, seed=s) -> CompressedBody`` (a difference payload; the caller sets
  ``base`` and ``num_samples``); ``keyframe(x, seed=s)``: the body that gives a
  receiver its first copy (int8 or ``full``); ``decompress(body, seed=s) -> (d,) vector`` for any
  body whichever compressor made it, including ``full`` keyframes; it validates
  (index bounds and order, sizes, bits and codes, rank vs the model's layers) and
  raises ``RejectedMessage`` (``bad_compressed``, ``nan_inf``, ``shape_mismatch``).
  ``name`` is the spec this peer compresses with, None for a peer that only decodes.
  Both sides pass the same ``seed`` (``choco.shared_seed`` of the message header), so
  seeded choices (rand-k indices, QSGD dither) never travel.
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
from rumor.protocols.messages import CompressedBody


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


class Compression(Protocol):
    name: str | None

    def compress(self, x: Vector, *, seed: int) -> CompressedBody: ...

    def keyframe(self, x: Vector, *, seed: int) -> CompressedBody: ...

    def decompress(self, body: CompressedBody, *, seed: int) -> Vector: ...
