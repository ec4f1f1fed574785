"""Two or three sans-IO Peers driven by hand on a virtual clock."""

from __future__ import annotations

import numpy as np

from rumor.protocols.events import (
    AdoptModel,
    Finished,
    Log,
    Merge,
    MergeDone,
    MessageReceived,
    PeerDiscovered,
    Send,
    Start,
    StartTraining,
    Tick,
    TrainingDone,
)
from rumor.protocols.peer import Peer, PeerConfig, Phase, Role
from rumor.protocols.validation import ValidationConfig
from tests.helpers import SWARM, ident, update_bytes

D = 4


def peer(i: int, **kw: object) -> Peer:
    cfg = PeerConfig(validation=ValidationConfig(swarm=SWARM, shape=(D,)), **kw)  # type: ignore[arg-type]
    return Peer(ident(i), cfg)


def connect(a: Peer, b: Peer) -> None:
    a.handle(PeerDiscovered(b.peer_id, 0.0))
    b.handle(PeerDiscovered(a.peer_id, 0.0))


def sends(cmds: list[object]) -> list[Send]:
    return [c for c in cmds if isinstance(c, Send)]


def not_sends(cmds: list[object]) -> list[object]:
    """Everything but the Sends (a starting gossip peer also PULLs its neighbours)."""
    return [c for c in cmds if not isinstance(c, Send)]


def test_round_trains_pushes_collects_and_merges() -> None:
    a, b = peer(1, rounds=2), peer(2, rounds=2)
    connect(a, b)
    assert not_sends(a.handle(Start(0.0))) == [StartTraining(0)]
    assert not_sends(b.handle(Start(0.0))) == [StartTraining(0)]
    out_a = sends(a.handle(TrainingDone(0, np.ones(D, np.float32), 5, 1.0)))
    out_b = sends(b.handle(TrainingDone(0, np.zeros(D, np.float32), 5, 1.0)))
    assert [s.to for s in out_a] == [b.peer_id] and [s.to for s in out_b] == [a.peer_id]
    merged = [c for c in b.handle(MessageReceived(a.peer_id, out_a[0].data, 1.1))
              if isinstance(c, Merge)]
    assert len(merged) == 1 and merged[0].updates[0].sender == a.peer_id
    np.testing.assert_array_equal(merged[0].updates[0].vector, np.ones(D))
    assert b.handle(MergeDone(0, np.zeros(D, np.float32), 1.2)) == [StartTraining(1)]
    assert b.round == 1


def test_round_timeout_merges_what_arrived() -> None:
    a, b = peer(1, round_timeout=5.0), peer(2)
    connect(a, b)
    a.handle(Start(0.0))
    a.handle(TrainingDone(0, np.ones(D, np.float32), 5, 1.0))
    assert a.next_deadline() == 6.0
    assert a.handle(Tick(5.9)) == []
    out = a.handle(Tick(6.0))
    merge = [c for c in out if isinstance(c, Merge)]
    assert merge and merge[0].timed_out and merge[0].updates == ()
    assert a.timeouts == 1


def test_forged_update_is_rejected_counted_and_changes_nothing() -> None:
    a, b = peer(1), peer(2)
    connect(a, b)
    a.handle(Start(0.0))
    a.handle(TrainingDone(0, np.ones(D, np.float32), 5, 1.0))
    forged = update_bytes(ident(9), np.full(D, 1e6, np.float32))  # not a's neighbour b
    out = a.handle(MessageReceived(b.peer_id, forged, 1.5))  # link says b, message says 9
    assert all(isinstance(c, Log) for c in out)
    assert a.validator.rejects == {"sender_mismatch": 1}
    assert a.phase is Phase.COLLECTING and a.round == 0


def test_updates_from_a_neighbour_ahead_count_for_the_current_round() -> None:
    a = peer(1)
    b_id = ident(2)
    a.handle(PeerDiscovered(b_id.peer_id, 0.0))
    a.handle(Start(0.0))
    early = update_bytes(b_id, np.ones(D, np.float32), round_=0, seq=1)
    assert a.handle(MessageReceived(b_id.peer_id, early, 0.5)) == []  # buffered while training
    out = a.handle(TrainingDone(0, np.zeros(D, np.float32), 5, 1.0))
    assert any(isinstance(c, Merge) and len(c.updates) == 1 for c in out)


def test_fedavg_client_adopts_the_servers_global_model() -> None:
    server_id = ident(100)
    client = peer(1, role=Role.CLIENT, server=server_id.peer_id, rounds=1)
    server = peer(100, role=Role.SERVER, rounds=1, min_updates=1)
    connect(client, server)
    assert server.handle(Start(0.0)) == []
    client.handle(Start(0.0))
    up = sends(client.handle(TrainingDone(0, np.ones(D, np.float32), 5, 1.0)))
    assert [s.to for s in up] == [server.peer_id]
    merge = [c for c in server.handle(MessageReceived(client.peer_id, up[0].data, 1.1))
             if isinstance(c, Merge)]
    assert merge
    back = sends(server.handle(MergeDone(0, np.full(D, 2.0, np.float32), 1.2)))
    adopt = client.handle(MessageReceived(server.peer_id, back[0].data, 1.3))
    assert isinstance(adopt[0], AdoptModel)
    np.testing.assert_array_equal(adopt[0].vector, np.full(D, 2.0))
    assert client.handle(MergeDone(0, adopt[0].vector, 1.4)) == [Finished(1)]


def test_replayed_update_does_not_count_twice() -> None:
    a = peer(1, min_updates=2)
    b, c = ident(2), ident(3)
    for x in (b, c):
        a.handle(PeerDiscovered(x.peer_id, 0.0))
    a.handle(Start(0.0))
    a.handle(TrainingDone(0, np.zeros(D, np.float32), 5, 1.0))
    raw = update_bytes(b, np.ones(D, np.float32))
    assert not [x for x in a.handle(MessageReceived(b.peer_id, raw, 1.1)) if isinstance(x, Merge)]
    assert not [x for x in a.handle(MessageReceived(b.peer_id, raw, 1.2)) if isinstance(x, Merge)]
    assert a.validator.rejects["replay"] == 1
