"""The sans-IO peer: a state machine driven by events, answering with commands.

Round r of a gossip peer::

    TRAINING(r)   --TrainingDone-->   push a signed UPDATE(r) to neighbours
                                      (a Byzantine peer: its adversary's vector)
    COLLECTING(r) --enough updates or Tick past the deadline--> Merge(r, received)
    MERGING(r)    --MergeDone-->      forward HISTORY records the merger picked;
                                      r+1: StartTraining(r+1, hints), or Finished

"Enough" is ``min_updates`` distinct senders (default: every current neighbour).
Updates from neighbours that are ahead are buffered (newest per sender) and count for
the round being collected; updates older than ``round - max_lag`` are rejected as
stale by the Validator, and rounds more than ``max_ahead`` ahead as too_far_ahead.
A FedAvg client sends its update to the server only and adopts the GLOBAL model the
server answers with; the server never trains, it merges what its clients sent and
broadcasts the result.

Catching up (rejoin, late join, stragglers): a peer PULLs every neighbour it meets and
every neighbour whose UPDATE is ``catch_up_gap`` or more rounds ahead; a neighbour
that is that far ahead of the requester's round answers with a signed STATE (its
current model and round). Only answers to the peer's own PULLs count, and none more
than ``max_ahead`` rounds ahead (rejected as ``unsolicited_state`` / ``too_far_ahead``:
one neighbour's STATE for round 2**62 cannot drag the peer there). When STATE answers
put the median neighbour round ``catch_up_gap`` or more ahead, the peer merges those
models with its own rule (``Merge(catch_up_to=target)``) and continues at that round;
a training in flight for the old round is then ignored. Nobody tells a peer which
round the swarm is in: it acts on what its neighbours sent.

Neighbours: peers the runtime reported (PeerDiscovered: discovery, the scenario's
topology) plus, when ``adopt_senders`` is on, at most ``max_adopted`` strangers whose
valid messages arrived first. Messages from other peers are dropped and counted
(``not_neighbour``), so fresh identities cannot capture a peer's view. At most
``max_neighbours`` peers are taken from the runtime (later ones are counted as
``neighbour_cap``), and a neighbour whose messages were rejected for a hostile reason
(bad signature, malformed, NaN, wrong shape, too far ahead, ...) ``evict_after`` times
is dropped for good (``evicted``); stale or replayed messages are not held against it.

Compressed gossip (``compression`` hook, rumor.protocols.choco): a compressing peer
sends DIFF messages instead of UPDATEs (a keyframe first, then compressed differences
to the public copy each receiver holds), merges Choco-style views of its neighbours
with step ``gamma`` and answers RESYNC with a keyframe. Every peer decodes DIFFs, so a
compressing and a plain peer can gossip with each other.

The peer never reads a clock (every event carries ``now``), never does I/O, and a
rejected message never changes its state beyond the reject counter.
"""

from __future__ import annotations

import enum
import random
import statistics
from collections import Counter
from dataclasses import dataclass

import numpy as np

from rumor.protocols import codec
from rumor.protocols.choco import DifferenceGossip, shared_seed
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
    Relay,
    Send,
    Start,
    StartTraining,
    Tick,
    TrainingDone,
    TrainingHints,
    Vector,
)
from rumor.protocols.hooks import Adversary, Compression, Merger
from rumor.protocols.identity import Identity, peer_id_from_bytes, peer_id_to_bytes
from rumor.protocols.messages import (
    Body,
    CompressedBody,
    EmptyBody,
    Envelope,
    Kind,
    ModelBody,
    RecordBody,
    TensorPayload,
)
from rumor.protocols.schedule import RoundPlan, Step
from rumor.protocols.validation import Decode, ValidationConfig, Validator

#: rounds the wire can carry (the codec refuses 2**63 and above)
ROUND_LIMIT = 2**63


#: reject reasons that only a broken or hostile sender causes (held against it)
HOSTILE_REASONS = frozenset({
    "malformed", "unknown_version", "unknown_kind", "bad_sender", "sender_mismatch",
    "bad_signature", "too_far_ahead", "bad_record", "bad_tensor", "shape_mismatch",
    "dtype_mismatch", "nan_inf", "oversize", "bad_compressed",
})


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
    """Protocol settings of one peer (the model's shape comes in ``validation``).

    Built by ``rumor.node.engine.build_peer`` from the one ProtocolConfig; tests may
    build it directly.
    """

    validation: ValidationConfig
    role: Role = Role.GOSSIP
    rounds: int | None = None
    round_timeout: float = 10.0
    min_updates: int | None = None
    fanout: int | None = None
    sign: bool = True
    server: PeerId | None = None
    adopt_senders: bool = True
    max_adopted: int = 8
    max_neighbours: int | None = None
    evict_after: int | None = 20
    wait_when_alone: bool = True
    catch_up: bool = True
    catch_up_gap: int = 2
    polyak_beta: float | None = None
    relay_keep_rounds: int = 3
    max_relays: int = 1024
    keep_raw: bool = True  # keep received UPDATE bytes for HISTORY forwarding
    seed: int = 0
    schedule: str = "constant"  # rumor.protocols.schedule: ``rounds`` counts training
    gossip_steps: int = 1       # rounds; the plan adds mixing and final-merge rounds
    final_merge: int = 0
    feedback: str = "ef"  # compressed gossip: none | ef | econtrol (rumor.protocols.choco)
    eta: float = 1.0  # EControl's feedback strength
    gamma: float = 1.0  # consensus step of a compressing peer's merge


class Peer:
    """One peer's protocol logic. ``handle(event) -> commands``; see module docstring."""

    def __init__(
        self,
        identity: Identity,
        config: PeerConfig,
        *,
        merger: Merger | None = None,
        adversary: Adversary | None = None,
        compression: Compression | None = None,
        decode: Decode = codec.decode,
    ) -> None:
        if config.role is Role.CLIENT and config.server is None:
            raise ValueError("a FedAvg client needs the server's PeerID")
        self.plan = RoundPlan(config.schedule, config.rounds, config.gossip_steps,
                              config.final_merge)
        if config.role is not Role.GOSSIP and not self.plan.trivial:
            raise ValueError("schedules, gossip steps and final merges are for gossip peers")
        self.last_round = self.plan.total  # protocol rounds in all (None: no end)
        self.identity = identity
        self.peer_id = identity.peer_id
        self.config = config
        self.merger = merger
        self.adversary = adversary
        self.validator = Validator(config.validation, compression, decode=decode)
        self.choco = DifferenceGossip(compression, config.feedback, config.eta)
        self.phase = Phase.IDLE
        self.round = 0
        self.discovered: set[PeerId] = set()
        self.adopted: set[PeerId] = set()
        self.model: Vector | None = None  # the last own model the peer saw
        self.counters: Counter[str] = Counter()  # protocol events worth a metric
        self.evicted: set[PeerId] = set()
        self._strikes: Counter[PeerId] = Counter()
        self._buffer: dict[PeerId, ReceivedUpdate] = {}
        self._global: dict[int, Vector] = {}
        self._states: dict[PeerId, ReceivedUpdate] = {}
        self._relays: dict[tuple[PeerId, int], Relay] = {}
        self._raw: dict[tuple[PeerId, int], bytes] = {}
        self._pulled: dict[PeerId, int] = {}
        self._awaiting: set[PeerId] = set()  # PULLed, no STATE back yet
        self._answered: dict[PeerId, int] = {}
        self._view: tuple[Vector, ...] = ()
        self._catch_up_to: int | None = None
        self._sent: tuple[int, Vector, int] | None = None  # this round's update (resends)
        self._deadline: float | None = None
        self._seq = 0
        self._rng = random.Random(config.seed)
        self.sent_messages = 0
        self.sent_bytes = 0
        self.timeouts = 0

    # ------------------------------------------------------------------ public
    @property
    def neighbours(self) -> set[PeerId]:
        """Who this peer exchanges models with now (discovered ∪ adopted)."""
        return self.discovered | self.adopted

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
            return self._on_discovered(event)
        if isinstance(event, PeerLost):
            self.discovered.discard(event.peer)
            self.adopted.discard(event.peer)
            self._buffer.pop(event.peer, None)
            self._states.pop(event.peer, None)
            self._awaiting.discard(event.peer)
            self.choco.forget(event.peer)
            return self._maybe_merge(event.now)
        if isinstance(event, Start):
            return self._on_start(event)
        raise TypeError(f"unknown event {event!r}")

    # ------------------------------------------------------------- handlers
    def _on_start(self, ev: Start) -> list[Command]:
        if not 0 <= ev.round < ROUND_LIMIT:  # a runtime bug or a tampered checkpoint
            raise ValueError(f"start round {ev.round} is outside [0, 2**63)")
        self.round = ev.round
        self._seq = max(self._seq, ev.seq)
        if self.last_round is not None and self.round >= self.last_round:
            self.phase = Phase.DONE
            return [Finished(self.round)]
        out: list[Command] = []
        for peer in sorted(self.neighbours):
            out += self._pull(peer, ev.now)
        if self.config.role is Role.SERVER:
            return out + self._collect(ev.now)
        self.phase = Phase.TRAINING
        return [*out, self._start_training()]

    @property
    def step(self) -> Step:
        """What this protocol round does (its round plan's Step)."""
        return self.plan.step(self.round)

    def _start_training(self) -> StartTraining:
        # a mixing or final-merge step "trains" for 0 steps: the runtime answers with its
        # current model, which then goes out like a trained one
        return StartTraining(self.round, TrainingHints(
            polyak_beta=self.config.polyak_beta,
            local_steps=None if self.step.train else 0))

    def _on_trained(self, ev: TrainingDone) -> list[Command]:
        if self.phase is not Phase.TRAINING or ev.round != self.round:
            return [Log("unexpected_training_done", {"round": ev.round, "phase": self.phase})]
        base = ev.base if ev.base is not None else self.model
        self.model = ev.vector
        if not self.step.communicate:  # the schedule's silent round: train locally only
            self.phase = Phase.MERGING
            self._deadline = None
            return [Merge(self.round, (), local=True)]
        sent = ev.vector
        if self.adversary is not None:
            sent = self.adversary.craft(
                ev.round, base if base is not None else ev.vector, ev.vector, self._view)
        if self.config.role is Role.CLIENT:
            assert self.config.server is not None
            targets = [self.config.server]
        else:
            targets = self._targets()
        self._sent = (ev.round, sent, ev.num_samples)
        out: list[Command] = self._send_update(sent, ev.num_samples, targets, ev.now)
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
            logged: list[Command] = [Log("reject", {"from": ev.sender,
                                                    "reason": rej.reason if rej else "?",
                                                    "detail": rej.detail if rej else ""})]
            if rej is not None and ev.sender is not None and rej.reason in HOSTILE_REASONS:
                logged += self._strike(ev.sender)
            return logged
        sender = peer_id_from_bytes(env.sender)
        if env.kind is Kind.PING:
            return self._send_one(Kind.PONG, EmptyBody(), sender, ev.now)
        if env.kind is Kind.PONG:
            return [Log("pong", {"from": sender, "round": env.round})]
        if env.kind is Kind.GLOBAL:
            if self.config.role is not Role.CLIENT or sender != self.config.server:
                return [Log("ignored_global", {"from": sender})]
            assert isinstance(env.body, ModelBody)
            self._global[env.round] = env.body.tensor.to_array()
            return self._maybe_adopt(ev.now)
        if not self._is_neighbour(sender):
            self.validator.rejects["not_neighbour"] += 1
            return [Log("reject", {"from": sender, "reason": "not_neighbour",
                                   "detail": env.kind.value})]
        if env.kind is Kind.PULL:
            return self._answer_pull(sender, env.round, ev.now)
        if env.kind is Kind.STATE:
            return self._on_state(sender, env, ev.now)
        if env.kind is Kind.HISTORY:
            return self._on_history(sender, env)
        if env.kind is Kind.RESYNC:
            return self._on_resync(sender, ev.now)
        if isinstance(env.body, CompressedBody):
            decoded = self.validator.decoded
            assert decoded is not None
            public = self.choco.receive(sender, env.body, decoded, env.seq)
            if public is None:
                return self._desync(sender, env, ev.now)
            return self._buffer_update(sender, env.round, public, env.body.num_samples,
                                       ev.now)
        assert isinstance(env.body, ModelBody)
        self._keep_raw(sender, env.round, ev.data)
        return self._buffer_update(sender, env.round, env.body.tensor.to_array(),
                                   env.body.num_samples, ev.now)

    def _buffer_update(self, sender: PeerId, round_: int, vector: Vector, num_samples: int,
                       now: float) -> list[Command]:
        prev = self._buffer.get(sender)
        if prev is None or prev.round <= round_:
            self._buffer[sender] = ReceivedUpdate(sender, round_, vector, num_samples)
        out: list[Command] = []
        if round_ >= self.round + self.config.catch_up_gap:
            out += self._pull(sender, now)
        return out + self._maybe_merge(now)

    # -------------------------------------------------------- compressed gossip
    def _send_update(self, vector: Vector, num_samples: int, targets: list[PeerId],
                     now: float) -> list[Command]:
        """This round's update to ``targets``: an UPDATE, or (compressing) one DIFF per
        group of targets that hold the same copy of this peer (rumor.protocols.choco).

        A final-merge step sends full float32 keyframes: every receiver's copy of this
        peer is then exact, so the final merge averages the models themselves (with
        compressed differences and gamma < 1 it does not converge)."""
        if not self.choco.compressing:
            return self._broadcast(Kind.UPDATE, vector, num_samples, targets, now)
        final = self.step.final
        out: list[Command] = []
        for members, track in self.choco.groups(targets):
            seq = self._seq + 1
            seed = shared_seed(self.identity.peer_id_bytes, self.round, seq)
            if track is None or final:
                body = self.choco.keyframe(vector, members, seq=seq, seed=seed,
                                           num_samples=num_samples, full=final)
            else:
                body = self.choco.difference(vector, track, members, seq=seq, seed=seed,
                                             num_samples=num_samples)
            out += self._broadcast_body(Kind.DIFF, body, members, now)
        return out

    def _desync(self, sender: PeerId, env: Envelope, now: float) -> list[Command]:
        """A difference for a copy this peer does not hold: ask once for a keyframe."""
        self.validator.rejects["desync"] += 1
        out: list[Command] = [Log("reject", {"from": sender, "reason": "desync",
                                             "detail": f"base {env.body.base}"
                                             if isinstance(env.body, CompressedBody) else ""})]
        if sender not in self.choco.asked:
            self.choco.asked.add(sender)
            out += self._send_one(Kind.RESYNC, EmptyBody(), sender, now)
        return out

    def _on_resync(self, sender: PeerId, now: float) -> list[Command]:
        """``sender`` lost its copy of this peer: a keyframe now if this round's update
        is out, else with the next one."""
        if not self.choco.compressing:
            return []
        self.choco.resync(sender)
        self.counters["resync"] += 1
        if (self._sent is None or self._sent[0] != self.round
                or self.phase is not Phase.COLLECTING or self.config.role is not Role.GOSSIP):
            return []
        _, vector, num_samples = self._sent
        return self._send_update(vector, num_samples, [sender], now)

    def _is_neighbour(self, sender: PeerId) -> bool:
        if sender in self.discovered or sender in self.adopted:
            return True
        if sender in self.evicted:
            return False
        if (self.config.adopt_senders and self.config.role is Role.GOSSIP
                and len(self.adopted) < self.config.max_adopted):
            self.adopted.add(sender)
            return True
        return False

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
        self.model = ev.vector
        out: list[Command] = []
        if ev.rejected:
            self.counters["merge_rejected"] += 1
            out.append(Log("merge_rejected", {"round": ev.round}))
        out += self._forward(ev.forward, ev.now)
        if self.config.role is Role.SERVER:
            out += self._broadcast(Kind.GLOBAL, ev.vector, 0, sorted(self.neighbours), ev.now)
        if self._catch_up_to is not None:
            target, self._catch_up_to = self._catch_up_to, None
            self.counters["catch_up"] += 1
            out.append(Log("caught_up", {"from": self.round, "to": target}))
            self.round = target
            self._buffer = {p: u for p, u in self._buffer.items() if u.round >= target}
            return out + self._resume(ev.now)
        return out + self._advance(ev.now)

    def _resend(self, peer: PeerId, now: float) -> list[Command]:
        """A neighbour that appears while this round's update is out (a heal, a restart)
        gets it too, so neither side waits for the round timeout."""
        if (self._sent is None or self._sent[0] != self.round
                or self.phase is not Phase.COLLECTING or self.config.role is not Role.GOSSIP):
            return []
        _, vector, num_samples = self._sent
        return self._send_update(vector, num_samples, [peer], now)

    def _on_discovered(self, event: PeerDiscovered) -> list[Command]:
        if event.peer == self.peer_id or event.peer in self.evicted:
            return []
        if event.inbound and event.peer not in self.discovered:
            return self._on_inbound(event)
        new = event.peer not in self.neighbours
        cap = self.config.max_neighbours
        if new and cap is not None and len(self.neighbours) >= cap:
            self.counters["neighbour_cap"] += 1
            return [Log("neighbour_cap", {"peer": event.peer, "cap": cap})]
        self.discovered.add(event.peer)
        self.adopted.discard(event.peer)
        out = self._pull(event.peer, event.now) if self.phase is not Phase.IDLE else []
        if new:
            out += self._resend(event.peer, event.now)
        return out + self._maybe_merge(event.now)

    def _on_inbound(self, event: PeerDiscovered) -> list[Command]:
        """A peer that only dialled us: a neighbour only as one of ``max_adopted``
        strangers (until the runtime reports it found the peer itself)."""
        if event.peer in self.adopted:
            return []
        if (not self.config.adopt_senders or self.config.role is not Role.GOSSIP
                or len(self.adopted) >= self.config.max_adopted):
            self.counters["inbound_ignored"] += 1
            return []
        self.adopted.add(event.peer)
        out = self._pull(event.peer, event.now) if self.phase is not Phase.IDLE else []
        return out + self._resend(event.peer, event.now) + self._maybe_merge(event.now)

    def _strike(self, sender: PeerId) -> list[Command]:
        """Count a hostile reject against ``sender``; evict it at ``evict_after``."""
        limit = self.config.evict_after
        if limit is None or sender not in self.neighbours:
            return []
        self._strikes[sender] += 1
        if self._strikes[sender] < limit:
            return []
        self.discovered.discard(sender)
        self.adopted.discard(sender)
        self.evicted.add(sender)
        self.choco.forget(sender)
        self.counters["evicted"] += 1
        return [Log("evicted", {"peer": sender, "rejects": self._strikes[sender]})]

    # ------------------------------------------------------------ catching up
    def _pull(self, peer: PeerId, now: float) -> list[Command]:
        """PULL ``peer`` once per own round (it answers only if far enough ahead)."""
        if (not self.config.catch_up or self.config.role is not Role.GOSSIP
                or self._pulled.get(peer) == self.round):
            return []
        self._pulled[peer] = self.round
        self._awaiting.add(peer)
        return self._send_one(Kind.PULL, EmptyBody(), peer, now)

    def _answer_pull(self, sender: PeerId, their_round: int, now: float) -> list[Command]:
        if (self.model is None or self.round < their_round + self.config.catch_up_gap
                or self._answered.get(sender) == self.round):
            return []
        self._answered[sender] = self.round
        body = ModelBody(TensorPayload.from_array(np.asarray(self.model, np.float32)), 0)
        return self._send_one(Kind.STATE, body, sender, now)

    def _on_state(self, sender: PeerId, env: Envelope, now: float) -> list[Command]:
        # Only an answer to our PULL counts, and not one further ahead than max_ahead: a
        # single neighbour's STATE for round 2**62 would otherwise drag the peer there.
        reason = ("unsolicited_state" if sender not in self._awaiting else
                  "too_far_ahead" if env.round > self.round + self.config.validation.max_ahead
                  else None)
        if reason is not None:
            self.validator.rejects[reason] += 1
            return [Log("reject", {"from": sender, "reason": reason, "detail": "STATE"})]
        self._awaiting.discard(sender)
        assert isinstance(env.body, ModelBody)
        self._states[sender] = ReceivedUpdate(
            sender, env.round, env.body.tensor.to_array(), env.body.num_samples)
        if (self.phase not in (Phase.TRAINING, Phase.COLLECTING)
                or self.config.role is not Role.GOSSIP or self.merger is None):
            return []
        target = statistics.median_low(u.round for u in self._states.values())
        if target < self.round + self.config.catch_up_gap:
            return []
        if self.last_round is not None:
            target = min(target, self.last_round)
        used = tuple(sorted((u for u in self._states.values() if u.round >= target),
                            key=lambda u: u.sender))
        self._states.clear()
        self._catch_up_to = target
        self.phase = Phase.MERGING
        self._deadline = None
        return [Log("catching_up", {"round": self.round, "target": target,
                                    "states": len(used)}),
                Merge(self.round, used, False, catch_up_to=target)]

    # ----------------------------------------------------------- history gossip
    def _keep_raw(self, origin: PeerId, round_: int, raw: bytes) -> None:
        if not self.config.keep_raw:
            return
        self._raw[(origin, round_)] = raw
        if len(self._raw) > self.config.max_relays:
            oldest = min(self._raw, key=lambda k: k[1])
            del self._raw[oldest]

    def _on_history(self, sender: PeerId, env: Envelope) -> list[Command]:
        assert isinstance(env.body, RecordBody)
        inner = self.validator.check_record(env.body.inner)
        if inner is None:
            rej = self.validator.last_reject
            return [Log("reject", {"from": sender, "reason": "bad_record",
                                   "detail": rej.detail if rej else ""})]
        origin = peer_id_from_bytes(inner.sender)
        key = (origin, inner.round)
        if (origin == self.peer_id or key in self._relays
                or inner.round < self.round - self.config.relay_keep_rounds
                or len(self._relays) >= self.config.max_relays):
            return []
        assert isinstance(inner.body, ModelBody)
        self._relays[key] = Relay(origin, inner.round, env.body.hops,
                                  inner.body.tensor.to_array())
        self._keep_raw(origin, inner.round, env.body.inner)
        return []

    def _forward(self, items: tuple[Relay, ...], now: float) -> list[Command]:
        out: list[Command] = []
        for item in items:
            raw = self._raw.get((item.origin, item.round))
            if raw is None:
                continue
            targets = [p for p in sorted(self.neighbours) if p != item.origin]
            out += self._broadcast_body(Kind.HISTORY, RecordBody(raw, item.hops), targets, now)
        return out

    # -------------------------------------------------------------- helpers
    def _needed(self) -> int:
        """Distinct fresh updates that trigger a merge before the deadline.

        A peer with no neighbours waits for the deadline (someone may appear), unless
        ``wait_when_alone`` is off (a simulator with a fixed topology).
        """
        # |discovered ∪ adopted| without building the union (this runs per message)
        n = len(self.discovered) + (len(self.adopted - self.discovered) if self.adopted else 0)
        if not n:
            return 1 if self.config.wait_when_alone else 0
        if self.config.min_updates is not None:
            return max(1, min(self.config.min_updates, n))
        return n

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
        keep = self.round - self.config.relay_keep_rounds
        relays = tuple(r for _, r in sorted(self._relays.items()) if r.round >= keep)
        self._relays.clear()
        # what can still be forwarded: updates merged now (round >= round - max_lag)
        # and relays kept above; older bytes are dropped (memory stays bounded)
        oldest = self.round - max(lag, self.config.relay_keep_rounds)
        self._raw = {k: v for k, v in self._raw.items() if k[1] >= oldest}
        if self.adversary is not None:  # the adversary's partial view (nobody else's)
            self._view = tuple(u.vector for u in used)
        step = 1.0
        if self.choco.compressing and self.model is not None:
            own = self.model  # Choco's view of each neighbour (rumor.protocols.choco)
            used = tuple(ReceivedUpdate(u.sender, u.round,
                                        self.choco.view(u.sender, u.vector, own),
                                        u.num_samples) for u in used)
            step = (self.config.gamma if self.config.role is Role.GOSSIP
                    and not self.step.final else 1.0)
        self.phase = Phase.MERGING
        self._deadline = None
        out: list[Command] = []
        if timed_out:
            out.append(Log("round_timeout", {"round": self.round, "received": len(used)}))
        out.append(Merge(self.round, used, timed_out, forwarded=relays, step=step,
                         final=self.step.final))
        return out

    def _advance(self, now: float) -> list[Command]:
        self.round += 1
        return self._resume(now)

    def _resume(self, now: float) -> list[Command]:
        self._deadline = None
        if self.last_round is not None and self.round >= self.last_round:
            self.phase = Phase.DONE
            return [Finished(self.round)]
        if self.config.role is Role.SERVER:
            return self._collect(now)
        self.phase = Phase.TRAINING
        return [self._start_training()]

    def _targets(self) -> list[PeerId]:
        peers = sorted(self.neighbours)
        k = self.config.fanout
        if k is None or k >= len(peers):
            return peers
        return sorted(self._rng.sample(peers, k))

    def _broadcast(
        self, kind: Kind, vector: Vector, num_samples: int, targets: list[PeerId], now: float
    ) -> list[Command]:
        # encoded at once below and not kept: a view of the vector, not a copy
        payload = TensorPayload.view_of(np.asarray(vector, dtype=np.float32))
        return self._broadcast_body(kind, ModelBody(payload, num_samples), targets, now)

    def _send_one(self, kind: Kind, body: Body, to: PeerId, now: float) -> list[Command]:
        return self._broadcast_body(kind, body, [to], now)

    def _broadcast_body(
        self, kind: Kind, body: Body, targets: list[PeerId], now: float
    ) -> list[Command]:
        if not targets:
            return []
        self._seq += 1
        data = codec.encode(
            kind,
            swarm=self.config.validation.swarm,
            sender=self.identity,
            round_=self.round,
            seq=self._seq,
            sent_at=now,
            body=body,
            sign=self.config.sign,
        )
        self.sent_messages += len(targets)
        self.sent_bytes += len(data) * len(targets)
        return [Send(to, data, self.round) for to in targets]
