"""Where the Byzantine peers sit, and how much of each honest peer's view they hold.

::

    place_attackers(G, 5, "random", seed=cfg.seed + 31)   # seeded, as the simulator does
    place_attackers(G, 5, "hubs", seed=0)                 # the 5 highest-degree peers
    place_attackers(G, 3, "list:3,7,12", seed=0)          # exactly these peers
    byzantine_view_stats(G, {3, 7, 12})
    # {"honest_views": 97, "views_ge_third_byzantine": 4, "max_byzantine_fraction": 0.5}

Robust rules over a view of n = |received| + 1 vectors tolerate f Byzantine ones only
while n > 3f; ``byzantine_view_stats`` counts the honest peers whose view breaks that.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypedDict

import networkx as nx
import numpy as np

from rumor.protocols.errors import ConfigError
from rumor.topology.selectors import select_peers

__all__ = [
    "PLACEMENTS",
    "ByzantineViewStats",
    "byzantine_view_stats",
    "parse_placement",
    "place_attackers",
]

PLACEMENTS = ("random", "hubs", "list:I,J,...")
_FORMS = "random, hubs or list:I,J,... (peer indices)"


def parse_placement(placement: str) -> tuple[str, tuple[int, ...]]:
    """``("random", ())``, ``("hubs", ())`` or ``("list", (3, 7, 12))``; ConfigError else.

    A list names distinct integer peer indices separated by commas.
    """
    if not isinstance(placement, str):
        raise ConfigError(f"placement must be {_FORMS}, got {placement!r}")
    spec = placement.strip()
    if spec in ("random", "hubs"):
        return spec, ()
    kind, sep, rest = spec.partition(":")
    if kind != "list" or not sep:
        raise ConfigError(f"placement must be {_FORMS}, got {placement!r}")
    try:
        peers = tuple(int(part) for part in rest.split(","))
    except ValueError:
        raise ConfigError(
            f"placement list must be comma-separated peer indices, got {placement!r}"
        ) from None
    if len(set(peers)) != len(peers):
        raise ConfigError(f"placement list names a peer twice: {placement!r}")
    return "list", peers


def place_attackers(
    graph: nx.Graph, count: int, placement: str = "random", seed: int | np.random.Generator = 0
) -> list[int]:
    """The ``count`` Byzantine peers among the nodes of ``graph``, sorted by id.

    ``random``: ``rng.choice(len(nodes), size=count, replace=False)`` over the nodes in
    increasing id order, with ``rng = numpy.random.default_rng(seed)``, or ``seed``
    itself when it is a Generator (which the draw then advances, so a caller can keep
    one stream going). ``hubs``: the ``count`` highest-degree peers, equal degrees to the
    lower id (``rng`` untouched). ``list:I,J,...``: exactly those peers; they must be
    nodes of ``graph``, distinct, and ``count`` of them. ConfigError (one line) on bad
    input, including ``count`` outside ``0..|V|``.
    """
    kind, listed = parse_placement(placement)
    nodes = sorted(int(p) for p in graph)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= len(nodes):
        raise ConfigError(
            f"the number of Byzantine peers must be an integer in 0..{len(nodes)}, got {count!r}"
        )
    if kind == "random":
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return sorted(nodes[int(i)] for i in rng.choice(len(nodes), size=count, replace=False))
    if kind == "hubs":
        return sorted(select_peers(graph, count, order="degree"))
    unknown = sorted(set(listed) - set(nodes))
    if unknown:
        raise ConfigError(
            f"placement list names peers {unknown} outside 0..{len(nodes) - 1}"
            if nodes == list(range(len(nodes)))
            else f"placement list names peers {unknown} that are not in the graph"
        )
    if len(listed) != count:
        raise ConfigError(
            f"placement list names {len(listed)} peers but there are {count} Byzantine peers"
        )
    return sorted(listed)


class ByzantineViewStats(TypedDict):
    """What ``byzantine_view_stats`` returns."""

    honest_views: int
    views_ge_third_byzantine: int
    max_byzantine_fraction: float


def byzantine_view_stats(graph: nx.Graph, byzantine: Iterable[int]) -> ByzantineViewStats:
    """How much of the honest peers' views the Byzantine peers hold.

    An honest peer i's view is i and its neighbours: n_i = |N(i)| + 1 vectors, b_i of
    them Byzantine (its Byzantine neighbours; self loops do not count).
    ``honest_views``: honest peers in ``graph``; ``views_ge_third_byzantine``: those
    with 3 b_i >= n_i, where robust rules that need n > 3f lose their guarantee;
    ``max_byzantine_fraction``: max b_i / n_i (0.0 when there is no honest peer).
    ConfigError if a Byzantine peer is not a node.
    """
    bad = {int(p) for p in byzantine}
    missing = sorted(p for p in bad if p not in graph)
    if missing:
        raise ConfigError(f"byzantine_view_stats: Byzantine peers {missing} are not in the graph")
    honest = [p for p in graph if int(p) not in bad]
    over = 0
    worst = 0.0
    for peer in honest:
        neighbours = {int(q) for q in graph.neighbors(peer)} - {int(peer)}
        n = len(neighbours) + 1
        b = len(neighbours & bad)
        if 3 * b >= n:
            over += 1
        worst = max(worst, b / n)
    return ByzantineViewStats(
        honest_views=len(honest), views_ge_third_byzantine=over, max_byzantine_fraction=worst
    )
