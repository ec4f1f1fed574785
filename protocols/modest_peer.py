"""MoDeST as a sans-IO state machine: a Peer whose round moves along samples.

A ``ModestPeer`` is a ``rumor.protocols.peer.Peer`` (same validator, codec, signing,
merger hook and executor) whose ``handle`` runs MoDeST (de Vos et al.) instead of
neighbour gossip. Nobody tells a peer the round or who is alive: it acts on what it
received.

What a peer knows::

    known      peers reported by PeerDiscovered, plus every valid sender
    suspected  peers it pinged (or sent a round's model to and re-checked) that did not
               answer within ``ping_timeout``; any valid message from a peer clears it
    active     known - suspected (itself always active)
    horizon    the highest round it has heard of in any valid envelope

Round r, with ``S_r = modest.sample(known, r, s, active)``::

    GLOBAL(r) arrives (or round 0 at Start, from the shared init) -> adopt it;
        if not already past r: StartTraining(r) and probe aggregators meanwhile:
        PING S_r in order (itself answers without a message), one at a time; the
        first ``a`` that answer (PONG) are the aggregators (modest.aggregators);
        no answer within ping_timeout -> suspected, try the next
    TrainingDone(r) and aggregators known -> UPDATE(r) to each (own one kept locally);
        no ack within ack_timeout (no valid message of round > r heard) -> re-probe
        (the crashed aggregator no longer answers) and re-send, up to max_retries
    aggregator: UPDATE(r)s collected until one from every active member of S_r, or
        agg_timeout after the first -> Merge(r, updates) (the Peer's merger; with
        "fedavg" the sample-weighted mean of the updates) -> the model of round r+1:
        PONG(r+1) to the trainers it used (the ack), GLOBAL(r+1) to S_{r+1}, and
        StartTraining(r+1) itself when it is in S_{r+1}
    aggregator, waiting: ping_timeout after the first UPDATE(r) it pings the members
        of S_r still missing; who does not answer within ping_timeout is suspected and
        not waited for (agg_timeout bounds the wait in any case)
    round check: a GLOBAL is answered by a PONG; ping_timeout after sending GLOBAL(q),
        who did not answer is suspected and the newcomers of the recomputed S_q get
        the model; then every round_timeout, while nothing of round > q was heard,
        the members it sent to are pinged the same way (max_checks at most)

Wire: UPDATE(r) = a trained model of round r; GLOBAL(q) = the aggregated model that
starts round q (sent by the aggregator of round q-1 to S_q); PING and PONG carry the
sender's horizon in the envelope's round (so a PONG of round > r is an ack of r, and
every sender's envelope rounds never decrease: the validator's replay check holds).
PeerLost is ignored (the view changes only through what a peer received or failed
to receive); PULL, STATE and HISTORY are not used.

The peer never reads a clock, never does I/O, and a rejected message changes nothing
but the reject counter.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from rumor.protocols import codec
from rumor.protocols.errors import ConfigError
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
    TrainingHints,
    Vector,
)
from rumor.protocols.hooks import Adversary, Merger
from rumor.protocols.identity import Identity, peer_id_from_bytes, peer_id_to_bytes
from rumor.protocols.messages import Body, EmptyBody, Kind, ModelBody, TensorPayload
from rumor.protocols.modest import AGGREGATORS, SAMPLE_SIZE, sample
from rumor.protocols.peer import Peer, PeerConfig, Phase
from rumor.protocols.validation import Decode


@dataclass(frozen=True)
class ModestSettings:
    """MoDeST's parameters (seconds are virtual in the simulator)."""

    s: int = SAMPLE_SIZE
    a: int = AGGREGATORS
    agg_timeout: float = 10.0
    ping_timeout: float = 1.0
    ack_timeout: float = 15.0
    round_timeout: float = 30.0
    max_retries: int = 5
    max_checks: int = 10
    stall_timeout: float = 60.0

    def validate(self) -> None:
        if self.s < 1 or not 1 <= self.a <= self.s:
            raise ConfigError(f"MoDeST needs s >= 1 and 1 <= a <= s, got s={self.s} a={self.a}")
        if min(self.agg_timeout, self.ping_timeout, self.ack_timeout, self.round_timeout,
               self.stall_timeout) <= 0:
            raise ConfigError("MoDeST timeouts must be > 0")


@dataclass
class _Probe:
    """Finding the aggregators of one round (trainer side)."""

    round: int
    started: float
    answered: list[PeerId] = field(default_factory=list)
    waiting: PeerId | None = None
    wait_until: float = 0.0
    done: bool = False


@dataclass
class _Collect:
    """Updates an aggregator holds for one round; ``expected``: S_r in its view when
    the first update came; ``verify``: when to ping the expected ones still missing
    (then, ping_timeout later, who did not answer is suspected and not waited for)."""

    deadline: float
    expected: set[PeerId]
    verify: float
    pinged: float | None = None
    updates: dict[PeerId, ReceivedUpdate] = field(default_factory=dict)

    def complete(self, suspected: Collection[PeerId]) -> bool:
        return all(p in self.updates or p in suspected for p in self.expected)


@dataclass
class _Check:
    """An aggregator making sure the round it started goes on."""

    round: int
    model: Vector
    sent: set[PeerId]
    at: float
    pinged_at: float | None = None
    checks: int = 0
    pending: set[PeerId] = field(default_factory=set)


class ModestPeer(Peer):
    """One MoDeST peer; ``handle(event) -> commands`` (see the module docstring)."""

    def __init__(
        self,
        identity: Identity,
        config: PeerConfig,
        settings: ModestSettings = ModestSettings(),
        *,
        merger: Merger | None = None,
        adversary: Adversary | None = None,
        decode: Decode = codec.decode,
    ) -> None:
        settings.validate()
        super().__init__(identity, config, merger=merger, adversary=adversary, decode=decode)
        self.settings = settings
        self.known: set[PeerId] = {self.peer_id}
        self.suspected: dict[PeerId, float] = {}
        self.horizon = 0
        self.aggregated: dict[int, int] = {}  # round -> updates merged (this peer)
        self._pong_at: dict[PeerId, float] = {}
        self._probe: _Probe | None = None
        self._trained: tuple[int, Vector, int] | None = None  # round, vector, samples
        self._delivered: dict[PeerId, int] = {}  # aggregator -> round sent
        self._ack: tuple[int, float, int] | None = None  # round, deadline, retries
        self._inbox: dict[int, _Collect] = {}
        self._merging: int | None = None  # round of the Merge in flight
        self._adopting: int | None = None  # round of the AdoptModel in flight
        self._checks: dict[int, _Check] = {}
        self._used: tuple[ReceivedUpdate, ...] = ()
        self._seen_horizon = 0
        self._model_round = -1  # the round whose starting model this peer holds
        self._verify: dict[PeerId, float] = {}  # pinged sample members -> when
        self._progress_at = 0.0  # when the horizon last grew
        self._stall_ping: float | None = None
        self._stall_after = settings.stall_timeout * (1.0 + 0.5 * self._rng.random())

    # ------------------------------------------------------------------ view
    def active(self) -> set[PeerId]:
        return (self.known - self.suspected.keys()) | {self.peer_id}

    def sample_of(self, round_: int) -> list[PeerId]:
        return sample(self.known, round_, self.settings.s, self.active())

    def _heard(self, peer: PeerId) -> None:
        self.known.add(peer)
        self.suspected.pop(peer, None)

    def _suspect(self, peer: PeerId, now: float) -> None:
        if peer != self.peer_id and peer not in self.suspected:
            self.suspected[peer] = now
            self.counters["suspected"] += 1

    # ---------------------------------------------------------------- public
    def next_deadline(self) -> float | None:
        due: list[float] = []
        if self._probe is not None and self._probe.waiting is not None:
            due.append(self._probe.wait_until)
        if self._ack is not None:
            due.append(self._ack[1])
        if self.phase is not Phase.TRAINING:
            due += [c.deadline for c in self._inbox.values()]
        for c in self._inbox.values():
            if c.pinged is None:
                due.append(c.verify)
            elif c.pinged >= 0:
                due.append(c.pinged + self.settings.ping_timeout)
        if self._verify:
            due.append(min(self._verify.values()) + self.settings.ping_timeout)
        for ch in self._checks.values():
            due.append(ch.pinged_at + self.settings.ping_timeout
                       if ch.pinged_at is not None else ch.at)
        if self._stall_armed():
            due.append(self._stall_ping + self.settings.ping_timeout
                       if self._stall_ping is not None
                       else self._progress_at + self._stall_after)
        return min(due) if due else None

    def handle(self, event: Event) -> list[Command]:
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
                self.known.add(event.peer)
                self.discovered.add(event.peer)
            return []
        if isinstance(event, PeerLost):
            self.discovered.discard(event.peer)
            return []  # the view changes only through pings and messages
        if isinstance(event, Start):
            return self._on_start(event)
        raise TypeError(f"unknown event {event!r}")

    # -------------------------------------------------------------- handlers
    def _on_start(self, ev: Start) -> list[Command]:
        self.round = ev.round
        self.horizon = max(self.horizon, ev.round)
        self._seq = max(self._seq, ev.seq)
        if self._done(self.round):
            return [Finished(self.round)]
        if self.round == 0 and self.peer_id in self.sample_of(0):
            self._model_round = 0
            return self._train(0, ev.now)  # round 0 starts from the shared init
        self.phase = Phase.IDLE
        return []

    def _done(self, round_: int) -> bool:
        return self.config.rounds is not None and round_ >= self.config.rounds

    def _train(self, round_: int, now: float) -> list[Command]:
        self.round = round_
        self.horizon = max(self.horizon, round_)
        self.phase = Phase.TRAINING
        self._trained = None
        self._ack = None
        self._probe = _Probe(round_, now)
        out: list[Command] = [StartTraining(round_, TrainingHints(self.config.polyak_beta))]
        return out + self._advance_probe(now)

    def _advance_probe(self, now: float) -> list[Command]:
        """Walk S_r in order, one ping at a time, until ``a`` answered."""
        pr = self._probe
        if pr is None or pr.done or pr.waiting is not None:
            return []
        for cand in self.sample_of(pr.round):
            if len(pr.answered) >= self.settings.a:
                break
            if cand in pr.answered:
                continue
            if cand == self.peer_id or self._pong_at.get(cand, -1.0) >= pr.started:
                pr.answered.append(cand)
                continue
            pr.waiting, pr.wait_until = cand, now + self.settings.ping_timeout
            return self._emit(Kind.PING, EmptyBody(), [cand], now, self.horizon)
        pr.done = True
        if not pr.answered:
            pr.answered.append(self.peer_id)  # nobody answered: aggregate alone
        return self._deliver(now)

    def _deliver(self, now: float) -> list[Command]:
        """Send the trained update of the probed round to its aggregators."""
        pr, tr = self._probe, self._trained
        if pr is None or not pr.done or tr is None or tr[0] != pr.round:
            return []
        round_, vec, n = tr
        out: list[Command] = []
        targets = [p for p in pr.answered if self._delivered.get(p) != round_]
        for p in targets:
            self._delivered[p] = round_
        if self.peer_id in targets:
            out += self._on_update(ReceivedUpdate(self.peer_id, round_, vec, n), now)
        others = sorted(p for p in targets if p != self.peer_id)
        out += self._emit_model(Kind.UPDATE, vec, n, others, now, round_)
        if self._ack is None or self._ack[0] != round_:
            self._ack = (round_, now + self.settings.ack_timeout, 0)
        if others:
            out.append(Log("modest_update", {"round": round_, "to": others}))
        return out

    def _on_trained(self, ev: TrainingDone) -> list[Command]:
        if self.phase is not Phase.TRAINING or ev.round != self.round:
            return [Log("unexpected_training_done", {"round": ev.round, "phase": self.phase})]
        self.model = ev.vector
        sent = ev.vector
        if self.adversary is not None:
            base = ev.base if ev.base is not None else ev.vector
            sent = self.adversary.craft(ev.round, base, ev.vector, ())
        self.phase = Phase.COLLECTING  # waiting for the ack (and maybe aggregating)
        self._trained = (ev.round, sent, ev.num_samples)
        out = self._deliver(ev.now)
        return out + self._due_merges(ev.now)

    def _on_message(self, ev: MessageReceived) -> list[Command]:
        link = peer_id_to_bytes(ev.sender) if ev.sender is not None else None
        env = self.validator.check(ev.data, now=ev.now, current_round=self.round,
                                   link_sender=link)
        if env is None:
            rej = self.validator.last_reject
            return [Log("reject", {"from": ev.sender, "reason": rej.reason if rej else "?",
                                   "detail": rej.detail if rej else ""})]
        sender = peer_id_from_bytes(env.sender)
        self._heard(sender)
        self.horizon = max(self.horizon, env.round)
        now = ev.now
        self._pong_at[sender] = now  # any valid message answers a ping
        out: list[Command] = []
        pr = self._probe
        if pr is not None and pr.waiting == sender:
            pr.waiting = None
            out += self._advance_probe(now)
        if env.kind is Kind.PING:
            out += self._emit(Kind.PONG, EmptyBody(), [sender], now, self.horizon)
        elif env.kind is Kind.PONG:
            pass
        elif env.kind is Kind.UPDATE:
            assert isinstance(env.body, ModelBody)
            up = ReceivedUpdate(sender, env.round, env.body.tensor.to_array(),
                                env.body.num_samples)
            out += self._on_update(up, now)
        elif env.kind is Kind.GLOBAL:
            assert isinstance(env.body, ModelBody)
            out += self._emit(Kind.PONG, EmptyBody(), [sender], now, self.horizon)
            out += self._on_global(env.round, env.body.tensor.to_array(), now)
        else:
            out.append(Log("ignored", {"from": sender, "kind": env.kind.value}))
        return out + self._progress(now)

    def _progress(self, now: float) -> list[Command]:
        """Drop what the horizon made moot: an ack awaited, a round check, a stale
        collection, a stall suspicion."""
        if self.horizon > self._seen_horizon:
            self._seen_horizon = self.horizon
            self._progress_at = now
            self._stall_ping = None
        if self._ack is not None and self.horizon > self._ack[0]:
            self._ack = None
            if self.phase is Phase.COLLECTING:
                self.phase = Phase.IDLE
        for q in [q for q in self._checks if self.horizon > q]:
            del self._checks[q]
        return []

    def _on_global(self, round_: int, vector: Vector, now: float) -> list[Command]:
        if round_ <= self._model_round:
            return []  # a duplicate (a > 1, a re-check) or a stale model
        if self._merging is not None or self._adopting is not None:
            return []  # busy adopting; the round check resends if needed
        self._adopting = round_
        self._model_round = round_
        self.round = max(self.round, round_)
        self.phase = Phase.MERGING
        self._probe, self._trained, self._ack = None, None, None
        return [AdoptModel(round_, vector)]

    def _on_update(self, up: ReceivedUpdate, now: float) -> list[Command]:
        if up.round in self.aggregated or up.round < self.horizon - 1 or (
                up.round < self.horizon and up.round not in self._inbox):
            # late: the round went on without it
            if up.sender == self.peer_id:
                return []
            return self._emit(Kind.PONG, EmptyBody(), [up.sender], now, self.horizon)
        col = self._inbox.get(up.round)
        if col is None:
            col = self._inbox[up.round] = _Collect(
                now + self.settings.agg_timeout, set(self.sample_of(up.round)),
                now + self.settings.ping_timeout)
        col.updates[up.sender] = up
        if col.complete(self.suspected):
            col.deadline = now  # everyone delivered
        return self._due_merges(now)

    def _due_merges(self, now: float) -> list[Command]:
        if self._merging is not None or self._adopting is not None:
            return []
        if self.phase is Phase.TRAINING:
            return []  # merge after own training (the model it trains must not change)
        due = sorted(r for r, c in self._inbox.items() if c.deadline <= now)
        if not due:
            return []
        r = due[-1]  # the newest due round; older ones are moot
        for old in due[:-1]:
            del self._inbox[old]
            self.aggregated[old] = 0
        if r < self.horizon - 1:  # someone aggregated r already (we heard of r+2)
            col = self._inbox.pop(r)
            self.aggregated[r] = 0
            late = sorted(p for p in col.updates if p != self.peer_id)
            return self._emit(Kind.PONG, EmptyBody(), late, now, self.horizon)
        used = tuple(sorted(self._inbox.pop(r).updates.values(), key=lambda u: u.sender))
        senders = {u.sender for u in used}
        members = self.sample_of(r)
        missing = sorted(t for t in members if t not in senders and t != self.peer_id)
        for t in missing:  # did not deliver: is it still there?
            self._verify.setdefault(t, now)
        self.aggregated[r] = len(used)
        self._merging = r
        self.phase = Phase.MERGING
        self._used = used
        out: list[Command] = self._emit(Kind.PING, EmptyBody(), missing, now, self.horizon)
        return [*out, Merge(r, used, timed_out=bool(missing))]

    def _on_merged(self, ev: MergeDone) -> list[Command]:
        now = ev.now
        if self._adopting is not None and ev.round == self._adopting:
            self._adopting = None
            self.model = ev.vector
            self.phase = Phase.IDLE
            if self._done(ev.round):
                self.phase = Phase.DONE
                return [Finished(ev.round)]
            if self.round == ev.round:
                return self._train(ev.round, now)
            return self._due_merges(now)
        if self._merging is None or ev.round != self._merging:
            return [Log("unexpected_merge_done", {"round": ev.round, "phase": self.phase})]
        r, self._merging = self._merging, None
        q = r + 1
        self.model = ev.vector
        self.horizon = max(self.horizon, q)
        self._model_round = max(self._model_round, q)
        self.phase = Phase.IDLE
        out: list[Command] = [Log("modest_aggregated", {"round": r, "updates": len(self._used)})]
        acked = sorted(u.sender for u in self._used if u.sender != self.peer_id)
        out += self._progress(now)
        if self.round <= q:
            self.round = q
        out += self._emit(Kind.PONG, EmptyBody(), acked, now, self.horizon)
        if self._done(q):
            self.phase = Phase.DONE
            return [*out, Finished(q)]
        out += self._launch(q, ev.vector, now)
        return out + self._due_merges(now)

    def _launch(self, q: int, vector: Vector, now: float) -> list[Command]:
        """Send the model that starts round q to S_q (and train it if in S_q)."""
        targets = [p for p in self.sample_of(q) if p != self.peer_id]
        out = self._emit_model(Kind.GLOBAL, vector, 0, targets, now, q)
        # GLOBAL is answered by a PONG: ping_timeout later, who did not answer is
        # suspected and the newcomers of the recomputed S_q get the model
        self._checks[q] = _Check(q, vector, set(targets), now, pinged_at=now,
                                 pending=set(targets))
        if self.peer_id in self.sample_of(q) and self.round <= q:
            out += self._train(q, now)
        return out

    def _on_tick(self, now: float) -> list[Command]:
        out: list[Command] = []
        pr = self._probe
        if pr is not None and pr.waiting is not None and now >= pr.wait_until:
            self._suspect(pr.waiting, now)
            pr.waiting = None
            out += self._advance_probe(now)
        if self._ack is not None and now >= self._ack[1]:
            round_, _, tries = self._ack
            if tries >= self.settings.max_retries or self._trained is None:
                self._ack = None
            else:
                self.timeouts += 1
                self._ack = (round_, now + self.settings.ack_timeout, tries + 1)
                for p in list(self._delivered):  # re-probe: who answers now?
                    if self._delivered[p] == round_:
                        del self._delivered[p]
                self._probe = _Probe(round_, now)
                out.append(Log("modest_retry", {"round": round_, "try": tries + 1}))
                out += self._advance_probe(now)
        for col in self._inbox.values():
            out += self._verify_inbox(col, now)
        for p, at in sorted(self._verify.items()):
            if now >= at + self.settings.ping_timeout:
                del self._verify[p]
                if self._pong_at.get(p, -1.0) < at:
                    self._suspect(p, now)
        for q in sorted(list(self._checks)):
            if q in self._checks:
                out += self._round_check(self._checks[q], now)
        out += self._stall(now)
        out += self._due_merges(now)
        return out

    def _stall_armed(self) -> bool:
        """Whether the stall timer runs (one predicate for ``next_deadline`` and
        ``_stall``: a deadline that its handler ignores would wake the runtime forever)."""
        return self.model is not None and self.phase not in (Phase.DONE, Phase.TRAINING)

    def _stall(self, now: float) -> list[Command]:
        """Nothing newer heard for stall_timeout (x1-1.5, per peer): ask the s peers
        heard from last; if none of them knows a newer round either, the round was
        lost with its holders (all crashed): restart it from the own model."""
        model = self.model
        if model is None or not self._stall_armed():
            return []
        if self._stall_ping is None:
            if now < self._progress_at + self._stall_after:
                return []
            self._stall_ping = now
            recent = sorted((p for p in self._pong_at if p not in self.suspected),
                            key=lambda p: (-self._pong_at[p], p))[: self.settings.s]
            return self._emit(Kind.PING, EmptyBody(), recent, now, self.horizon)
        if now < self._stall_ping + self.settings.ping_timeout:
            return []
        self._stall_ping = None
        self._progress_at = now  # next suspicion a full stall_timeout later
        if self._done(self.horizon):
            return []
        self.counters["stall_restart"] += 1
        q = max(self.horizon, self.round)
        self.horizon = q
        self._model_round = max(self._model_round, q)
        self.round = q
        return [Log("modest_stall_restart", {"round": q}), *self._launch(q, model, now)]

    def _verify_inbox(self, col: _Collect, now: float) -> list[Command]:
        if col.pinged is None and now >= col.verify:
            missing = sorted(p for p in col.expected if p not in col.updates
                             and p not in self.suspected and p != self.peer_id)
            col.pinged = now if missing else -1.0
            return self._emit(Kind.PING, EmptyBody(), missing, now, self.horizon)
        if (col.pinged is not None and col.pinged >= 0
                and now >= col.pinged + self.settings.ping_timeout):
            for p in sorted(col.expected):
                if p not in col.updates and self._pong_at.get(p, -1.0) < col.pinged:
                    self._suspect(p, now)
            col.pinged = -1.0
            if col.complete(self.suspected):
                col.deadline = min(col.deadline, now)
        return []

    def _round_check(self, ch: _Check, now: float) -> list[Command]:
        if ch.pinged_at is None:
            if now < ch.at:
                return []
            ch.pinged_at = now
            ch.checks += 1
            ch.pending = set(ch.sent)
            return self._emit(Kind.PING, EmptyBody(), sorted(ch.pending), now, self.horizon)
        if now < ch.pinged_at + self.settings.ping_timeout:
            return []
        for p in sorted(ch.pending):
            if self._pong_at.get(p, -1.0) < ch.pinged_at:
                self._suspect(p, now)
        new = [p for p in self.sample_of(ch.round) if p != self.peer_id and p not in ch.sent]
        ch.sent.update(new)
        ch.pending = set(new)
        ch.pinged_at = now if new else None  # the GLOBAL to newcomers is their ping
        ch.at = now + self.settings.round_timeout
        out: list[Command] = []
        if new:
            out.append(Log("modest_resend", {"round": ch.round, "to": new}))
            out += self._emit_model(Kind.GLOBAL, ch.model, 0, new, now, ch.round)
        if ch.checks >= self.settings.max_checks and not new:
            del self._checks[ch.round]
        return out

    # ----------------------------------------------------------------- wire
    def _emit_model(self, kind: Kind, vector: Vector, num_samples: int,
                    targets: list[PeerId], now: float, round_: int) -> list[Command]:
        payload = TensorPayload.from_array(np.asarray(vector, dtype=np.float32))
        return self._emit(kind, ModelBody(payload, num_samples), targets, now, round_)

    def _emit(self, kind: Kind, body: Body, targets: list[PeerId], now: float,
              round_: int) -> list[Command]:
        if not targets:
            return []
        self._seq += 1
        data = codec.encode(kind, swarm=self.config.validation.swarm, sender=self.identity,
                            round_=round_, seq=self._seq, sent_at=now, body=body,
                            sign=self.config.sign)
        self.sent_messages += len(targets)
        self.sent_bytes += len(data) * len(targets)
        self.counters[kind.value] += len(targets)
        return [Send(to, data, round_) for to in targets]
