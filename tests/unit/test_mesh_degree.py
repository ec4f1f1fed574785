"""Bounded, balanced degree of a launched mesh: who bootstraps through whom, and which
found providers become members (the two causes of the 64-peer round-1 timeouts)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from rumor.node.mesh.launcher import balanced_relays
from rumor.protocols.identity import Identity


@given(n_up=st.integers(1, 60), n_new=st.integers(1, 60), k=st.integers(1, 10),
       seed=st.integers(0, 2**16))
def test_balanced_relays_spread_the_entry_points_within_one(n_up: int, n_new: int, k: int,
                                                            seed: int) -> None:
    up = list(range(n_up))
    new = list(range(n_up, n_up + n_new))
    handed: dict[int, int] = {}
    chosen = balanced_relays(new, up, handed, k, random.Random(seed))
    assert set(chosen) == set(new)
    for picks in chosen.values():
        assert len(picks) == min(k, n_up) == len(set(picks))
        assert set(picks) <= set(up)
    counts = [handed.get(j, 0) for j in up]
    assert sum(counts) == n_new * min(k, n_up)
    assert max(counts) - min(counts) <= 1


@given(before=st.dictionaries(st.integers(0, 29), st.integers(0, 5)), seed=st.integers(0, 99))
def test_balanced_relays_take_the_least_handed_out_first(before: dict[int, int],
                                                         seed: int) -> None:
    up = list(range(30))
    handed = dict(before)
    picks = balanced_relays([100], up, handed, 8, random.Random(seed))[100]
    rest = [j for j in up if j not in picks]
    assert max(before.get(j, 0) for j in picks) <= min(before.get(j, 0) for j in rest)


def test_only_the_chosen_providers_become_members() -> None:
    """A provider we only hold a (DHT query) connection to is not made a member: before,
    every provider found became one, and any connection to it a neighbour."""
    from rumor.node.transport.libp2p import Libp2pTransport

    t = Libp2pTransport(Identity.from_seed(b"\x07" * 32), discovery_interval=None,
                        target_members=12)
    found = {f"p{i:02d}": [(f"/ip4/127.0.0.1/tcp/{4000 + i}",)] for i in range(30)}
    t._live = {f"p{i:02d}" for i in range(5)}
    connected = {f"p{i:02d}" for i in range(20)}
    t._is_connected = lambda peer: peer in connected  # type: ignore[method-assign]
    picked = [p for p, _ in t._to_adopt(found)]
    assert picked[:5] == [f"p{i:02d}" for i in range(5)]  # live ones refreshed
    others = picked[5:]
    assert len(others) == 12 - 5
    assert all(p in connected for p in others)  # connected ones first: no dial needed
    assert t._members == set(others)
    assert len(t._members | t._live) == 12  # the rest of the 30 stay strangers
