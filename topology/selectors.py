"""Which peers a timeline event hits: by role, by centrality, at random. Pure, seeded.

A timeline event is the experimenter's action ("the 10 most central relays crash"), not
a peer's decision, so it may look at the whole graph and at who is what: the roles come
from the scenario (the seeded relay set and the seeded Byzantine set), an oracle that
no peer has. ::

    roles = PeerRoles(relays=frozenset(relays), byzantine=frozenset(byzantine))
    select_peers(G, 10, order="betweenness", role="relay", roles=roles)   # 10 most central relays
    select_peers(G, 5, order="degree", direction="least", role="holder", roles=roles)
    select_peers(G, 8, order="random", role=("relay", "honest"), roles=roles, seed=3)

The rule, stated once: the *eligible* peers are the nodes of ``graph`` that have every
role asked for. ``order="random"`` draws ``count`` of them uniformly without
replacement (``numpy.random.default_rng(seed).choice`` over the eligible peers in
increasing id order; the same draw as ``remove_random``). Any other order scores every
node of the whole ``graph`` (the network as it is, whatever the roles), rounds the
scores to 12 decimals and ranks the eligible peers by score, highest first
(``direction="most"``) or lowest first (``"least"``); equal scores go to the lower
peer id in both directions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, get_args

import networkx as nx
import numpy as np

from rumor.protocols.errors import ConfigError

__all__ = [
    "CENTRALITIES",
    "DIRECTIONS",
    "ORDERS",
    "ROLES",
    "Centrality",
    "Direction",
    "Order",
    "PeerRoles",
    "Role",
    "centrality_scores",
    "select_peers",
]

Centrality = Literal["degree", "betweenness", "closeness", "pagerank"]
Order = Literal["random", "degree", "betweenness", "closeness", "pagerank"]
Direction = Literal["most", "least"]
Role = Literal["any", "relay", "holder", "honest", "byzantine"]

CENTRALITIES: tuple[str, ...] = get_args(Centrality)
ORDERS: tuple[str, ...] = get_args(Order)
DIRECTIONS: tuple[str, ...] = get_args(Direction)
ROLES: tuple[str, ...] = get_args(Role)

_DECIMALS = 12  # scores equal to 12 decimals are ties (float sums differ in the last bits)


@dataclass(frozen=True)
class PeerRoles:
    """Who is what, as the experimenter knows it.

    ``relay``: in ``relays`` (holds no training data); ``holder``: not a relay;
    ``byzantine``: in ``byzantine``; ``honest``: not Byzantine; ``any``: everyone.
    The two pairs are independent, so a peer can be, say, a Byzantine relay.
    """

    relays: frozenset[int] = field(default_factory=frozenset)
    byzantine: frozenset[int] = field(default_factory=frozenset)

    def has(self, peer: int, role: str) -> bool:
        """Whether ``peer`` has ``role`` (one of ROLES; ConfigError otherwise)."""
        if role == "any":
            return True
        if role == "relay":
            return peer in self.relays
        if role == "holder":
            return peer not in self.relays
        if role == "byzantine":
            return peer in self.byzantine
        if role == "honest":
            return peer not in self.byzantine
        raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}")

    def eligible(self, peers: Iterable[int], role: str | Iterable[str] = "any") -> list[int]:
        """The peers (sorted) that have every role in ``role`` (a name or several)."""
        wanted = _role_tuple(role)
        return sorted(p for p in peers if all(self.has(p, r) for r in wanted))


def _role_tuple(role: str | Iterable[str]) -> tuple[str, ...]:
    wanted = (role,) if isinstance(role, str) else tuple(role)
    for r in wanted:
        if r not in ROLES:
            raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {r!r}")
    return wanted


def centrality_scores(
    graph: nx.Graph, by: str, *, samples: int | None = None, seed: int = 0
) -> dict[int, float]:
    """Every node's centrality in ``graph``, rounded to 12 decimals.

    ``degree``: number of links; ``betweenness``: normalized betweenness centrality
    (exact, or estimated from ``samples`` seeded source nodes when ``samples`` is below
    the node count); ``closeness``: closeness centrality (Wasserman-Faust form, defined
    on disconnected graphs); ``pagerank``: PageRank with damping 0.85.
    """
    if by == "degree":
        raw: dict[int, float] = {int(node): float(graph.degree(node)) for node in graph}
    elif by == "betweenness":
        if samples is not None and not (
            isinstance(samples, int) and not isinstance(samples, bool) and samples >= 1
        ):
            raise ConfigError(f"betweenness samples must be an integer >= 1, got {samples!r}")
        if samples is not None and samples < graph.number_of_nodes():
            raw = nx.betweenness_centrality(graph, k=samples, seed=seed)
        else:
            raw = nx.betweenness_centrality(graph)
    elif by == "closeness":
        raw = nx.closeness_centrality(graph)
    elif by == "pagerank":
        raw = nx.pagerank(graph) if graph.number_of_nodes() else {}
    else:
        raise ConfigError(f"centrality must be one of {', '.join(CENTRALITIES)}, got {by!r}")
    return {int(node): round(float(score), _DECIMALS) for node, score in raw.items()}


def select_peers(
    graph: nx.Graph,
    count: int,
    *,
    order: str = "random",
    direction: str = "most",
    role: str | Iterable[str] = "any",
    roles: PeerRoles | None = None,
    seed: int = 0,
    samples: int | None = None,
) -> tuple[int, ...]:
    """``count`` peers of ``graph`` with the ``role`` asked for, picked by ``order``.

    The eligible peers are the nodes of ``graph`` that have every role in ``role``
    (``roles`` says who is a relay and who is Byzantine; ``None`` means nobody is).
    ``order="random"``: ``count`` eligible peers drawn uniformly without replacement by
    ``numpy.random.default_rng(seed)`` from the eligible peers in increasing id order,
    returned in draw order (``direction`` is ignored). Otherwise (one of CENTRALITIES):
    ``centrality_scores(graph, order, samples=samples, seed=seed)`` over the whole
    graph, then the eligible peers ranked by score, highest first for
    ``direction="most"``, lowest first for ``"least"``, equal scores to the lower peer
    id; the first ``count`` are returned in that ranked order. ConfigError unless
    ``0 <= count <= number of eligible peers`` and the names are known.
    """
    if order not in ORDERS:
        raise ConfigError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be 'most' or 'least', got {direction!r}")
    wanted = _role_tuple(role)
    pool = (roles or PeerRoles()).eligible((int(p) for p in graph), wanted)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= len(pool):
        who = "+".join(wanted)
        raise ConfigError(
            f"select_peers: count must be an integer in 0..{len(pool)} "
            f"(the peers with role {who}), got {count!r}"
        )
    if order == "random":
        picks = np.random.default_rng(seed).choice(len(pool), size=count, replace=False)
        return tuple(pool[int(i)] for i in picks)
    score = centrality_scores(graph, order, samples=samples, seed=seed)
    sign = -1.0 if direction == "most" else 1.0
    ranked = sorted(pool, key=lambda peer: (sign * score[peer], peer))
    return tuple(ranked[:count])
