"""Timeline selectors: role x centrality, in topology/ and in scenario files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumor.node.scenario import load_scenario
from rumor.node.simulation import relay_peers
from rumor.protocols.errors import ConfigError
from rumor.topology import (
    CENTRALITIES,
    AddPeers,
    PeerRoles,
    RemovePeers,
    apply_events,
    build_topology,
    centrality_scores,
    remove_most_central,
    remove_random,
    select_peers,
)

ROOT = Path(__file__).resolve().parents[2]


def barbell_with_relay_bridge() -> tuple[nx.Graph, PeerRoles]:
    """Cliques 0..4 and 5..9 joined by the path 4 - 10 - 6; relays 0, 1, 10; 2 Byzantine."""
    graph = nx.barbell_graph(5, 1)  # cliques 0..4 and 6..10, bridge 5: swap 5 and 10
    graph = nx.relabel_nodes(graph, {5: 10, 10: 5})
    return graph, PeerRoles(relays=frozenset({10, 0, 1}), byzantine=frozenset({2}))


# ------------------------------------------------------------------ select_peers


def test_most_central_relay_is_the_bridge_and_least_central_relays_follow() -> None:
    graph, roles = barbell_with_relay_bridge()
    assert select_peers(graph, 1, order="betweenness", role="relay", roles=roles) == (10,)
    # 0 and 1 have the same (zero) betweenness: the lower index goes first
    least = select_peers(graph, 3, order="betweenness", direction="least", role="relay",
                         roles=roles)
    assert least == (0, 1, 10)


def test_most_central_holders_skip_relays() -> None:
    graph, roles = barbell_with_relay_bridge()
    picked = select_peers(graph, 2, order="betweenness", role="holder", roles=roles)
    assert picked == (4, 6)  # the clique ends of the bridge; 10 is a relay
    assert select_peers(graph, 2, order="degree", role="holder", roles=roles) == (4, 6)


def test_ties_go_to_the_lower_peer_index_in_both_directions() -> None:
    ring = nx.cycle_graph(12)
    for order in CENTRALITIES:
        assert select_peers(ring, 4, order=order) == (0, 1, 2, 3)
        assert select_peers(ring, 4, order=order, direction="least") == (0, 1, 2, 3)


def test_roles_combine_as_an_intersection() -> None:
    graph, roles = barbell_with_relay_bridge()
    assert select_peers(graph, 1, order="degree", role=("holder", "byzantine"),
                        roles=roles) == (2,)
    honest_relays = select_peers(graph, 3, order="degree", role=["relay", "honest"],
                                 roles=roles)
    assert sorted(honest_relays) == [0, 1, 10]
    with pytest.raises(ConfigError, match=r"0\.\.0 \(the peers with role relay\+byzantine\)"):
        select_peers(graph, 2, role=("relay", "byzantine"), roles=roles)


def test_random_selection_is_remove_random_restricted_to_the_role() -> None:
    graph = build_topology("ba:2", 40, seed=1)
    assert select_peers(graph, 7, seed=5) == remove_random(graph, 7, seed=5).peers
    relays = frozenset(relay_peers(40, 0.5, 1))
    roles = PeerRoles(relays=relays)
    picked = select_peers(graph, 10, role="relay", roles=roles, seed=3)
    assert set(picked) <= relays and len(set(picked)) == 10
    assert picked == select_peers(graph, 10, role="relay", roles=roles, seed=3)
    assert picked != select_peers(graph, 10, role="relay", roles=roles, seed=4)


def test_most_central_matches_remove_most_central() -> None:
    graph = build_topology("ba:2", 60, seed=1)
    for by in ("degree", "betweenness"):
        assert select_peers(graph, 10, order=by) == remove_most_central(graph, 10, by=by).peers


def test_every_centrality_scores_every_node_of_a_disconnected_graph() -> None:
    graph = nx.disjoint_union(nx.path_graph(4), nx.empty_graph(2))
    for by in CENTRALITIES:
        scores = centrality_scores(graph, by)
        assert sorted(scores) == list(range(6)), by
    assert centrality_scores(nx.Graph(), "pagerank") == {}


def test_sampled_betweenness_is_seeded() -> None:
    graph = build_topology("ba:2", 80, seed=2)
    a = centrality_scores(graph, "betweenness", samples=10, seed=1)
    assert a == centrality_scores(graph, "betweenness", samples=10, seed=1)
    assert a != centrality_scores(graph, "betweenness", samples=10, seed=2)
    exact = centrality_scores(graph, "betweenness")
    assert centrality_scores(graph, "betweenness", samples=500) == exact


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": "eigen"}, "order must be one of random, degree"),
        ({"direction": "up"}, "direction must be 'most' or 'least'"),
        ({"role": "sybil"}, "role must be one of any, relay"),
        ({"count": 11}, r"count must be an integer in 0\.\.10"),
        ({"count": -1}, "count must be"),
        ({"count": True}, "count must be"),
        ({"order": "betweenness", "samples": 0}, "samples must be an integer >= 1"),
    ],
)
def test_bad_selector_arguments_are_one_line_config_errors(
    kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"count": 2, **kwargs}
    with pytest.raises(ConfigError, match=message) as info:
        select_peers(nx.cycle_graph(10), **args)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


@st.composite
def graphs_and_roles(draw: st.DrawFn) -> tuple[nx.Graph, PeerRoles, int]:
    n = draw(st.integers(1, 24))
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
                          max_size=3 * n))
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from((u, v) for u, v in edges if u != v)
    relays = draw(st.frozensets(st.integers(0, n - 1)))
    byzantine = draw(st.frozensets(st.integers(0, n - 1)))
    return graph, PeerRoles(relays=relays, byzantine=byzantine), draw(st.integers(0, 2**16))


@settings(max_examples=60, deadline=None)
@given(
    world=graphs_and_roles(),
    order=st.sampled_from(["random", *CENTRALITIES]),
    direction=st.sampled_from(["most", "least"]),
    role=st.sampled_from(["any", "relay", "holder", "honest", "byzantine"]),
    share=st.floats(0.0, 1.0),
)
def test_selection_is_a_deterministic_ranked_prefix_of_the_eligible_peers(
    world: tuple[nx.Graph, PeerRoles, int], order: str, direction: str, role: str,
    share: float,
) -> None:
    graph, roles, seed = world
    eligible = roles.eligible(graph, role)
    count = int(share * len(eligible))
    picked = select_peers(graph, count, order=order, direction=direction, role=role,
                          roles=roles, seed=seed)
    assert len(picked) == count and len(set(picked)) == count
    assert set(picked) <= set(eligible)
    assert picked == select_peers(graph, count, order=order, direction=direction, role=role,
                                  roles=roles, seed=seed)
    if order == "random":
        return
    score = centrality_scores(graph, order)
    sign = 1.0 if direction == "most" else -1.0
    keys = [(sign * score[p], -p) for p in picked]
    assert keys == sorted(keys, reverse=True)  # ranked, ties to the lower index
    rest = [p for p in eligible if p not in picked]
    if picked and rest:  # nothing left out ranks ahead of what was picked
        assert max((sign * score[p], -p) for p in rest) < keys[-1]


# -------------------------------------------------------------- scenario files


def scenario(tmp_path: Path, timeline: str, *, head: str = "") -> Path:
    path = tmp_path / "s.toml"
    path.write_text(
        '[network]\npeers = 40\ntopology = "ba:2"\nseed = 1\n'
        "[data]\nrelay_fraction = 0.5\n" + head + timeline
    )
    return path


def timeline_of(path: Path) -> list[RemovePeers]:
    return [e for e in load_scenario(path).config.timeline if isinstance(e, RemovePeers)]


def test_scenario_removes_the_most_central_relays(tmp_path: Path) -> None:
    path = scenario(tmp_path, '[[timeline]]\naction = "remove_peers"\nat_round = 3\n'
                    'count = 5\nselect = "most-central"\ncentrality = "betweenness"\n'
                    'role = "relay"\n')
    [event] = timeline_of(path)
    graph = build_topology("ba:2", 40, 1)
    relays = relay_peers(40, 0.5, 1)
    expected = select_peers(graph, 5, order="betweenness", role="relay",
                            roles=PeerRoles(relays=frozenset(relays)))
    assert event.peers == expected and set(event.peers) <= relays
    assert event.at == pytest.approx(3 * 1.05)


def test_legacy_select_keys_pick_the_same_peers_as_before(tmp_path: Path) -> None:
    graph = build_topology("ba:2", 40, 1)
    relays = sorted(relay_peers(40, 0.5, 1))
    seed = 1 + 1000  # the default per-event seed of timeline[0]
    cases = {
        'select = "most_central"\nby = "betweenness"\ncount = 6\n':
            remove_most_central(graph, 6, by="betweenness").peers,
        'select = "random"\ncount = 6\n': remove_random(graph, 6, seed).peers,
        'select = "relays"\nfraction = 0.25\n':
            remove_random(graph.subgraph(relays), 5, seed).peers,
        'select = "list"\npeers = [3, 1]\n': (3, 1),
    }
    for keys, peers in cases.items():
        path = scenario(tmp_path, f'[[timeline]]\naction = "remove_peers"\nat = 2.0\n{keys}')
        assert timeline_of(path)[0].peers == peers, keys
    same = scenario(tmp_path, '[[timeline]]\naction = "remove_peers"\nat = 2.0\n'
                    'select = "random"\nrole = "relay"\nfraction = 0.25\n')
    assert timeline_of(same)[0].peers == cases['select = "relays"\nfraction = 0.25\n']


def test_centrality_is_ranked_on_the_network_as_it_is_at_the_event(tmp_path: Path) -> None:
    # listed out of time order on purpose: items are built in time order
    path = scenario(tmp_path, '[[timeline]]\naction = "remove_peers"\nat = 9.0\ncount = 3\n'
                    'select = "most-central"\n'
                    '[[timeline]]\naction = "remove_peers"\nat = 4.0\ncount = 3\n'
                    'select = "most-central"\n')
    first, second = timeline_of(path)
    graph = build_topology("ba:2", 40, 1)
    assert first.peers == select_peers(graph, 3, order="degree")
    after = apply_events(graph, [first])
    assert second.peers == select_peers(after, 3, order="degree")
    assert not set(first.peers) & set(second.peers)


def test_least_central_byzantine_peers_use_the_simulators_placement(tmp_path: Path) -> None:
    head = '[learning]\nattack = "sign-flip"\nbyzantine = 4\n'
    path = scenario(tmp_path, '[[timeline]]\naction = "remove_peers"\nat = 1.0\ncount = 4\n'
                    'select = "least-central"\nrole = "byzantine"\n', head=head)
    [event] = timeline_of(path)
    byzantine = {int(x) for x in np.random.default_rng(1 + 31).choice(40, 4, replace=False)}
    assert set(event.peers) == byzantine


def test_crash_every_can_crash_the_most_central_holders_first(tmp_path: Path) -> None:
    path = scenario(tmp_path, '[[timeline]]\naction = "crash_every"\ncount = 3\nevery = 5.0\n'
                    'until_fraction = 0.5\nselect = "most-central"\nrole = "holder"\n')
    waves = timeline_of(path)
    graph = build_topology("ba:2", 40, 1)
    holders = set(graph) - relay_peers(40, 0.5, 1)
    assert [w.at for w in waves] == [5.0, 10.0, 15.0, 20.0]  # 3+3+3+1 of 20 holders
    assert sum(len(w.peers) for w in waves) == 10 and len(waves[-1].peers) == 1
    gone: list[RemovePeers] = []
    for wave in waves:
        assert set(wave.peers) <= holders
        now = apply_events(graph, gone)
        assert wave.peers == select_peers(now, len(wave.peers), order="degree",
                                          role="holder",
                                          roles=PeerRoles(relays=frozenset(set(graph) - holders)))
        gone.append(wave)


def test_churn_and_rejoin_can_be_limited_to_a_role(tmp_path: Path) -> None:
    path = scenario(tmp_path, '[[timeline]]\naction = "churn"\nrate_leave = 0.2\n'
                    'rate_join = 0.5\nat = 1.0\nuntil_round = 20\nrole = "relay"\n'
                    '[[timeline]]\naction = "remove_peers"\nat = 3.0\ncount = 4\n'
                    '[[timeline]]\naction = "rejoin"\nat = 30.0\nrole = "holder"\n')
    relays = relay_peers(40, 0.5, 1)
    events = load_scenario(path).config.timeline
    churn = [e for e in events if e.at not in (3.0, 30.0)]
    assert churn and all(set(e.peers) <= relays for e in churn)  # type: ignore[union-attr]
    [rejoin] = [e for e in events if e.at == 30.0]
    [removed] = [e for e in events if e.at == 3.0]
    assert isinstance(rejoin, AddPeers)
    assert set(rejoin.peers) == set(removed.peers) - relays  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ('select = "most-central"\ncentrality = "fame"\ncount = 2\n',
         "centrality must be one of degree, betweenness"),
        ('select = "random"\nby = "degree"\ncount = 2\n', "needs select = most-central"),
        ('select = "best"\ncount = 2\n', "select must be one of random, most-central"),
        ('role = "wizard"\ncount = 2\n', "role must be one of any"),
        ('role = "relay"\ncount = 30\n', r"timeline\[0\]: .*0\.\.20"),
        ('select = "list"\npeers = [1, 99]\n', r"peers \[99\] outside 0\.\.39"),
        ('select = "list"\npeers = [1]\nrole = "relay"\n', "role does not apply"),
        ('count = 2\ncentrailty = "degree"\n', "unknown key 'centrailty'"),
        ('select = "most-central"\nsamples = 5\ncount = 2\n', "samples applies to"),
    ],
)
def test_bad_selector_keys_name_the_event_and_key(
    tmp_path: Path, keys: str, message: str
) -> None:
    path = scenario(tmp_path, f'[[timeline]]\naction = "remove_peers"\nat = 1.0\n{keys}')
    with pytest.raises(ConfigError, match=message) as info:
        load_scenario(path)
    assert "s.toml" in str(info.value) and "\n" not in str(info.value)


def test_the_disaster_relay_and_holder_files_differ_only_in_the_role() -> None:
    relay = load_scenario(ROOT / "experiments" / "disaster-central-relays.toml")
    holder = load_scenario(ROOT / "experiments" / "disaster-central-holders.toml")
    relays = relay_peers(relay.config.peers, relay.config.relay_fraction, relay.config.seed)
    [r_event], [h_event] = relay.config.timeline, holder.config.timeline
    assert isinstance(r_event, RemovePeers) and isinstance(h_event, RemovePeers)
    assert set(r_event.peers) <= relays and not set(h_event.peers) & relays
    assert len(r_event.peers) == len(h_event.peers) and r_event.at == h_event.at
    assert replace(relay.config, timeline=()) == replace(holder.config, timeline=())
