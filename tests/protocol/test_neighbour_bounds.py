"""The neighbour set is bounded: a cap on discovered peers, eviction by behaviour."""

from __future__ import annotations

import numpy as np

from rumor.protocols.events import Log, MessageReceived, PeerDiscovered, Start
from rumor.protocols.peer import Peer, PeerConfig
from rumor.protocols.validation import ValidationConfig
from tests.helpers import SWARM, ident, update_bytes

D = 4


def _peer(**kw: object) -> Peer:
    cfg = PeerConfig(validation=ValidationConfig(swarm=SWARM, shape=(D,)), **kw)  # type: ignore[arg-type]
    return Peer(ident(1), cfg)


def test_discovered_peers_beyond_the_cap_are_not_taken_and_are_counted() -> None:
    p = _peer(max_neighbours=5)
    for i in range(2, 40):
        p.handle(PeerDiscovered(ident(i).peer_id, 0.0))
    assert len(p.neighbours) == 5
    assert p.counters["neighbour_cap"] == 33


def test_a_neighbour_sending_garbage_is_evicted_and_cannot_come_back() -> None:
    p = _peer(evict_after=3)
    bad, good = ident(2), ident(3)
    for who in (bad, good):
        p.handle(PeerDiscovered(who.peer_id, 0.0))
    p.handle(Start(0.0))
    wrong_shape = update_bytes(bad, np.zeros(D + 1, np.float32), seq=1)
    logs: list[Log] = []
    for _ in range(3):
        logs += [c for c in p.handle(MessageReceived(bad.peer_id, wrong_shape, 1.0))
                 if isinstance(c, Log)]
    assert [x.event for x in logs].count("evicted") == 1
    assert p.neighbours == {good.peer_id} and p.counters["evicted"] == 1
    p.handle(PeerDiscovered(bad.peer_id, 2.0))
    assert bad.peer_id not in p.neighbours
    valid = update_bytes(bad, np.zeros(D, np.float32), seq=2)  # nor adopted as a stranger
    p.handle(MessageReceived(bad.peer_id, valid, 3.0))
    assert bad.peer_id not in p.neighbours and p.validator.rejects["not_neighbour"] == 1


def test_stale_and_replayed_messages_are_not_held_against_a_neighbour() -> None:
    p = _peer(evict_after=2)
    slow = ident(2)
    p.handle(PeerDiscovered(slow.peer_id, 0.0))
    p.handle(Start(0.0, round=20))
    for seq in range(1, 6):  # far behind: stale every time
        p.handle(MessageReceived(slow.peer_id, update_bytes(slow, np.zeros(D, np.float32),
                                                            round_=1, seq=seq), 1.0))
    assert p.validator.rejects["stale"] == 5
    assert slow.peer_id in p.neighbours and p.counters["evicted"] == 0


def test_peers_that_only_dialled_in_are_bounded_like_strangers_until_found() -> None:
    p = _peer(max_adopted=3)
    for i in range(2, 12):
        p.handle(PeerDiscovered(ident(i).peer_id, 0.0, inbound=True))
    assert len(p.neighbours) == 3 and p.counters["inbound_ignored"] == 7
    p.handle(PeerDiscovered(ident(11).peer_id, 1.0))  # discovery found it: a neighbour
    assert ident(11).peer_id in p.discovered and len(p.neighbours) == 4
