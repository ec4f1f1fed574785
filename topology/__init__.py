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

__all__ = [
    "MAX_ATTEMPTS",
    "MIXING_RULES",
    "RGG_ATTEMPTS",
    "TOPOLOGY_FORMS",
    "AddPeers",
    "ConnectivityReport",
    "Heal",
    "Partition",
    "Rejoin",
    "RemoveLinks",
    "RemovePeers",
    "TimelineEvent",
    "TopologySpec",
    "apply_events",
    "build_topology",
    "connectivity_report",
    "crash_every",
    "derived_seed",
    "graph_from_edges",
    "metropolis_hastings_weights",
    "mixing_matrix",
    "parse_topology",
    "poisson_churn",
    "remove_links",
    "remove_most_central",
    "remove_random",
    "spectral_gap",
    "uniform_weights",
]
