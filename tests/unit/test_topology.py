"""rumor.topology: generators, mixing weights, failure/churn schedules."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumor.protocols.errors import ConfigError
from rumor.topology import (
    TOPOLOGY_FORMS,
    AddPeers,
    Heal,
    Partition,
    Rejoin,
    RemoveLinks,
    RemovePeers,
    TimelineEvent,
    TopologySpec,
    apply_events,
    build_topology,
    connectivity_report,
    crash_every,
    graph_from_edges,
    metropolis_hastings_weights,
    mixing_matrix,
    parse_topology,
    poisson_churn,
    remove_links,
    remove_most_central,
    remove_random,
    spectral_gap,
    uniform_weights,
)

RANDOM_SPECS = [
    "regular:3",
    "regular:8",
    "regular:2",
    "er:0.1",
    "ba:2",
    "rgg:0.2",
    "rgg:0.2:maxdeg=7",
    "ws:4:0.2",
]
ALL_SPECS = ["ring", "complete", "star", *RANDOM_SPECS]


def edges(graph: nx.Graph) -> list[tuple[int, int]]:
    return sorted((min(u, v), max(u, v)) for u, v in graph.edges())


def degrees(graph: nx.Graph) -> list[int]:
    return [int(graph.degree(node)) for node in sorted(graph.nodes)]


# ----------------------------------------------------------------------- generators


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_every_spec_gives_n_connected_nodes_labelled_0_to_n_minus_1(spec: str) -> None:
    graph = build_topology(spec, 60, seed=3)
    assert list(graph.nodes) == list(range(60))
    assert nx.is_connected(graph)
    assert nx.number_of_selfloops(graph) == 0
    assert graph.graph["spec"] == str(parse_topology(spec))
    assert graph.graph["seed"] == 3


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_same_seed_gives_the_same_edges(spec: str) -> None:
    assert edges(build_topology(spec, 50, seed=11)) == edges(build_topology(spec, 50, seed=11))


@pytest.mark.parametrize("spec", RANDOM_SPECS)
def test_different_seeds_give_different_edges(spec: str) -> None:
    assert edges(build_topology(spec, 50, seed=1)) != edges(build_topology(spec, 50, seed=2))


def test_degrees_are_as_promised() -> None:
    n = 40
    assert degrees(build_topology("ring", n, 0)) == [2] * n
    assert degrees(build_topology("complete", n, 0)) == [n - 1] * n
    star = degrees(build_topology("star", n, 0))
    assert star[0] == n - 1 and star[1:] == [1] * (n - 1)
    for k in (2, 3, 5, 8):
        assert degrees(build_topology(f"regular:{k}", 50, seed=k)) == [k] * 50
    ba = build_topology("ba:3", 100, seed=4)
    assert min(degrees(ba)) >= 3
    assert ba.number_of_edges() == 3 * (100 - 3)
    ws = build_topology("ws:6:0.0", 30, seed=0)
    assert degrees(ws) == [6] * 30
    ws_rewired = build_topology("ws:6:0.3", 30, seed=0)
    assert ws_rewired.number_of_edges() == 30 * 3


def test_regular_2_is_one_hamiltonian_cycle() -> None:
    graph = build_topology("regular:2", 500, seed=9)
    assert degrees(graph) == [2] * 500 and nx.is_connected(graph)


def test_random_models_match_networkx_for_the_first_draw() -> None:
    assert edges(build_topology("ba:3", 80, 7)) == edges(nx.barabasi_albert_graph(80, 3, seed=7))
    ours = build_topology("regular:4", 80, 5)
    assert ours.graph["attempt"] == 0
    assert edges(ours) == edges(nx.random_regular_graph(4, 80, seed=5))


def test_er_is_resampled_until_connected() -> None:
    n, p = 60, 0.06  # near ln(n)/n ~ 0.068: many draws are disconnected
    attempts = set()
    for seed in range(15):
        graph = build_topology(f"er:{p}", n, seed)
        assert nx.is_connected(graph)
        attempts.add(graph.graph["attempt"])
    assert attempts != {0}


def test_rgg_degree_cap_holds_and_keeps_the_shortest_links() -> None:
    plain = build_topology("rgg:0.25", 99, seed=5)
    capped = build_topology("rgg:0.25:maxdeg=7", 99, seed=5)
    assert max(degrees(plain)) > 7
    assert max(degrees(capped)) <= 7
    assert nx.is_connected(capped)
    if capped.graph["attempt"] == plain.graph["attempt"]:
        assert set(edges(capped)) <= set(edges(plain))
    pos = {node: np.array(capped.nodes[node]["pos"]) for node in capped.nodes}
    assert all(0.0 <= c <= 1.0 for p in pos.values() for c in p)


def test_rgg_too_sparse_is_bridged_into_one_component_under_the_cap() -> None:
    graph = build_topology("rgg:0.03:maxdeg=4", 120, seed=2)
    assert nx.is_connected(graph)
    assert graph.graph["bridges"] > 0
    assert max(degrees(graph)) <= 4
    again = build_topology("rgg:0.03:maxdeg=4", 120, seed=2)
    assert edges(again) == edges(graph)


def test_rgg_without_cap_links_exactly_the_pairs_within_the_radius() -> None:
    graph = build_topology("rgg:0.3", 40, seed=1)
    assert graph.graph["bridges"] == 0
    pos = np.array([graph.nodes[i]["pos"] for i in range(40)])
    dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=2)
    expected = {(i, j) for i in range(40) for j in range(i + 1, 40) if dist[i, j] <= 0.3}
    assert set(edges(graph)) == expected


def test_small_n_edge_cases() -> None:
    assert edges(build_topology("ring", 1, 0)) == []
    assert edges(build_topology("ring", 2, 0)) == [(0, 1)]
    assert edges(build_topology("star", 1, 0)) == []
    assert edges(build_topology("regular:1", 2, 0)) == [(0, 1)]
    assert build_topology("er:0.5", 1, 0).number_of_nodes() == 1


def test_spec_round_trips_through_its_canonical_string() -> None:
    for spec in ALL_SPECS:
        parsed = parse_topology(spec)
        assert parse_topology(str(parsed)) == parsed
    assert parse_topology(" RGG : 0.5 : MaxDeg=3 ") == TopologySpec("rgg", radius=0.5, max_degree=3)
    assert build_topology(TopologySpec("regular", k=3), 10, 0).graph["spec"] == "regular:3"


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("", "unknown kind"),
        ("torus", "unknown kind 'torus'"),
        ("ring:4", "ring takes the form ring"),
        ("regular", "regular:K"),
        ("regular:x", "K must be an integer"),
        ("regular:0", "K must be >= 1"),
        ("regular:2.5", "K must be an integer"),
        ("er:0", "P must be in (0, 1]"),
        ("er:1.5", "P must be in (0, 1]"),
        ("er:nan", "P must be finite"),
        ("ba:0", "M must be >= 1"),
        ("ws:3:0.1", "K must be even"),
        ("ws:4", "ws:K:P"),
        ("ws:4:-0.1", "P must be in [0, 1]"),
        ("rgg:-1", "R must be in (0"),
        ("rgg:0.1:deg=3", "maxdeg=D"),
        ("rgg:0.1:maxdeg=0", "maxdeg must be >= 1"),
        ("rgg:0.1:maxdeg=7:x", "rgg:R or rgg:R:maxdeg=D"),
    ],
)
def test_bad_specs_raise_config_error_that_says_what_and_lists_forms(spec: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_topology(spec)
    message = str(caught.value)
    assert says in message
    assert TOPOLOGY_FORMS in message
    assert repr(spec) in message


def test_file_specs_point_to_graph_from_edges() -> None:
    with pytest.raises(ConfigError, match="graph_from_edges"):
        build_topology("file:/tmp/graph.edgelist", 10, 0)


@pytest.mark.parametrize(
    ("spec", "n", "says"),
    [
        ("regular:3", 5, "n*K even"),
        ("regular:5", 5, "K < n"),
        ("regular:1", 4, "connected only for n=2"),
        ("ba:4", 4, "M < n"),
        ("ws:6:0.1", 6, "K < n"),
        ("er:0.001", 80, "connectivity threshold"),
    ],
)
def test_parameters_impossible_for_n_raise_config_error(spec: str, n: int, says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("*", r"\*")):
        build_topology(spec, n, 0)


@pytest.mark.parametrize(("n", "seed"), [(0, 0), (-3, 0), (True, 0), (10, -1), (2.5, 0)])
def test_bad_n_or_seed_raise_config_error(n: object, seed: object) -> None:
    with pytest.raises(ConfigError):
        build_topology("ring", n, seed)  # type: ignore[arg-type]


def test_graph_from_edges_validates_and_merges_duplicates() -> None:
    graph = graph_from_edges([(0, 1), (1, 0), (2, 3)], 5)
    assert list(graph.nodes) == [0, 1, 2, 3, 4]
    assert edges(graph) == [(0, 1), (2, 3)]
    with pytest.raises(ConfigError, match=r"outside 0\.\.4"):
        graph_from_edges([(0, 5)], 5)
    with pytest.raises(ConfigError, match="self loops"):
        graph_from_edges([(2, 2)], 5)
    with pytest.raises(ConfigError, match="pair"):
        graph_from_edges([(1, 2, 3)], 5)  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="integers"):
        graph_from_edges([(0, "1")], 5)  # type: ignore[list-item]


# --------------------------------------------------------------------------- mixing


def check_row_stochastic(weights: np.ndarray) -> None:
    assert (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("spec", ["ring", "star", "ba:2", "rgg:0.3:maxdeg=5", "er:0.2"])
def test_mixing_matrices_are_stochastic_and_mh_is_symmetric(spec: str) -> None:
    graph = build_topology(spec, 30, seed=1)
    uniform = uniform_weights(graph).toarray()
    mh = metropolis_hastings_weights(graph).toarray()
    check_row_stochastic(uniform)
    check_row_stochastic(mh)
    np.testing.assert_allclose(mh, mh.T, atol=0)
    np.testing.assert_allclose(mh.sum(axis=0), 1.0, atol=1e-12)
    adjacency = nx.to_numpy_array(graph, nodelist=range(30)) > 0
    assert ((uniform > 0) == (adjacency | np.eye(30, dtype=bool))).all()


def test_mixing_formulas_on_a_star() -> None:
    graph = build_topology("star", 5, 0)  # hub degree 4, leaves degree 1
    uniform = uniform_weights(graph).toarray()
    assert uniform[0].tolist() == [0.2] * 5
    assert uniform[1].tolist() == [0.5, 0.5, 0.0, 0.0, 0.0]
    mh = metropolis_hastings_weights(graph).toarray()
    assert mh[0, 1] == pytest.approx(1 / 5)
    assert mh[0, 0] == pytest.approx(1 - 4 / 5)
    assert mh[1, 1] == pytest.approx(4 / 5)


def test_mixing_follows_the_nodelist_for_survivor_graphs() -> None:
    graph = nx.path_graph([10, 20, 30])
    weights = uniform_weights(graph, nodelist=[30, 20, 10]).toarray()
    assert weights[0].tolist() == [0.5, 0.5, 0.0]
    assert mixing_matrix(graph, "metropolis-hastings").shape == (3, 3)
    with pytest.raises(ConfigError, match="valid rules"):
        mixing_matrix(graph, "push-sum")
    with pytest.raises(ConfigError, match="exactly once"):
        uniform_weights(graph, nodelist=[10, 20])
    with pytest.raises(ConfigError, match="undirected"):
        uniform_weights(nx.DiGraph([(0, 1)]))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=25),
    p=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_property_mixing_on_any_graph(n: int, p: float, seed: int) -> None:
    graph = nx.gnp_random_graph(n, p, seed=seed)
    mh = metropolis_hastings_weights(graph).toarray()
    uniform = uniform_weights(graph).toarray()
    check_row_stochastic(mh)
    check_row_stochastic(uniform)
    np.testing.assert_array_equal(mh, mh.T)
    assert (np.diag(mh) > 0).all()
    gap = spectral_gap(mh)
    assert 0.0 <= gap <= 1.0
    if n > 1 and not nx.is_connected(graph):
        assert gap == pytest.approx(0.0, abs=1e-9)


def test_spectral_gap_known_values_and_sparse_path() -> None:
    assert spectral_gap(np.full((4, 4), 0.25)) == pytest.approx(1.0)
    assert spectral_gap(np.eye(3)) == pytest.approx(0.0)
    assert spectral_gap(np.ones((1, 1))) == 1.0
    ring = uniform_weights(build_topology("ring", 12, 0))
    # circulant (1/3)(1, 1, 0..0, 1): eigenvalues (1 + 2 cos(2 pi k / n)) / 3
    assert spectral_gap(ring) == pytest.approx(1 - (1 + 2 * math.cos(2 * math.pi / 12)) / 3)
    regular = metropolis_hastings_weights(build_topology("regular:8", 150, 1))
    assert spectral_gap(regular, dense_limit=10) == pytest.approx(spectral_gap(regular), abs=1e-8)
    ba = uniform_weights(build_topology("ba:2", 150, 1))
    assert spectral_gap(ba, dense_limit=10) == pytest.approx(spectral_gap(ba), abs=1e-8)
    ba_dense = np.sort(np.abs(np.linalg.eigvals(ba.toarray())))[-2]
    assert spectral_gap(ba) == pytest.approx(1 - ba_dense, abs=1e-9)
    ring150 = metropolis_hastings_weights(build_topology("ring", 150, 0))
    assert spectral_gap(regular) > spectral_gap(ring150) > 0
    cycle = np.roll(np.eye(5), 1, axis=1)  # directed 5-cycle: eigenvalues on the unit circle
    assert spectral_gap(cycle) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ConfigError, match="square"):
        spectral_gap(np.ones((2, 3)))


def test_spectral_gap_of_a_slow_mixer_uses_shift_invert(monkeypatch: pytest.MonkeyPatch) -> None:
    import rumor.topology.mixing as mixing

    monkeypatch.setattr(mixing, "_LM_MAXITER", 1)  # force the slow-mixer branch
    n = 400
    ring = metropolis_hastings_weights(build_topology("ring", n, 0))
    exact = 1 - (1 + 2 * math.cos(2 * math.pi / n)) / 3
    assert spectral_gap(ring, dense_limit=10) == pytest.approx(exact, rel=1e-6)
    # K_{30,30}: eigenvalues (1 + {30, 0, -30}) / 31, so the bottom end decides: 29/31
    bipartite = metropolis_hastings_weights(nx.complete_bipartite_graph(30, 30))
    assert spectral_gap(bipartite, dense_limit=10) == pytest.approx(2 / 31, abs=1e-6)
    assert spectral_gap(bipartite) == pytest.approx(2 / 31, abs=1e-12)


# ------------------------------------------------------------------------ schedules


def test_remove_most_central_by_degree_takes_the_highest_degrees() -> None:
    graph = build_topology("ba:2", 100, seed=3)
    event = remove_most_central(graph, 5, by="degree", at=30.0)
    assert event.at == 30.0 and len(event.peers) == 5
    ranked = sorted(graph.nodes, key=lambda node: (-graph.degree(node), node))
    assert list(event.peers) == ranked[:5]
    threshold = min(graph.degree(p) for p in event.peers)
    others = [graph.degree(node) for node in graph.nodes if node not in event.peers]
    assert max(others) <= threshold


def test_remove_most_central_by_betweenness_removes_the_bridge() -> None:
    barbell = nx.barbell_graph(5, 1)  # two 5-cliques joined through node 5
    event = remove_most_central(barbell, 1, by="betweenness")
    assert event.peers == (5,)
    report = connectivity_report(apply_events(barbell, [event]))
    assert report["components"] == 2
    with pytest.raises(ConfigError, match="by must be"):
        remove_most_central(barbell, 1, by="closeness")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="k must be"):
        remove_most_central(barbell, 12)


def test_random_removals_are_deterministic_by_seed() -> None:
    graph = build_topology("regular:4", 50, 0)
    assert remove_random(graph, 10, seed=1) == remove_random(graph, 10, seed=1)
    assert remove_random(graph, 10, seed=1) != remove_random(graph, 10, seed=2)
    assert len(set(remove_random(graph, 50, seed=1).peers)) == 50
    links = remove_links(graph, 0.25, seed=4, at=5.0)
    assert links == remove_links(graph, 0.25, seed=4, at=5.0)
    assert links != remove_links(graph, 0.25, seed=5, at=5.0)
    assert len(links.edges) == 25 and set(links.edges) <= set(edges(graph))


def test_crash_every_follows_modest_and_stops_at_the_fraction() -> None:
    waves = crash_every(range(100), k=5, every=60.0, until_fraction=0.8, seed=7)
    assert [w.at for w in waves] == [60.0 * (i + 1) for i in range(16)]
    crashed = [p for w in waves for p in w.peers]
    assert len(crashed) == 80 == len(set(crashed))
    assert all(len(w.peers) == 5 for w in waves)
    assert waves == crash_every(range(100), k=5, every=60.0, until_fraction=0.8, seed=7)
    assert waves != crash_every(range(100), k=5, every=60.0, until_fraction=0.8, seed=8)
    survivors = apply_events(build_topology("complete", 100, 0), waves)
    assert survivors.number_of_nodes() == 20


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=60),
    k=st.integers(min_value=1, max_value=9),
    fraction=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_property_crash_every_never_passes_the_fraction(
    n: int, k: int, fraction: float, seed: int
) -> None:
    waves = crash_every(range(n), k=k, every=10.0, until_fraction=fraction, seed=seed, start=0.0)
    crashed = [p for w in waves for p in w.peers]
    assert len(crashed) == len(set(crashed)) == math.floor(fraction * n + 1e-9)
    assert all(0 < len(w.peers) <= k for w in waves)
    assert [w.at for w in waves] == [10.0 * i for i in range(len(waves))]


def test_poisson_churn_is_seeded_ordered_and_consistent() -> None:
    events = poisson_churn(50, rate_leave=0.01, rate_join=0.05, horizon=500.0, seed=3)
    assert events == poisson_churn(50, rate_leave=0.01, rate_join=0.05, horizon=500.0, seed=3)
    assert events != poisson_churn(50, rate_leave=0.01, rate_join=0.05, horizon=500.0, seed=4)
    times = [e.at for e in events]
    assert times == sorted(times) and all(0 < t < 500.0 for t in times)
    present = set(range(50))
    for event in events:
        (peer,) = event.peers
        if isinstance(event, RemovePeers):
            assert peer in present
            present.remove(peer)
        else:
            assert peer not in present
            present.add(peer)
        assert len(present) >= 1
    survivors = apply_events(build_topology("complete", 50, 0), events)
    assert set(survivors.nodes) == present
    assert poisson_churn(5, 0.0, 1.0, 100.0, seed=0) == []


def test_poisson_churn_long_run_fraction_matches_the_rates() -> None:
    events = poisson_churn(200, rate_leave=0.02, rate_join=0.06, horizon=2000.0, seed=1)
    half = apply_events(build_topology("ring", 200, 0), events, until=1000.0)
    end = apply_events(build_topology("ring", 200, 0), events)
    expected = 0.06 / (0.06 + 0.02)
    for graph in (half, end):
        assert abs(graph.number_of_nodes() / 200 - expected) < 0.08


def test_apply_events_partition_heal_rejoin_and_links() -> None:
    graph = build_topology("ring", 6, 0)  # 0-1-2-3-4-5-0
    timeline: list[TimelineEvent] = [
        RemoveLinks(1.0, [(1, 0)]),  # type: ignore[arg-type]
        Partition(2.0, ((0, 1, 2),)),  # 3, 4, 5 form the other group
        RemovePeers(3.0, (4,)),
        Heal(4.0),
        Rejoin(5.0, (4,)),
        AddPeers(6.0, (6,), edges=((6, 0), (6, 3))),
    ]
    assert edges(graph) == edges(apply_events(graph, timeline, until=0.5))
    at_2 = apply_events(graph, timeline, until=2.0)
    assert edges(at_2) == [(1, 2), (3, 4), (4, 5)]
    at_3 = apply_events(graph, timeline, until=3.0)
    assert 4 not in at_3 and edges(at_3) == [(1, 2)]
    at_4 = apply_events(graph, timeline, until=4.0)
    assert edges(at_4) == [(0, 5), (1, 2), (2, 3)]
    at_5 = apply_events(graph, timeline, until=5.0)
    assert edges(at_5) == [(0, 5), (1, 2), (2, 3), (3, 4), (4, 5)]
    final = apply_events(graph, list(reversed(timeline)))
    assert edges(final) == [(0, 5), (0, 6), (1, 2), (2, 3), (3, 4), (3, 6), (4, 5)]
    assert edges(graph) == [(0, 1), (0, 5), (1, 2), (2, 3), (3, 4), (4, 5)]  # untouched
    with pytest.raises(ConfigError, match="unknown peers"):
        apply_events(graph, [RemovePeers(0.0, (99,))])


def test_events_validate_their_fields() -> None:
    with pytest.raises(ConfigError, match="time"):
        RemovePeers(-1.0, (1,))
    with pytest.raises(ConfigError, match="time"):
        Heal(math.inf)
    with pytest.raises(ConfigError, match="twice"):
        RemovePeers(0.0, (1, 1))
    with pytest.raises(ConfigError, match="overlap"):
        Partition(0.0, ((1, 2), (2, 3)))
    with pytest.raises(ConfigError, match="self loop"):
        RemoveLinks(0.0, ((3, 3),))
    assert RemoveLinks(0.0, ((3, 1),)).edges == ((1, 3),)
    assert Rejoin is AddPeers


def test_connectivity_report_on_removal_of_hubs_vs_random() -> None:
    graph = build_topology("ba:1", 200, seed=2)  # a tree: hubs hold it together
    report = connectivity_report(graph)
    assert report["components"] == 1 and report["largest_component_fraction"] == 1.0
    assert report["average_degree"] == pytest.approx(2 * 199 / 200)
    assert report["diameter"] == nx.diameter(graph)
    hubs = connectivity_report(apply_events(graph, [remove_most_central(graph, 10)]))
    rand = connectivity_report(apply_events(graph, [remove_random(graph, 10, seed=0)]))
    assert hubs["largest_component_fraction"] < rand["largest_component_fraction"]
    assert hubs["components"] > rand["components"]
    assert connectivity_report(graph, diameter_limit=10)["diameter"] is None
    empty = connectivity_report(nx.Graph())
    assert empty["nodes"] == 0 and empty["components"] == 0 and empty["diameter"] is None
