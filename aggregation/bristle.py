"""Bristle's pure parts: prioritizer, per-peer scores, weights and the per-class merge.

Bristle (Verbraeken, de Vos, Pouwelse 2021) freezes every layer but the output layer
(transfer learning), so a peer's model here is one ``(C, h + 1)`` matrix: row c is
class c's weights with its bias in the last column ("class column" c). Each round
peer i does::

    chosen = prioritize(own, received, k_close=20, k_random=5, rng)
        # the k_close received layers nearest to own (Euclidean), plus k_random
        # others drawn at random (exploration); i only sees what it received
    f1_own, f1_j = per-class F1 on i's small IID validation set   (node side)
    state.update(senders, f1_own, f1_j, familiar)                  (scores)
    w = state.weights(senders, f1_j, familiar)                     (trust x certainty)
    new = merge_per_class(own, layers, f1_own, f1_j, w)

Score (per sender, kept across rounds; only classes the peer trains on, "familiar",
are compared, since own F1 on a class it never saw says nothing)::

    for each familiar class c:  d = f1_j[c] - f1_own[c],  delta = 10 * |d|
        d > 0:  s_j += delta ** (3 + f1_j[c])
        d < 0:  s_j -= delta ** (4 + f1_j[c])
    s_j is clipped to [-score_clip, score_clip] (our addition, see below)

Weight of a sender::

    trust_j     = max(0, 10 * sigmoid(s_j / 100) - 4)      (1 for a new sender, 0 below
                                                            s ~ -40.5, at most 6)
    certainty_j = max(0, mean(f1_j[familiar]) - std(f1_j[familiar]))
    w_j         = trust_j * certainty_j

Per-class merge (class columns are merged separately)::

    new[c] = (f1_own[c] * own[c] + sum_j w_j * f1_j[c] * L_j[c])
             / (f1_own[c] + sum_j w_j * f1_j[c])        (own[c] when the sum is 0)

so on a class it never saw (own F1 ~ 0) a peer takes the column from trusted
senders that do well on that class on its validation set, and on its own classes it
keeps its column unless others are better. Deviations from the paper (which gives the
score and weight formulas but not every detail): the per-class factor f1[c] in the
merge, ``certainty`` over familiar classes only, and the score clip (default 1000),
which keeps one bad round (delta up to 10 gives 10^5) from banning an honest peer
forever. Everything here is pure: no I/O, no clock, randomness from the caller.

Classes the peer cannot evaluate. Validation data comes from the peer's own local data
only (it has no labelled sample of a class it does not hold), so on a class c that is
not familiar every F1 is 0 and the formula above would never change column c: a peer
could never learn a class it lacks. Such a column is therefore taken from the trusted
senders by their weight alone (trust earned on the familiar classes x certainty)::

    new[c] = sum_j w_j * L_j[c] / sum_j w_j         (own[c] when the sum is 0)

Own column c is left out: without data of c, training only pushed it down. ("familiar"
= the classes present in the peer's validation set.)

The defense (``make_defense("bristle", evaluator=..., layout=..., seed=...)``, class
:class:`Bristle`) runs this on a peer's Merge: prioritizer over the received vectors,
per-class F1 of own and the chosen ones through the peer's ``Evaluator``
(rumor.protocols.hooks; the runtime's learner provides it), scores, weights, per-class
merge of the output layer (the last weight tensor and its bias in ``layout``); any other
parameters (a feature body that is not frozen) are averaged with own weight 1 and the
senders' weights w_j.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from rumor.aggregation.layout import Layout
from rumor.aggregation.stateful import register_defense
from rumor.protocols.errors import AggregationError

FloatArray = npt.NDArray[np.float64]


class Evaluator(Protocol):
    """The peer's local evaluation (structurally rumor.protocols.hooks.Evaluator; kept
    here because aggregation imports nothing of protocols but its errors)."""

    @property
    def familiar(self) -> npt.NDArray[np.bool_]: ...

    def per_class_f1(self, vectors: npt.NDArray[np.float32]) -> FloatArray: ...

#: Bristle's defaults: the 20 nearest plus 5 random received layers per round.
K_CLOSE = 20
K_RANDOM = 5


def prioritize(
    own: Tensor,
    candidates: Tensor,
    *,
    k_close: int = K_CLOSE,
    k_random: int = K_RANDOM,
    generator: np.random.Generator,
) -> list[int]:
    """Indices into ``candidates`` (n, D): the ``k_close`` nearest to ``own`` (D,)
    by Euclidean distance (ties by index), then ``k_random`` drawn uniformly without
    replacement from the rest. Returns all indices when n <= k_close + k_random."""
    if candidates.dim() != 2 or candidates.shape[1] != own.reshape(-1).shape[0]:
        raise AggregationError(
            f"candidates must be (n, {own.numel()}), got {tuple(candidates.shape)}")
    if k_close < 0 or k_random < 0:
        raise AggregationError("k_close and k_random must be >= 0")
    n = candidates.shape[0]
    if n <= k_close + k_random:
        return list(range(n))
    dist = ((candidates - own.reshape(1, -1)) ** 2).sum(1).double().numpy()
    order = np.lexsort((np.arange(n), dist))  # by distance, then index
    close = [int(x) for x in order[:k_close]]
    rest = [int(x) for x in order[k_close:]]
    pick = generator.choice(len(rest), size=k_random, replace=False)
    return close + sorted(rest[int(k)] for k in pick)


def per_class_f1(confusion: npt.ArrayLike) -> FloatArray:
    """Per-class F1 from confusion counts ``[..., true, predicted]`` (C, C) or
    (P, C, C): 2 tp / (2 tp + fp + fn); 0 where a class is neither present nor
    predicted."""
    m = np.asarray(confusion, dtype=np.float64)
    tp = np.diagonal(m, axis1=-2, axis2=-1)
    fn = m.sum(-1) - tp
    fp = m.sum(-2) - tp
    den = 2 * tp + fp + fn
    out: FloatArray = np.divide(2 * tp, den, out=np.zeros_like(tp), where=den > 0)
    return out


def score_delta(f1_own: FloatArray, f1_other: FloatArray, familiar: FloatArray | Sequence[bool]
                ) -> float:
    """The change of one sender's score from one evaluation (see the module docstring)."""
    total = 0.0
    for c in np.flatnonzero(np.asarray(familiar, dtype=bool)):
        d = float(f1_other[c] - f1_own[c])
        delta = 10.0 * abs(d)
        if d > 0:
            total += delta ** (3.0 + float(f1_other[c]))
        elif d < 0:
            total -= delta ** (4.0 + float(f1_other[c]))
    return total


def trust(score: float) -> float:
    """max(0, 10 * sigmoid(score / 100) - 4)."""
    z = score / 100.0
    sig = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    return max(0.0, 10.0 * sig - 4.0)


def certainty(f1: FloatArray, familiar: FloatArray | Sequence[bool]) -> float:
    """max(0, mean - std) of ``f1`` over the familiar classes (0 if there are none)."""
    mask = np.asarray(familiar, dtype=bool)
    if not mask.any():
        return 0.0
    vals = np.asarray(f1, dtype=np.float64)[mask]
    return max(0.0, float(vals.mean() - vals.std()))


def merge_per_class(
    own: Tensor, layers: Tensor, f1_own: FloatArray, f1_others: FloatArray,
    weights: Sequence[float] | FloatArray,
    familiar: FloatArray | Sequence[bool] | None = None,
) -> Tensor:
    """Merge output layers class column by class column (see the module docstring).

    ``own`` (C, k), ``layers`` (n, C, k), ``f1_own`` (C,), ``f1_others`` (n, C),
    ``weights`` (n,) >= 0. Returns a new (C, k) tensor; a column whose total weight is
    0 stays own's. With ``familiar`` (C,) given, a column of a class that is not
    familiar is the ``weights``-weighted mean of the senders' columns (own left out).
    """
    if layers.dim() != 3 or layers.shape[1:] != own.shape:
        raise AggregationError(
            f"layers must be (n, {', '.join(map(str, own.shape))}), got {tuple(layers.shape)}")
    n, c = layers.shape[0], own.shape[0]
    fo = torch.as_tensor(np.asarray(f1_own, dtype=np.float64).reshape(c), dtype=torch.float64)
    if n == 0:
        return own.clone()
    fj = torch.as_tensor(np.asarray(f1_others, dtype=np.float64).reshape(n, c),
                         dtype=torch.float64)
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64).reshape(n), dtype=torch.float64)
    if bool((w < 0).any()):
        raise AggregationError("weights must be >= 0")
    cw = w[:, None] * fj  # (n, C)
    total = fo + cw.sum(0)  # (C,)
    acc = fo[:, None] * own.double() + (cw[:, :, None] * layers.double()).sum(0)
    if familiar is not None:
        unf = torch.as_tensor(~np.asarray(familiar, dtype=bool).reshape(c))
        total = torch.where(unf, w.sum().expand(c), total)
        acc = torch.where(unf[:, None], (w[:, None, None] * layers.double()).sum(0), acc)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    merged = torch.where((total > 0)[:, None], acc / safe[:, None], own.double())
    return merged.to(own.dtype)


@dataclass
class BristleState:
    """One peer's Bristle memory: a score per sender (explicit, checkpointable)."""

    score_clip: float = 1000.0
    scores: dict[str, float] = field(default_factory=dict)

    def update(self, senders: Sequence[str], f1_own: FloatArray, f1_others: FloatArray,
               familiar: FloatArray | Sequence[bool]) -> None:
        """Move each sender's score by its evaluation this round."""
        for k, s in enumerate(senders):
            new = self.scores.get(s, 0.0) + score_delta(f1_own, f1_others[k], familiar)
            self.scores[s] = min(self.score_clip, max(-self.score_clip, new))

    def weights(self, senders: Sequence[str], f1_others: FloatArray,
                familiar: FloatArray | Sequence[bool]) -> FloatArray:
        """w_j = trust(s_j) * certainty(f1_j) for each sender (unknown senders: s=0)."""
        out = np.array([trust(self.scores.get(s, 0.0)) * certainty(f1_others[k], familiar)
                        for k, s in enumerate(senders)], dtype=np.float64)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"score_clip": self.score_clip, "scores": dict(sorted(self.scores.items()))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.score_clip = float(state["score_clip"])
        self.scores = {str(k): float(v) for k, v in state["scores"].items()}


def bristle_round(
    state: BristleState,
    own: Tensor,
    layers: Tensor,
    senders: Sequence[str],
    f1_own: FloatArray,
    f1_others: FloatArray,
    familiar: FloatArray | Sequence[bool],
) -> tuple[Tensor, FloatArray]:
    """Integrator for already prioritized candidates: update scores, weigh, merge.
    Returns the merged (C, k) layer and the weights used."""
    if len(senders) != layers.shape[0]:
        raise AggregationError(f"{len(senders)} senders for {layers.shape[0]} layers")
    state.update(senders, f1_own, f1_others, familiar)
    w = state.weights(senders, f1_others, familiar)
    return merge_per_class(own, layers, f1_own, f1_others, w, familiar), w


def _output_layer(layout: Layout | None, d: int, classes: int) -> tuple[slice, slice | None]:
    """Where the output layer lives in a model vector of length ``d``: the last weight
    tensor with ``classes`` rows and the bias of ``classes`` entries right after it;
    without a layout the whole vector is a (classes, d / classes) matrix."""
    if not layout:
        if d % classes:
            raise AggregationError(f"a vector of {d} is no ({classes}, k) output layer")
        return slice(0, d), None
    for k in range(len(layout) - 1, -1, -1):
        ls = layout[k]
        if ls.is_weight and len(ls.shape) == 2 and ls.shape[0] == classes:
            nxt = layout[k + 1] if k + 1 < len(layout) else None
            bias = (slice(nxt.start, nxt.stop) if nxt is not None and not nxt.is_weight
                    and nxt.shape == (classes,) else None)
            return slice(ls.start, ls.stop), bias
    raise AggregationError(f"no output layer with {classes} rows in the layout")


@register_defense("bristle")
class Bristle:
    """One peer's Bristle: prioritizer + integrator on the output layer of its model.

    Params: ``evaluator`` (the peer's rumor.protocols.hooks.Evaluator; without one a
    merge with updates raises AggregationError),
    ``layout`` (where the output layer is), ``k_close`` (20), ``k_random`` (5),
    ``score_clip`` (1000), ``seed`` (the prioritizer's exploration draws: one
    generator per (seed, round)). State: the per-sender scores.
    """

    def __init__(self, *, evaluator: Evaluator | None = None, layout: Layout | None = None,
                 k_close: int = K_CLOSE, k_random: int = K_RANDOM,
                 score_clip: float = 1000.0, seed: int = 0) -> None:
        if k_close < 0 or k_random < 0 or k_close + k_random < 1 or score_clip <= 0:
            raise AggregationError("bristle needs k_close, k_random >= 0 (not both 0) and "
                                   "score_clip > 0")
        self.evaluator = evaluator
        self.layout = layout
        self.k_close, self.k_random = int(k_close), int(k_random)
        self.seed = int(seed) & 0xFFFFFFFF
        self.state = BristleState(score_clip=float(score_clip))
        self.last_weights: dict[str, float] = {}

    def merge(self, own: Tensor, updates: Tensor, senders: Sequence[str], *, round: int,
              f: int) -> Tensor:
        if updates.shape[0] == 0:
            return own.clone()
        if self.evaluator is None:  # build_peer refuses this; a bare merger fails here
            raise AggregationError("bristle needs an evaluator of the peer's local data "
                                   "(build the peer with build_peer(..., evaluator=...))")
        familiar = np.asarray(self.evaluator.familiar, dtype=bool)
        c = familiar.shape[0]
        rows, bias = _output_layer(self.layout, own.shape[0], c)
        rng = np.random.default_rng([self.seed, max(0, int(round))])
        pick = prioritize(own[rows], updates[:, rows], k_close=self.k_close,
                          k_random=self.k_random, generator=rng)
        chosen = updates[pick]
        ids = [senders[k] for k in pick]
        f1 = np.asarray(self.evaluator.per_class_f1(
            torch.cat([own[None], chosen]).detach().numpy().astype(np.float32)),
            dtype=np.float64)

        def layer(v: Tensor) -> Tensor:  # (..., C, k): class rows with their bias column
            w = v[..., rows].reshape(*v.shape[:-1], c, -1)
            if bias is None:
                return w
            return torch.cat([w, v[..., bias].unsqueeze(-1)], -1)

        merged, w = bristle_round(self.state, layer(own), layer(chosen), ids, f1[0], f1[1:],
                                  familiar)
        self.last_weights = {s: float(x) for s, x in zip(ids, w, strict=True)}
        wt = torch.as_tensor(w, dtype=torch.float64)
        out = ((own.double() + (wt[:, None] * chosen.double()).sum(0))
               / (1.0 + float(wt.sum()))).to(own.dtype)  # parameters outside the head
        if bias is None:
            out[rows] = merged.reshape(-1)
        else:
            out[rows] = merged[:, :-1].reshape(-1)
            out[bias] = merged[:, -1]
        return out

    def state_dict(self) -> dict[str, Any]:
        return self.state.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state.load_state_dict(state)
