"""MoDeST sampling: deterministic, the same for everyone, skips who is not active."""

from __future__ import annotations

import hashlib
import random

import pytest

from rumor.protocols.errors import ConfigError
from rumor.protocols.modest import aggregators, round_order, sample, sample_key

IDS = [f"peer-{i:03d}" for i in range(100)]


def test_sample_key_is_md5_of_id_and_round() -> None:
    want = hashlib.md5(b"peer-007" + (12).to_bytes(8, "big")).digest()
    assert sample_key("peer-007", 12) == want


def test_sample_is_deterministic_and_changes_with_the_round() -> None:
    assert sample(IDS, 3) == sample(IDS, 3)
    assert len(sample(IDS, 3)) == 10
    assert sample(IDS, 3) != sample(IDS, 4)
    assert sample(IDS, 3, 25)[:10] == sample(IDS, 3)  # a prefix of one order


def test_every_peer_computes_the_same_sample_without_coordination() -> None:
    views = []
    for seed in range(5):  # peers learn of each other in different orders
        mine = list(IDS)
        random.Random(seed).shuffle(mine)
        views.append(sample(mine, 17, 10))
    assert all(v == views[0] for v in views)


def test_crashed_peers_are_skipped_given_the_active_view() -> None:
    full = sample(IDS, 9, 10)
    crashed = set(full[:3])
    active = set(IDS) - crashed
    got = sample(IDS, 9, 10, active)
    assert not crashed & set(got)
    assert got[:7] == full[3:]  # the survivors keep their place, newcomers follow
    assert got == [p for p in round_order(IDS, 9) if p in active][:10]


def test_sample_is_smaller_when_few_peers_are_active() -> None:
    assert sample(IDS, 1, 10, {"peer-001", "peer-002"}) == sorted(
        ["peer-001", "peer-002"], key=lambda p: sample_key(p, 1))


def test_aggregators_are_the_first_that_answer_a_ping() -> None:
    s = sample(IDS, 5)
    asked: list[str] = []

    def ping(p: str) -> bool:
        asked.append(p)
        return p not in (s[0], s[2])

    assert aggregators(s, ping, a=2) == [s[1], s[3]]
    assert asked == s[:4]  # nobody is pinged after the a-th answer
    assert aggregators(s, lambda p: False) == []


def test_bad_arguments_raise_config_error() -> None:
    with pytest.raises(ConfigError):
        sample(IDS, 1, 0)
    with pytest.raises(ConfigError):
        sample(IDS, -1)
    with pytest.raises(ConfigError):
        aggregators(IDS, lambda p: True, a=0)
