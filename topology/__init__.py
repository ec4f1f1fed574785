"""Networkx topologies, mixing weights and failure/churn schedules. Pure, seeded.

No I/O, no wall clock: every random choice comes from the ``seed`` argument, so a
scenario gives the same graphs and timelines on every machine.

Topologies (``generators``)::

    G = build_topology("regular:8", n=100, seed=1)   # nodes 0..99, connected
    G = build_topology("rgg:0.2:maxdeg=7", 99, seed=3)
    spec = parse_topology("ws:4:0.1")                # ConfigError lists valid forms
    G = graph_from_edges([(0, 1), (1, 2)], n=3)      # file: graphs, loaded by scripts

Mixing weights (``mixing``; scipy.sparse CSR, float64, rows in ``sorted(G)`` order)::

    W = metropolis_hastings_weights(G)   # w_ij = 1/(1+max(d_i,d_j)), symmetric, doubly stochastic
    W = uniform_weights(G)               # w_ij = 1/(d_i+1) on N(i) ∪ {i}, row-stochastic
    gap = spectral_gap(W)                # 1 - second largest eigenvalue modulus

Timelines (``schedules``; frozen events with a virtual time ``at``)::

    events = [remove_most_central(G, 5, by="betweenness", at=30.0), Heal(60.0)]
    events += crash_every(range(100), k=5, every=60.0, until_fraction=0.8, seed=7)
    survivors = apply_events(G, events, until=120.0)
    connectivity_report(survivors)       # components, largest fraction, degree, diameter

Who an event hits (``selectors``: role x centrality, ties to the lower peer id)::

    roles = PeerRoles(relays=frozenset(relays), byzantine=frozenset(byzantine))
    select_peers(G, 10, order="betweenness", role="relay", roles=roles)
    select_peers(G, 5, order="closeness", direction="least", role="holder", roles=roles)

Attackers (``placement``)::

    byz = place_attackers(G, 5, "hubs", seed=1)   # random | hubs | list:3,7,12
    byzantine_view_stats(G, byz)                  # honest views with >= 1/3 Byzantine
"""

from rumor.topology.generators import (
    MAX_ATTEMPTS,
    RGG_ATTEMPTS,
    TOPOLOGY_FORMS,
    TopologySpec,
    build_topology,
    derived_seed,
    graph_from_edges,
    parse_topology,
)
from rumor.topology.mixing import (
    MIXING_RULES,
    metropolis_hastings_weights,
    mixing_matrix,
    spectral_gap,
    uniform_weights,
)
from rumor.topology.placement import (
    PLACEMENTS,
    ByzantineViewStats,
    byzantine_view_stats,
    parse_placement,
    place_attackers,
)
from rumor.topology.schedules import (
    AddPeers,
    ConnectivityReport,
    Heal,
    Partition,
    Rejoin,
    RemoveLinks,
    RemovePeers,
    TimelineEvent,
    apply_events,
    connectivity_report,
    crash_every,
    poisson_churn,
    remove_links,
    remove_most_central,
    remove_random,
)
from rumor.topology.selectors import (
    CENTRALITIES,
    DIRECTIONS,
    ORDERS,
    ROLES,
    PeerRoles,
    centrality_scores,
    select_peers,
)

__all__ = [
    "CENTRALITIES",
    "DIRECTIONS",
    "MAX_ATTEMPTS",
    "MIXING_RULES",
    "ORDERS",
    "PLACEMENTS",
    "RGG_ATTEMPTS",
    "ROLES",
    "TOPOLOGY_FORMS",
    "AddPeers",
    "ByzantineViewStats",
    "ConnectivityReport",
    "Heal",
    "Partition",
    "PeerRoles",
    "Rejoin",
    "RemoveLinks",
    "RemovePeers",
    "TimelineEvent",
    "TopologySpec",
    "apply_events",
    "build_topology",
    "byzantine_view_stats",
    "centrality_scores",
    "connectivity_report",
    "crash_every",
    "derived_seed",
    "graph_from_edges",
    "metropolis_hastings_weights",
    "mixing_matrix",
    "parse_placement",
    "parse_topology",
    "place_attackers",
    "poisson_churn",
    "remove_links",
    "remove_most_central",
    "remove_random",
    "select_peers",
    "spectral_gap",
    "uniform_weights",
]
