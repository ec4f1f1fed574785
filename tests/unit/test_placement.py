"""Attacker placement (random / hubs / list) and how much of the honest views it holds."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumor.protocols.errors import ConfigError
from rumor.topology import (
    build_topology,
    byzantine_view_stats,
    parse_placement,
    place_attackers,
)


def test_random_placement_is_the_simulators_seeded_draw() -> None:
    graph = build_topology("regular:6", 30, seed=4)
    ours = np.random.default_rng(4 + 31)
    theirs = np.random.default_rng(4 + 31)
    picked = place_attackers(graph, 5, "random", seed=ours)
    assert picked == sorted(int(x) for x in theirs.choice(30, size=5, replace=False))
    # a Generator is advanced exactly as the simulator's own draw advances it
    assert ours.integers(1 << 30) == theirs.integers(1 << 30)
    assert place_attackers(graph, 5, "random", seed=35) == picked


def test_hubs_are_the_highest_degree_peers_with_ties_to_the_lower_index() -> None:
    star = nx.star_graph(9)  # hub 0, leaves 1..9
    assert place_attackers(star, 3, "hubs") == [0, 1, 2]
    graph = build_topology("ba:2", 50, seed=1)
    hubs = place_attackers(graph, 5, "hubs")
    floor = min(graph.degree(p) for p in hubs)
    assert all(graph.degree(p) <= floor for p in set(graph) - set(hubs))


def test_a_list_places_exactly_those_peers() -> None:
    graph = nx.cycle_graph(20)
    assert place_attackers(graph, 3, "list:12,3,7") == [3, 7, 12]
    assert place_attackers(graph, 0, "random") == []
    assert parse_placement(" list:1,2 ") == ("list", (1, 2))


@pytest.mark.parametrize(
    ("count", "placement", "message"),
    [
        (3, "central", "placement must be random, hubs or list:I,J,..."),
        (3, "list", "placement must be random, hubs or list"),
        (2, "list:1,x", "comma-separated peer indices"),
        (2, "list:4,4", "names a peer twice"),
        (2, "list:4,25", r"peers \[25\] outside 0\.\.19"),
        (3, "list:1,2", "names 2 peers but there are 3 Byzantine peers"),
        (21, "random", r"integer in 0\.\.20, got 21"),
        (-1, "hubs", "integer in 0..20"),
    ],
)
def test_bad_placements_are_one_line_config_errors(
    count: int, placement: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        place_attackers(nx.cycle_graph(20), count, placement)
    assert "\n" not in str(info.value)


def test_view_stats_count_views_at_one_third_or_more_byzantine() -> None:
    ring = nx.cycle_graph(10)
    # 1 and 9 see {self, 0, other}: 1 of 3 is exactly one third, which counts
    assert byzantine_view_stats(ring, {0}) == {
        "honest_views": 9, "views_ge_third_byzantine": 2, "max_byzantine_fraction": 1 / 3,
    }
    star = nx.star_graph(6)
    assert byzantine_view_stats(star, {0}) == {
        "honest_views": 6, "views_ge_third_byzantine": 6, "max_byzantine_fraction": 0.5,
    }
    hub_view = byzantine_view_stats(star, {1, 2})  # the hub sees 2 of 7: under a third
    assert hub_view["views_ge_third_byzantine"] == 0
    assert hub_view["max_byzantine_fraction"] == pytest.approx(2 / 7)
    assert byzantine_view_stats(nx.complete_graph(3), {0, 1, 2})["honest_views"] == 0
    with pytest.raises(ConfigError, match=r"\[99\] are not in the graph"):
        byzantine_view_stats(ring, {99})


def test_hubs_reach_more_honest_views_than_a_random_placement_on_a_ba_mesh() -> None:
    graph = build_topology("ba:2", 100, seed=1)
    hubs = byzantine_view_stats(graph, place_attackers(graph, 10, "hubs"))
    rand = byzantine_view_stats(graph, place_attackers(graph, 10, "random", seed=1))
    assert hubs["views_ge_third_byzantine"] > rand["views_ge_third_byzantine"]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 30),
    p=st.floats(0.0, 1.0),
    share=st.floats(0.0, 1.0),
    kind=st.sampled_from(["random", "hubs"]),
    seed=st.integers(0, 2**16),
)
def test_placement_and_view_stats_agree_with_a_brute_force_count(
    n: int, p: float, share: float, kind: str, seed: int
) -> None:
    graph = nx.gnp_random_graph(n, p, seed=seed)
    count = int(share * n)
    byz = place_attackers(graph, count, kind, seed=seed)
    assert byz == sorted(set(byz)) and len(byz) == count and set(byz) <= set(graph)
    assert place_attackers(graph, count, kind, seed=seed) == byz
    stats = byzantine_view_stats(graph, byz)
    fractions = [
        sum(q in byz for q in graph.neighbors(i)) / (graph.degree(i) + 1)
        for i in graph if i not in byz
    ]
    assert stats["honest_views"] == n - count
    assert stats["views_ge_third_byzantine"] == sum(f >= 1 / 3 - 1e-12 for f in fractions)
    assert stats["max_byzantine_fraction"] == pytest.approx(max(fractions, default=0.0))
    assert 0.0 <= stats["max_byzantine_fraction"] < 1.0
