"""A hypothesis state machine drives one Peer with random event sequences.

Invariants after every step: a rejected message changes nothing but the reject counter
(model, round, phase, buffered updates stay), the round never goes back, and every
command is well formed (Sends decode under the swarm and come from the peer itself,
Merge and StartTraining are for the current round, at most one Merge is outstanding).
"""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rumor.protocols import codec
from rumor.protocols.events import (
    Merge,
    MergeDone,
    MessageReceived,
    PeerDiscovered,
    PeerLost,
    Send,
    Start,
    StartTraining,
    Tick,
    TrainingDone,
)
from rumor.protocols.messages import EmptyBody, Kind, RecordBody
from rumor.protocols.peer import Peer, PeerConfig, Phase
from rumor.protocols.validation import ValidationConfig
from tests.helpers import SWARM, ident, update_bytes

D = 3
OTHERS = [ident(i) for i in range(2, 6)]


class PeerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        cfg = PeerConfig(validation=ValidationConfig(swarm=SWARM, shape=(D,), max_lag=2,
                                                     max_ahead=50),
                         round_timeout=5.0, min_updates=2, catch_up_gap=3)
        self.peer = Peer(ident(1), cfg)
        self.now = 0.0
        self.seq = {o.peer_id: 0 for o in OTHERS}
        self.training: int | None = None
        self.merging: Merge | None = None
        self.max_round = 0
        self._run(Start(self.now))

    # ------------------------------------------------------------------ drive
    def _run(self, event: object) -> None:
        before_round = self.peer.round
        cmds = self.peer.handle(event)  # type: ignore[arg-type]
        assert self.peer.round >= before_round
        for c in cmds:
            if isinstance(c, Send):
                env = codec.decode(c.data, swarm=SWARM)
                assert env.sender == self.peer.identity.peer_id_bytes
                assert c.to != self.peer.peer_id
            elif isinstance(c, StartTraining):
                assert c.round == self.peer.round
                self.training = c.round
            elif isinstance(c, Merge):
                assert self.merging is None, "two merges outstanding"
                assert c.round == self.peer.round
                assert all(u.vector.shape == (D,) for u in c.updates)
                self.merging = c

    def _next_seq(self, sender: str) -> int:
        self.seq[sender] += 1
        return self.seq[sender]

    def _deliver(self, data: bytes, sender: str) -> None:
        p = self.peer
        snap = (p.round, p.phase, dict(p._buffer), None if p.model is None else p.model.copy())
        rejects = sum(p.validator.rejects.values())
        self._run(MessageReceived(sender, data, self.now))
        if sum(p.validator.rejects.values()) > rejects:
            assert (p.round, p.phase) == snap[:2]
            assert p._buffer.keys() == snap[2].keys()
            assert all(p._buffer[k] is snap[2][k] for k in snap[2])
            if snap[3] is None:
                assert p.model is None
            else:
                assert p.model is not None and np.array_equal(p.model, snap[3])

    # ------------------------------------------------------------------ rules
    @rule(k=st.integers(0, len(OTHERS) - 1))
    def discover(self, k: int) -> None:
        self._run(PeerDiscovered(OTHERS[k].peer_id, self.now))

    @rule(k=st.integers(0, len(OTHERS) - 1))
    def lose(self, k: int) -> None:
        self._run(PeerLost(OTHERS[k].peer_id, self.now))

    @rule(dt=st.floats(0.0, 8.0))
    def tick(self, dt: float) -> None:
        self.now += dt
        self._run(Tick(self.now))

    @precondition(lambda self: self.training is not None)
    @rule(v=st.floats(-10, 10))
    def finish_training(self, v: float) -> None:
        r, self.training = self.training, None
        self._run(TrainingDone(r, np.full(D, v, np.float32), 10, self.now))  # type: ignore[arg-type]

    @precondition(lambda self: self.merging is not None)
    @rule()
    def finish_merge(self) -> None:
        assert self.merging is not None
        m, self.merging = self.merging, None
        self._run(MergeDone(m.round, np.zeros(D, np.float32), self.now))

    @rule(k=st.integers(0, len(OTHERS) - 1), dr=st.integers(-4, 6),
          v=st.floats(-5, 5), kind=st.sampled_from([Kind.UPDATE, Kind.STATE]))
    def model_message(self, k: int, dr: int, v: float, kind: Kind) -> None:
        o = OTHERS[k]
        data = update_bytes(o, np.full(D, v, np.float32), round_=max(0, self.peer.round + dr),
                            seq=self._next_seq(o.peer_id), kind=kind)
        self._deliver(data, o.peer_id)

    @rule(k=st.integers(0, len(OTHERS) - 1), dr=st.integers(-3, 3))
    def pull(self, k: int, dr: int) -> None:
        o = OTHERS[k]
        data = codec.encode(Kind.PULL, swarm=SWARM, sender=o, round_=max(0, self.peer.round + dr),
                            seq=self._next_seq(o.peer_id), sent_at=0.0, body=EmptyBody())
        self._deliver(data, o.peer_id)

    @rule(k=st.integers(0, len(OTHERS) - 1), j=st.integers(0, len(OTHERS) - 1))
    def history(self, k: int, j: int) -> None:
        o, origin = OTHERS[k], OTHERS[j]
        inner = update_bytes(origin, np.ones(D, np.float32), round_=self.peer.round, seq=1)
        data = codec.encode(Kind.HISTORY, swarm=SWARM, sender=o, round_=self.peer.round,
                            seq=self._next_seq(o.peer_id), sent_at=0.0,
                            body=RecordBody(inner, 2))
        self._deliver(data, o.peer_id)

    @rule(k=st.integers(0, len(OTHERS) - 1), junk=st.binary(max_size=64),
          flip=st.integers(0, 10_000), what=st.sampled_from(
              ["junk", "flip", "nan", "shape", "replay", "far", "forged_sender"]))
    def hostile(self, k: int, junk: bytes, flip: int, what: str) -> None:
        o = OTHERS[k]
        r = self.peer.round
        if what == "junk":
            data = junk
        elif what == "nan":
            data = update_bytes(o, np.array([np.nan] * D, np.float32), round_=r,
                                seq=self._next_seq(o.peer_id))
        elif what == "shape":
            data = update_bytes(o, np.zeros(D + 1, np.float32), round_=r,
                                seq=self._next_seq(o.peer_id))
        elif what == "replay":
            data = update_bytes(o, np.zeros(D, np.float32), round_=r, seq=0)
        elif what == "far":
            data = update_bytes(o, np.zeros(D, np.float32), round_=r + 10_000,
                                seq=self._next_seq(o.peer_id))
        elif what == "forged_sender":
            data = update_bytes(OTHERS[(k + 1) % len(OTHERS)], np.zeros(D, np.float32),
                                round_=r, seq=10**9)
        else:
            raw = bytearray(update_bytes(o, np.zeros(D, np.float32), round_=r, seq=10**9))
            raw[flip % len(raw)] ^= 0x5A
            data = bytes(raw)
        self._deliver(data, o.peer_id)

    @invariant()
    def round_never_goes_back(self) -> None:
        assert self.peer.round >= self.max_round
        self.max_round = self.peer.round

    @invariant()
    def phase_matches_outstanding_work(self) -> None:
        if self.merging is not None:
            assert self.peer.phase is Phase.MERGING


TestPeerStateMachine = PeerMachine.TestCase
TestPeerStateMachine.settings = settings(max_examples=60, stateful_step_count=40,
                                         deadline=None)
