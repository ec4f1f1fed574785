"""Events into the Peer state machine and commands out of it. All frozen.

The runtime (simulator or libp2p node) feeds events with the current time and
carries out the commands in order. Nothing here reads a clock or touches a socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

PeerId = str
Vector = NDArray[np.floating]


# ----------------------------------------------------------------- events in
@dataclass(frozen=True)
class Start:
    """Begin (or resume from a checkpoint) at ``round``.

    ``seq`` is where the message sequence counter starts: a restarted peer passes a
    value above anything it sent before (the runtime uses wall-clock microseconds),
    so receivers do not mistake its new messages for replays.
    """

    now: float
    round: int = 0
    seq: int = 0


@dataclass(frozen=True)
class Tick:
    """Time passed; the runtime calls this at ``Peer.next_deadline()``."""

    now: float


@dataclass(frozen=True)
class MessageReceived:
    """Bytes arrived from ``sender`` (the link's authenticated PeerID when known)."""

    sender: PeerId | None
    data: bytes
    now: float


@dataclass(frozen=True)
class PeerDiscovered:
    """The runtime met ``peer`` (discovery, the scenario's graph). ``inbound``: it only
    dialled us; the Peer then treats it like an adopted stranger (bounded)."""

    peer: PeerId
    now: float
    inbound: bool = False


@dataclass(frozen=True)
class PeerLost:
    peer: PeerId
    now: float


@dataclass(frozen=True)
class TrainingDone:
    """Local training for ``round`` finished; ``vector`` is the trained model.

    ``base`` is the model training started from, when the runtime knows it (an
    adversary crafts relative to it); otherwise the Peer uses the last model it saw.
    """

    round: int
    vector: Vector
    num_samples: int
    now: float
    base: Vector | None = None


@dataclass(frozen=True)
class Relay:
    """A vector ``origin`` sent in ``round``, seen ``hops`` hops from it (1 = direct).

    Carried between the Peer and its merger for defenses that gossip what they saw
    (SybilWall): received ones go into ``Merge.forwarded``, the ones the merger picks
    to pass on come back in ``MergeDone.forward`` (vector omitted) and the Peer sends
    them as signed HISTORY messages wrapping the origin's own signed bytes.
    """

    origin: PeerId
    round: int
    hops: int
    vector: Vector | None = None


@dataclass(frozen=True)
class MergeDone:
    """The runtime carried out a Merge (or AdoptModel); ``vector`` is the new model.

    ``forward``: what the merger chose to forward (see Relay). ``rejected``: the
    merge result was not finite (or absurd) and the previous model was kept.
    """

    round: int
    vector: Vector
    now: float
    forward: tuple[Relay, ...] = ()
    rejected: bool = False


Event = Start | Tick | MessageReceived | PeerDiscovered | PeerLost | TrainingDone | MergeDone


# --------------------------------------------------------------- commands out
@dataclass(frozen=True)
class Send:
    to: PeerId
    data: bytes
    round: int


@dataclass(frozen=True)
class TrainingHints:
    """How the runtime's trainer should train this round (decided by the protocol).

    ``polyak_beta``: keep a persistent Polyak momentum m <- beta*m + (1-beta)*g across
    rounds and step along m (MoNNA); None = plain SGD.
    ``local_steps``: 0 = do not train, answer TrainingDone with the current model (a
    mixing or final-merge step of the round plan, rumor.protocols.schedule); None = the
    trainer's own number of steps.
    """

    polyak_beta: float | None = None
    local_steps: int | None = None


@dataclass(frozen=True)
class StartTraining:
    round: int
    hints: TrainingHints = TrainingHints()


@dataclass(frozen=True)
class ReceivedUpdate:
    """A validated model vector from a neighbour."""

    sender: PeerId
    round: int
    vector: Vector
    num_samples: int


@dataclass(frozen=True)
class Merge:
    """Merge own model with ``updates``: the runtime calls ``peer.merger.merge(own, this)``
    (the Peer's rule, defense and guards), evaluates, and answers with
    MergeDone(round, new_vector, now, forward, rejected).

    ``forwarded``: relayed vectors for defenses that use them (never merged as updates).
    ``catch_up_to``: this merge adopts neighbours' STATE models and the peer continues
    at that round (a rejoining peer that fell behind). ``step``: the merged model is
    own + step (rule(...) - own) (Choco's consensus step gamma of compressed gossip).
    ``local``: a round without communication (the schedule's): nothing was exchanged,
    the runtime keeps its own model (no merger call; ``updates`` is empty).
    ``final``: a final-merge step: the merger takes the plain mean of own and updates.
    """

    round: int
    updates: tuple[ReceivedUpdate, ...]
    timed_out: bool = False
    forwarded: tuple[Relay, ...] = ()
    catch_up_to: int | None = None
    local: bool = False
    final: bool = False
    step: float = 1.0


@dataclass(frozen=True)
class AdoptModel:
    """Replace own model with ``vector`` (a FedAvg client receiving the global model)."""

    round: int
    vector: Vector


@dataclass(frozen=True)
class Finished:
    """All configured rounds are done."""

    round: int


@dataclass(frozen=True)
class Log:
    """A structured event for the runtime's event log (never printed by the library)."""

    event: str
    fields: dict[str, Any] = field(default_factory=dict)


Command = Send | StartTraining | Merge | AdoptModel | Finished | Log
