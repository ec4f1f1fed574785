"""Failure and churn schedules as pure data, and the graph that survives them.

A timeline is a list of frozen events, each with ``at``: the virtual time (in the
scenario's time unit, seconds in the shipped scenarios) when it takes effect. The
simulator and the real-mode runner read the same list; nothing here touches a clock.

Events::

    RemovePeers(at, peers)          peers crash / leave (their links go with them)
    AddPeers(at, peers, edges=())   peers (re)join; ``Rejoin`` is the same class.
                                    A peer of the base graph gets its base links back
                                    (to peers present then); ``edges`` adds links,
                                    e.g. for peers new to the graph.
    RemoveLinks(at, edges)          links fail (both endpoints stay up); permanent
    Partition(at, groups)           links between different groups are cut; peers in no
                                    group form one more group together. A new Partition
                                    replaces the previous one.
    Heal(at)                        the partition ends (removed peers and links stay gone)

``apply_events(G, events)`` replays a timeline on the base graph G and returns the
surviving graph. Generators (all seeded, deterministic):
``remove_most_central``, ``remove_random``, ``remove_links``, ``crash_every``
(MoDeST's churn: k crash every ``every`` until a fraction is gone) and
``poisson_churn`` (per-peer exponential session and downtime lengths).
``connectivity_report`` summarizes a graph's connectivity. Picking peers by role and
centrality (most or least central relays, holders, Byzantine or honest peers) is
``rumor.topology.selectors.select_peers``; ``remove_most_central`` and ``remove_random``
are its role-free special cases.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypedDict

import networkx as nx
import numpy as np

from rumor.protocols.errors import ConfigError

__all__ = [
    "AddPeers",
    "ConnectivityReport",
    "Heal",
    "Partition",
    "Rejoin",
    "RemoveLinks",
    "RemovePeers",
    "TimelineEvent",
    "apply_events",
    "connectivity_report",
    "crash_every",
    "poisson_churn",
    "remove_links",
    "remove_most_central",
    "remove_random",
]

Edge = tuple[int, int]


def _check_at(at: float) -> None:
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at) or at < 0:
        raise ConfigError(f"event time must be a finite number >= 0, got {at!r}")


def _peer_tuple(what: str, peers: Iterable[int]) -> tuple[int, ...]:
    out = tuple(int(p) for p in peers)
    if len(set(out)) != len(out):
        raise ConfigError(f"{what}: a peer is listed twice in {out}")
    return out


def _edge_tuple(what: str, edges: Iterable[tuple[int, int]]) -> tuple[Edge, ...]:
    out: list[Edge] = []
    for u, v in edges:
        if u == v:
            raise ConfigError(f"{what}: self loop ({u}, {v}) is not a link")
        out.append((min(int(u), int(v)), max(int(u), int(v))))
    return tuple(out)


@dataclass(frozen=True)
class RemovePeers:
    """At ``at``, ``peers`` leave or crash; removing an absent peer is a no-op."""

    at: float
    peers: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_at(self.at)
        object.__setattr__(self, "peers", _peer_tuple("RemovePeers", self.peers))


@dataclass(frozen=True)
class AddPeers:
    """At ``at``, ``peers`` join or rejoin.

    A peer of the base graph gets back its base links to peers present (unless the
    link was removed by RemoveLinks or is cut by a partition). ``edges`` are
    extra links (normalized to ``(min, max)``) that exist whenever both ends are
    present, from then on.
    """

    at: float
    peers: tuple[int, ...]
    edges: tuple[Edge, ...] = field(default=())

    def __post_init__(self) -> None:
        _check_at(self.at)
        object.__setattr__(self, "peers", _peer_tuple("AddPeers", self.peers))
        object.__setattr__(self, "edges", _edge_tuple("AddPeers", self.edges))


Rejoin = AddPeers
"""Alias: a rejoin is ``AddPeers`` of peers that were removed."""


@dataclass(frozen=True)
class RemoveLinks:
    """At ``at``, the links ``edges`` fail for good (normalized to ``(min, max)``)."""

    at: float
    edges: tuple[Edge, ...]

    def __post_init__(self) -> None:
        _check_at(self.at)
        object.__setattr__(self, "edges", _edge_tuple("RemoveLinks", self.edges))


@dataclass(frozen=True)
class Partition:
    """At ``at``, only links inside a group work; unlisted peers form one extra group.

    Groups must be disjoint. A later Partition replaces this one; ``Heal`` ends it.
    """

    at: float
    groups: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        _check_at(self.at)
        groups = tuple(_peer_tuple("Partition group", g) for g in self.groups)
        seen: set[int] = set()
        for group in groups:
            if seen & set(group):
                raise ConfigError(f"Partition groups overlap on peers {sorted(seen & set(group))}")
            seen |= set(group)
        object.__setattr__(self, "groups", groups)


@dataclass(frozen=True)
class Heal:
    """At ``at``, the current partition ends. Removed peers and links stay gone."""

    at: float

    def __post_init__(self) -> None:
        _check_at(self.at)


TimelineEvent = RemovePeers | AddPeers | RemoveLinks | Partition | Heal
"""Any event of a failure/churn timeline."""


# ------------------------------------------------------------------------- replay


def apply_events(
    graph: nx.Graph, events: Iterable[TimelineEvent], *, until: float | None = None
) -> nx.Graph:
    """The graph that survives ``events`` (those with ``at <= until``, all if None).

    Events are applied in order of ``at``; events at the same time keep their list
    order. ``graph`` is not modified; the result is a new graph whose nodes (with
    their attributes) are the peers present, in increasing id order, and whose
    edges are the base edges plus ``AddPeers.edges`` between present peers, minus
    removed links and links cut by the partition in force. ``AddPeers`` may bring
    peers new to the graph (and its ``edges`` restore links removed earlier); a
    ``RemovePeers`` naming a peer neither in the graph nor added before raises
    ConfigError.
    """
    timeline = sorted((e for e in events if until is None or e.at <= until), key=lambda e: e.at)
    present: set[int] = set(graph.nodes)
    known: set[int] = set(graph.nodes)
    extra_edges: set[Edge] = set()
    removed_links: set[Edge] = set()
    group_of: dict[int, int] | None = None
    for event in timeline:
        if isinstance(event, RemovePeers):
            unknown = [p for p in event.peers if p not in known]
            if unknown:
                raise ConfigError(f"RemovePeers at t={event.at}: unknown peers {unknown}")
            present.difference_update(event.peers)
        elif isinstance(event, AddPeers):
            present.update(event.peers)
            known.update(event.peers)
            extra_edges.update(event.edges)
            removed_links.difference_update(event.edges)
        elif isinstance(event, RemoveLinks):
            removed_links.update(event.edges)
        elif isinstance(event, Partition):
            group_of = {p: index for index, group in enumerate(event.groups) for p in group}
        elif isinstance(event, Heal):
            group_of = None
        else:  # pragma: no cover - the union is closed
            raise ConfigError(f"unknown timeline event {event!r}")

    out = nx.Graph()
    for node in sorted(present):
        out.add_node(node, **(dict(graph.nodes[node]) if node in graph else {}))
    base = ((min(u, v), max(u, v)) for u, v in graph.edges() if u != v)
    rest = len(group_of) if group_of is not None else 0
    for u, v in sorted(set(base) | extra_edges):
        if u not in present or v not in present or (u, v) in removed_links:
            continue
        if group_of is not None and group_of.get(u, rest) != group_of.get(v, rest):
            continue
        out.add_edge(u, v)
    return out


# ----------------------------------------------------------------------- generators


def _check_count(what: str, k: int, available: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= available:
        raise ConfigError(f"{what}: k must be an integer in 0..{available}, got {k!r}")


def remove_most_central(
    graph: nx.Graph,
    k: int,
    *,
    by: Literal["degree", "betweenness"] = "degree",
    at: float = 0.0,
    samples: int | None = None,
    seed: int = 0,
) -> RemovePeers:
    """Remove the k most central peers of ``graph`` at ``at`` (static ranking).

    ``by="degree"`` ranks by degree; ``by="betweenness"`` by betweenness centrality
    (exact, or estimated from ``samples`` seeded source nodes on large graphs).
    Ties go to the lower peer id. The peers are listed most central first.
    """
    nodes = sorted(graph.nodes)
    _check_count("remove_most_central", k, len(nodes))
    if by == "degree":
        score: dict[int, float] = {node: float(graph.degree(node)) for node in nodes}
    elif by == "betweenness":
        if samples is not None and samples < len(nodes):
            score = nx.betweenness_centrality(graph, k=samples, seed=seed)
        else:
            score = nx.betweenness_centrality(graph)
    else:
        raise ConfigError(f"remove_most_central: by must be 'degree' or 'betweenness', got {by!r}")
    ranked = sorted(nodes, key=lambda node: (-score[node], node))
    return RemovePeers(at, tuple(ranked[:k]))


def remove_random(graph: nx.Graph, k: int, seed: int, *, at: float = 0.0) -> RemovePeers:
    """Remove k peers drawn uniformly without replacement (numpy Generator(seed))."""
    nodes = sorted(graph.nodes)
    _check_count("remove_random", k, len(nodes))
    picks = np.random.default_rng(seed).choice(len(nodes), size=k, replace=False)
    return RemovePeers(at, tuple(nodes[int(i)] for i in picks))


def remove_links(graph: nx.Graph, fraction: float, seed: int, *, at: float = 0.0) -> RemoveLinks:
    """Remove ``floor(fraction * |E|)`` links drawn uniformly without replacement."""
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"remove_links: fraction must be in [0, 1], got {fraction!r}")
    edges = sorted((min(u, v), max(u, v)) for u, v in graph.edges() if u != v)
    count = math.floor(fraction * len(edges) + 1e-9)
    picks = np.random.default_rng(seed).choice(len(edges), size=count, replace=False)
    return RemoveLinks(at, tuple(edges[int(i)] for i in sorted(picks)))


def crash_every(
    peers: Iterable[int],
    k: int,
    every: float,
    until_fraction: float,
    seed: int,
    *,
    start: float | None = None,
) -> list[RemovePeers]:
    """MoDeST churn: k random survivors crash at ``start, start+every, ...``.

    ``start`` defaults to ``every`` (first crash one period in). It stops once
    ``floor(until_fraction * len(peers))`` peers are gone; the last wave is smaller
    if needed so that exactly that many crash. MoDeST: 100 peers, k=5, every=60,
    until_fraction=0.8 gives 16 waves at t=60..960 removing 80 peers.
    """
    pool = sorted(_peer_tuple("crash_every", peers))
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"crash_every: k must be an integer >= 1, got {k!r}")
    if not (math.isfinite(every) and every > 0):
        raise ConfigError(f"crash_every: every must be > 0, got {every!r}")
    if not 0.0 <= until_fraction <= 1.0:
        raise ConfigError(f"crash_every: until_fraction must be in [0, 1], got {until_fraction!r}")
    first = every if start is None else start
    target = math.floor(until_fraction * len(pool) + 1e-9)
    rng = np.random.default_rng(seed)
    events: list[RemovePeers] = []
    alive = list(pool)
    removed = 0
    while removed < target:
        size = min(k, target - removed)
        picks = sorted(
            (int(i) for i in rng.choice(len(alive), size=size, replace=False)), reverse=True
        )
        wave = tuple(sorted(alive.pop(i) for i in picks))
        events.append(RemovePeers(first + len(events) * every, wave))
        removed += size
    return events


def poisson_churn(
    n: int,
    rate_leave: float,
    rate_join: float,
    horizon: float,
    seed: int,
    *,
    min_alive: int = 1,
    max_events: int = 1_000_000,
) -> list[RemovePeers | AddPeers]:
    """Continuous-time churn of peers ``0..n-1``, all present at t=0.

    Each present peer leaves at rate ``rate_leave`` and each absent peer rejoins at
    rate ``rate_join`` (per peer per time unit: sessions last Exp(rate_leave),
    downtimes Exp(rate_join); the long-run present fraction is
    ``rate_join / (rate_join + rate_leave)``). Simulated exactly (Gillespie): the
    next event comes after Exp(total rate) and picks a uniform peer of the right
    kind. Leaves pause while only ``min_alive`` peers are present. Returns
    one-peer ``RemovePeers`` / ``AddPeers`` events with ``at < horizon``, in time
    order; ConfigError past ``max_events``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"poisson_churn: n must be an integer >= 1, got {n!r}")
    for name, value in (("rate_leave", rate_leave), ("rate_join", rate_join)):
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"poisson_churn: {name} must be a finite rate >= 0, got {value!r}")
    if not (math.isfinite(horizon) and horizon >= 0):
        raise ConfigError(f"poisson_churn: horizon must be finite and >= 0, got {horizon!r}")
    if not 0 <= min_alive <= n:
        raise ConfigError(f"poisson_churn: min_alive must be in 0..{n}, got {min_alive!r}")
    rng = np.random.default_rng(seed)
    present = list(range(n))
    absent: list[int] = []
    events: list[RemovePeers | AddPeers] = []
    now = 0.0
    while True:
        leave = rate_leave * len(present) if len(present) > min_alive else 0.0
        join = rate_join * len(absent)
        total = leave + join
        if total <= 0.0:
            break
        now += float(rng.exponential(1.0 / total))
        if now >= horizon:
            break
        if len(events) >= max_events:
            raise ConfigError(f"poisson_churn: more than {max_events} events; lower the rates")
        source, target = (present, absent) if rng.random() * total < leave else (absent, present)
        index = int(rng.integers(len(source)))
        peer = source[index]
        source[index] = source[-1]
        source.pop()
        target.append(peer)
        events.append(RemovePeers(now, (peer,)) if target is absent else AddPeers(now, (peer,)))
    return events


# -------------------------------------------------------------------------- metrics


class ConnectivityReport(TypedDict):
    """What ``connectivity_report`` returns."""

    nodes: int
    edges: int
    components: int
    largest_component_fraction: float
    isolated: int
    average_degree: float
    diameter: int | None


def connectivity_report(graph: nx.Graph, *, diameter_limit: int = 1000) -> ConnectivityReport:
    """Connectivity summary of ``graph``.

    ``components``: number of connected components; ``largest_component_fraction``:
    |largest component| / |V| (0.0 for an empty graph); ``isolated``: peers with no
    link; ``average_degree``: 2|E| / |V|; ``diameter``: eccentricity maximum of the
    largest component when it has at most ``diameter_limit`` nodes, else None
    (exact diameter costs O(|V| |E|)).
    """
    n = graph.number_of_nodes()
    m = graph.number_of_edges()
    if n == 0:
        return ConnectivityReport(
            nodes=0,
            edges=0,
            components=0,
            largest_component_fraction=0.0,
            isolated=0,
            average_degree=0.0,
            diameter=None,
        )
    components: Sequence[set[int]] = list(nx.connected_components(graph))
    largest = max(components, key=len)
    diameter = int(nx.diameter(graph.subgraph(largest))) if len(largest) <= diameter_limit else None
    return ConnectivityReport(
        nodes=n,
        edges=m,
        components=len(components),
        largest_component_fraction=len(largest) / n,
        isolated=sum(1 for node in graph.nodes if graph.degree(node) == 0),
        average_degree=2.0 * m / n,
        diameter=diameter,
    )
