"""The sans-IO peer: a state machine driven by events, answering with commands.

Round r of a gossip peer::

    TRAINING(r)   --TrainingDone-->   push a signed UPDATE(r) to neighbours
    COLLECTING(r) --enough updates or Tick past the deadline--> Merge(r, received)
    MERGING(r)    --MergeDone-->      r+1: StartTraining(r+1), or Finished

"Enough" is ``min_updates`` distinct senders (default: every current neighbour).
Updates from neighbours that are ahead are buffered (newest per sender) and count for
the round being collected; updates older than ``round - max_lag`` are rejected as
stale by the Validator. A FedAvg client sends its update to the server only and
adopts the GLOBAL model the server answers with; the server never trains, it merges
what its clients sent and broadcasts the result.

The peer never reads a clock (every event carries ``now``), never does I/O, and a
rejected message never changes its state beyond the reject counter.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

import numpy as np

from rumor.protocols import codec
from rumor.protocols.events import (
    AdoptModel,
    Command,
    Event,
    Finished,
    Log,
    Merge,
    MergeDone,
    MessageReceived,
    PeerDiscovered,
    PeerId,
    PeerLost,
    ReceivedUpdate,
    Send,
    Start,
    StartTraining,
    Tick,
    TrainingDone,
    Vector,
)
from rumor.protocols.identity import Identity, peer_id_from_bytes, peer_id_to_bytes
from rumor.protocols.messages import Kind, ModelBody, TensorPayload
from rumor.protocols.validation import ValidationConfig, Validator


class Role(enum.StrEnum):
    GOSSIP = "gossip"
    SERVER = "server"  # FedAvg server: no training, merges and broadcasts
    CLIENT = "client"  # FedAvg client: trains, sends to the server, adopts GLOBAL


class Phase(enum.StrEnum):
    IDLE = "idle"
    TRAINING = "training"
    COLLECTING = "collecting"
    MERGING = "merging"
    DONE = "done"


@dataclass(frozen=True)
class PeerConfig:
    """Protocol settings of one peer (the model's shape comes in ``validation``)."""

    validation: ValidationConfig
    role: Role = Role.GOSSIP
    rounds: int | None = None
    round_timeout: float = 30.0
    min_updates: int | None = None
    fanout: int | None = None
    sign: bool = True
    server: PeerId | None = None
    adopt_senders: bool = True
    wait_when_alone: bool = True
    seed: int = 0


class Peer:
    """One peer's protocol logic. ``handle(event) -> commands``; see module docstring."""

    def __init__(self, identity: Identity, config: PeerConfig) -> None:
        if config.role is Role.CLIENT and config.server is None:
            raise ValueError("a FedAvg client needs the server's PeerID")
        self.identity = identity
        self.peer_id = identity.peer_id
        self.config = config
        self.validator = Validator(config.validation)
        self.phase = Phase.IDLE
        self.round = 0
        self.neighbours: set[PeerId] = set()
        self._buffer: dict[PeerId, ReceivedUpdate] = {}
        self._global: dict[int, Vector] = {}
        self._deadline: float | None = None
        self._seq = 0
        self._rng = random.Random(config.seed)
        self.sent_messages = 0
        self.sent_bytes = 0
        self.timeouts = 0

    # ------------------------------------------------------------------ public
    def next_deadline(self) -> float | None:
        """When the runtime must call ``handle(Tick(now))``; None when nothing is due."""
        return self._deadline

    def handle(self, event: Event) -> list[Command]:
        """Advance the state machine by one event."""
        if isinstance(event, MessageReceived):
            return self._on_message(event)
        if isinstance(event, Tick):
            return self._on_tick(event.now)
        if isinstance(event, TrainingDone):
            return self._on_trained(event)
        if isinstance(event, MergeDone):
            return self._on_merged(event)
        if isinstance(event, PeerDiscovered):
            if event.peer != self.peer_id:
                self.neighbours.add(event.peer)
            return self._maybe_merge(event.now)
        if isinstance(event, PeerLost):
            self.neighbours.discard(event.peer)
            return self._maybe_merge(event.now)
        if isinstance(event, Start):
            return self._on_start(event)
        raise TypeError(f"unknown event {event!r}")

    # ------------------------------------------------------------- handlers
    def _on_start(self, ev: Start) -> list[Command]:
        self.round = ev.round
        self._seq = max(self._seq, ev.seq)
        if self.config.rounds is not None and self.round >= self.config.rounds:
            self.phase = Phase.DONE
            return [Finished(self.round)]
        if self.config.role is Role.SERVER:
            return self._collect(ev.now)
        self.phase = Phase.TRAINING
        return [StartTraining(self.round)]

    def _on_trained(self, ev: TrainingDone) -> list[Command]:
        if self.phase is not Phase.TRAINING or ev.round != self.round:
            return [Log("unexpected_training_done", {"round": ev.round, "phase": self.phase})]
        if self.config.role is Role.CLIENT:
            assert self.config.server is not None
            targets = [self.config.server]
        else:
            targets = self._targets()
        out: list[Command] = self._broadcast(
            Kind.UPDATE, ev.vector, ev.num_samples, targets, ev.now
        )
        out += self._collect(ev.now)
        return out

    def _collect(self, now: float) -> list[Command]:
        self.phase = Phase.COLLECTING
        self._deadline = now + self.config.round_timeout
        if self.config.role is Role.CLIENT:
            return self._maybe_adopt(now)
        return self._maybe_merge(now)

    def _on_message(self, ev: MessageReceived) -> list[Command]:
        link = peer_id_to_bytes(ev.sender) if ev.sender is not None else None
        env = self.validator.check(ev.data, now=ev.now, current_round=self.round, link_sender=link)
        if env is None:
            rej = self.validator.last_reject
            return [Log("reject", {"from": ev.sender, "reason": rej.reason if rej else "?",
                                   "detail": rej.detail if rej else ""})]
        sender = peer_id_from_bytes(env.sender)
        vector = env.body.tensor.to_array()
        if env.kind is Kind.GLOBAL:
            if self.config.role is not Role.CLIENT or sender != self.config.server:
                return [Log("ignored_global", {"from": sender})]
            self._global[env.round] = vector
            return self._maybe_adopt(ev.now)
        if self.config.adopt_senders and self.config.role is Role.GOSSIP:
            self.neighbours.add(sender)
        prev = self._buffer.get(sender)
        if prev is None or prev.round <= env.round:
            self._buffer[sender] = ReceivedUpdate(sender, env.round, vector, env.body.num_samples)
        return self._maybe_merge(ev.now)

    def _on_tick(self, now: float) -> list[Command]:
        if self._deadline is None or now < self._deadline or self.phase is not Phase.COLLECTING:
            return []
        self.timeouts += 1
        if self.config.role is Role.CLIENT:
            # No global model arrived in time: keep the local model and go on.
            return [Log("round_timeout", {"round": self.round, "received": 0}),
                    *self._advance(now)]
        return self._merge(now, timed_out=True)

    def _on_merged(self, ev: MergeDone) -> list[Command]:
        if self.phase is not Phase.MERGING or ev.round != self.round:
            return [Log("unexpected_merge_done", {"round": ev.round, "phase": self.phase})]
        out: list[Command] = []
        if self.config.role is Role.SERVER:
            out += self._broadcast(Kind.GLOBAL, ev.vector, 0, sorted(self.neighbours), ev.now)
        return out + self._advance(ev.now)

    # -------------------------------------------------------------- helpers
    def _needed(self) -> int:
        """Distinct fresh updates that trigger a merge before the deadline.

        A peer with no neighbours waits for the deadline (someone may appear), unless
        ``wait_when_alone`` is off (a simulator with a fixed topology).
        """
        if not self.neighbours:
            return 1 if self.config.wait_when_alone else 0
        if self.config.min_updates is not None:
            return max(1, min(self.config.min_updates, len(self.neighbours)))
        return len(self.neighbours)

    def _maybe_merge(self, now: float) -> list[Command]:
        if self.phase is not Phase.COLLECTING or self.config.role is Role.CLIENT:
            return []
        fresh = [u for u in self._buffer.values() if u.round >= self.round]
        if len(fresh) >= self._needed():
            return self._merge(now, timed_out=False)
        return []

    def _maybe_adopt(self, now: float) -> list[Command]:
        if self.phase is not Phase.COLLECTING:
            return []
        vec = self._global.pop(self.round, None)
        if vec is None:
            return []
        self._global = {r: v for r, v in self._global.items() if r > self.round}
        self.phase = Phase.MERGING
        self._deadline = None
        return [AdoptModel(self.round, vec)]

    def _merge(self, now: float, timed_out: bool) -> list[Command]:
        lag = self.config.validation.max_lag
        used = tuple(
            sorted(
                (u for u in self._buffer.values() if u.round >= self.round - lag),
                key=lambda u: u.sender,
            )
        )
        self._buffer.clear()
        self.phase = Phase.MERGING
        self._deadline = None
        out: list[Command] = []
        if timed_out:
            out.append(Log("round_timeout", {"round": self.round, "received": len(used)}))
        out.append(Merge(self.round, used, timed_out))
        return out

    def _advance(self, now: float) -> list[Command]:
        self.round += 1
        self._deadline = None
        if self.config.rounds is not None and self.round >= self.config.rounds:
            self.phase = Phase.DONE
            return [Finished(self.round)]
        if self.config.role is Role.SERVER:
            return self._collect(now)
        self.phase = Phase.TRAINING
        return [StartTraining(self.round)]

    def _targets(self) -> list[PeerId]:
        peers = sorted(self.neighbours)
        k = self.config.fanout
        if k is None or k >= len(peers):
            return peers
        return sorted(self._rng.sample(peers, k))

    def _broadcast(
        self, kind: Kind, vector: Vector, num_samples: int, targets: list[PeerId], now: float
    ) -> list[Command]:
        payload = TensorPayload.from_array(np.asarray(vector, dtype=np.float32))
        self._seq += 1
        data = codec.encode(
            kind,
            swarm=self.config.validation.swarm,
            sender=self.identity,
            round_=self.round,
            seq=self._seq,
            sent_at=now,
            body=ModelBody(payload, num_samples),
            sign=self.config.sign,
        )
        self.sent_messages += len(targets)
        self.sent_bytes += len(data) * len(targets)
        return [Send(to, data, self.round) for to in targets]
