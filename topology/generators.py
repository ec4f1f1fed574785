"""Topology generators: a spec string plus (n, seed) gives one networkx graph.

Contract: ``build_topology(spec, n, seed)`` returns an undirected simple
``networkx.Graph`` whose nodes are exactly ``0 .. n-1`` (inserted in that order),
with no self loops, and the same (spec, n, seed) always gives the same graph on
every machine. ``G.graph`` records ``spec`` (canonical form), ``seed`` (the one
passed in), ``attempt`` (which draw was kept, see below) and, for ``rgg``,
``bridges`` (edges added to reconnect it).

Spec forms (case-insensitive kind, ``:``-separated parameters)::

    ring              cycle 0-1-..-(n-1)-0; degree 2 (n >= 3)
    complete          every pair linked; degree n-1
    star              node 0 is the hub linked to every other node; leaves have degree 1
    regular:K         uniform random K-regular graph, connected; needs 1 <= K < n, n*K even
    er:P              Erdős–Rényi G(n, P), each pair linked with probability P, connected
    ba:M              Barabási–Albert preferential attachment, M edges per new node
                      (1 <= M < n); connected by construction
    rgg:R             random geometric graph: n points uniform in the unit square,
                      linked when Euclidean distance <= R; connected (see below)
    rgg:R:maxdeg=D    the same with every degree capped at D (longest edges dropped first)
    ws:K:P            Watts–Strogatz: ring lattice with K nearest neighbours (K even),
                      each edge rewired with probability P; connected

"Connected" models (regular, er, ws, rgg) are conditioned on connectivity by
rejection: draw ``attempt = 0`` uses ``seed`` itself (for regular, er, ws and ba
it equals the networkx generator called with that seed: ``random_regular_graph``,
``fast_gnp_random_graph``, ``watts_strogatz_graph``, ``barabasi_albert_graph``);
draw ``a >= 1`` uses ``derived_seed(seed, a)`` (a numpy SeedSequence of
``(seed, a)``, so attempts of neighbouring seeds never coincide). The first
connected draw is kept; after ``MAX_ATTEMPTS`` draws a ConfigError says the
parameters are too sparse (rgg reconnects instead, see below).

``regular:2`` is drawn directly as a uniformly random Hamiltonian cycle (a random
relabelling of the ring): that is exactly the uniform 2-regular graph conditioned
on being connected, which rejection would reach less and less often as n grows
(the probability decays like 1/sqrt(n)).

``rgg`` points are ``numpy.random.default_rng(seed').random((n, 2))`` for the draw's
seed'; pairs at distance <= R are found with a KD-tree (10,000 peers: about half a
second a draw); nodes carry ``pos = [x, y]`` as in networkx.

``rgg`` degree cap (``maxdeg=D``): edges are visited from the longest to the
shortest (ties by node ids) and an edge is dropped while either endpoint still has
degree > D, so afterwards every degree is <= D and the short links survive. The
capped graph is what must be connected for a draw to be accepted. If none of
``RGG_ATTEMPTS`` draws is connected, draw 0 is kept and reconnected with bridging
edges: repeatedly, the smallest component (ties: lowest node id) is joined to the
rest by the shortest edge whose endpoints are both below the cap, or by the
shortest edge at all when no such pair exists (then the cap is exceeded, only
where no bridge below it exists). ``G.graph["bridges"]`` counts them.

``file:PATH`` graphs are read by rumor.scripts (this package does no I/O); they
come in here through ``graph_from_edges(edges, n)``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import networkx as nx
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from rumor.protocols.errors import ConfigError

__all__ = [
    "MAX_ATTEMPTS",
    "RGG_ATTEMPTS",
    "TOPOLOGY_FORMS",
    "TopologySpec",
    "build_topology",
    "derived_seed",
    "graph_from_edges",
    "parse_topology",
]

MAX_ATTEMPTS = 100
"""Draws tried before a connected model gives up with a ConfigError."""

RGG_ATTEMPTS = 20
"""Draws of ``rgg`` tried before draw 0 is reconnected with bridging edges."""

TOPOLOGY_FORMS = (
    "ring, complete, star, regular:K, er:P, ba:M, rgg:R, rgg:R:maxdeg=D, ws:K:P "
    "(K, M, D integers; P a probability; R a radius in the unit square)"
)
"""The valid spec forms, quoted in every parse error."""

_T = TypeVar("_T")

_KINDS = ("ring", "complete", "star", "regular", "er", "ba", "rgg", "ws")


@dataclass(frozen=True)
class TopologySpec:
    """A parsed topology spec. ``str(spec)`` gives the canonical spec string.

    Only the fields of its kind are set: ``k`` (regular, ws), ``p`` (er, ws),
    ``m`` (ba), ``radius`` and optionally ``max_degree`` (rgg).
    """

    kind: str
    k: int | None = None
    p: float | None = None
    m: int | None = None
    radius: float | None = None
    max_degree: int | None = None

    def __str__(self) -> str:
        if self.kind == "regular":
            return f"regular:{self.k}"
        if self.kind == "er":
            return f"er:{self.p!r}"
        if self.kind == "ba":
            return f"ba:{self.m}"
        if self.kind == "ws":
            return f"ws:{self.k}:{self.p!r}"
        if self.kind == "rgg":
            cap = f":maxdeg={self.max_degree}" if self.max_degree is not None else ""
            return f"rgg:{self.radius!r}{cap}"
        return self.kind


def _bad(spec: str, why: str) -> ConfigError:
    return ConfigError(f"bad topology {spec!r}: {why}; valid forms: {TOPOLOGY_FORMS}")


def _int(spec: str, name: str, text: str, *, low: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise _bad(spec, f"{name} must be an integer, got {text!r}") from None
    if value < low:
        raise _bad(spec, f"{name} must be >= {low}, got {value}")
    return value


def _float(spec: str, name: str, text: str, *, low: float, high: float, open_low: bool) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise _bad(spec, f"{name} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise _bad(spec, f"{name} must be finite, got {text!r}")
    too_low = value <= low if open_low else value < low
    if too_low or value > high:
        left = "(" if open_low else "["
        raise _bad(spec, f"{name} must be in {left}{low:g}, {high:g}], got {value!r}")
    return value


def parse_topology(spec: str) -> TopologySpec:
    """Parse and validate a spec string (forms: ``TOPOLOGY_FORMS``).

    Checks what does not depend on n (types and ranges); ``build_topology`` checks
    the rest (K < n, n*K even, M < n). Raises ConfigError naming the problem and
    listing the valid forms.
    """
    if not isinstance(spec, str):
        raise ConfigError(f"topology spec must be a string, got {type(spec).__name__}")
    parts = [part.strip() for part in spec.strip().split(":")]
    kind = parts[0].lower()
    args = parts[1:]
    if kind == "file":
        raise ConfigError(
            f"bad topology {spec!r}: file: graphs are loaded by the scenario/CLI layer "
            "and passed in as an edge list (rumor.topology.graph_from_edges)"
        )
    if kind not in _KINDS:
        raise _bad(spec, f"unknown kind {kind!r}")

    def arity(count: int, form: str) -> None:
        if len(args) != count:
            raise _bad(spec, f"{kind} takes the form {form}")

    if kind in ("ring", "complete", "star"):
        arity(0, kind)
        return TopologySpec(kind)
    if kind == "regular":
        arity(1, "regular:K")
        return TopologySpec(kind, k=_int(spec, "K", args[0], low=1))
    if kind == "er":
        arity(1, "er:P")
        return TopologySpec(kind, p=_float(spec, "P", args[0], low=0.0, high=1.0, open_low=True))
    if kind == "ba":
        arity(1, "ba:M")
        return TopologySpec(kind, m=_int(spec, "M", args[0], low=1))
    if kind == "ws":
        arity(2, "ws:K:P")
        k = _int(spec, "K", args[0], low=2)
        if k % 2:
            raise _bad(spec, f"K must be even (K/2 neighbours on each side), got {k}")
        p = _float(spec, "P", args[1], low=0.0, high=1.0, open_low=False)
        return TopologySpec(kind, k=k, p=p)
    # rgg
    if len(args) not in (1, 2):
        raise _bad(spec, "rgg takes the form rgg:R or rgg:R:maxdeg=D")
    radius = _float(spec, "R", args[0], low=0.0, high=math.inf, open_low=True)
    max_degree = None
    if len(args) == 2:
        key, sep, value = args[1].partition("=")
        if not sep or key.strip().lower() != "maxdeg":
            raise _bad(spec, f"rgg option must be maxdeg=D, got {args[1]!r}")
        max_degree = _int(spec, "maxdeg", value, low=1)
    return TopologySpec(kind, radius=radius, max_degree=max_degree)


def derived_seed(seed: int, attempt: int) -> int:
    """Seed of draw ``attempt``: ``seed`` itself for attempt 0, else a 63-bit integer
    from ``numpy.random.SeedSequence((seed, attempt))``."""
    if attempt == 0:
        return seed
    state = np.random.SeedSequence((seed, attempt)).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _check_n_seed(n: int, seed: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"number of peers n must be an integer >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")


def build_topology(spec: str | TopologySpec, n: int, seed: int) -> nx.Graph:
    """Build the graph named by ``spec`` on nodes ``0..n-1`` from ``seed``.

    See the module docstring for every form's model, the connectivity guarantee
    and how retries derive their seeds. Raises ConfigError for bad specs, for
    parameters impossible at this n (regular K >= n or n*K odd, ba M >= n, ws K >= n)
    and when no connected draw was found within the attempt budget.
    """
    parsed = parse_topology(spec) if isinstance(spec, str) else spec
    _check_n_seed(n, seed)
    label = str(parsed)
    attempt = 0
    extra: dict[str, Any] = {}
    if parsed.kind == "ring":
        graph = _ring(n)
    elif parsed.kind == "complete":
        graph = nx.complete_graph(n)
    elif parsed.kind == "star":
        graph = nx.star_graph(n - 1)
    elif parsed.kind == "ba":
        m = _need(parsed.m)
        if m >= n:
            raise ConfigError(f"topology {label!r} needs M < n, got M={m} and n={n}")
        graph = nx.barabasi_albert_graph(n, m, seed=seed)
    elif parsed.kind == "regular":
        graph, attempt = _regular(label, _need(parsed.k), n, seed)
    elif parsed.kind == "er":
        graph, attempt = _er(label, _need(parsed.p), n, seed)
    elif parsed.kind == "ws":
        graph, attempt = _ws(label, _need(parsed.k), _need(parsed.p), n, seed)
    elif parsed.kind == "rgg":
        graph, attempt, bridges = _rgg(_need(parsed.radius), parsed.max_degree, n, seed)
        extra["bridges"] = bridges
    else:  # pragma: no cover - parse_topology rejects unknown kinds
        raise ConfigError(f"unknown topology kind {parsed.kind!r}; valid forms: {TOPOLOGY_FORMS}")
    out = _canonical(graph, n)
    out.graph.update(spec=label, seed=seed, attempt=attempt, **extra)
    return out


def graph_from_edges(edges: Iterable[tuple[int, int]], n: int) -> nx.Graph:
    """Graph on nodes ``0..n-1`` with the given undirected edges.

    Each edge is a pair of integers in ``[0, n)``; self loops are rejected,
    duplicates (in either direction) merged. Connectivity is not required (use
    ``connectivity_report`` to check). Raises ConfigError naming the bad edge.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"number of peers n must be an integer >= 1, got {n!r}")
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    for index, edge in enumerate(edges):
        try:
            u, v = edge
        except (TypeError, ValueError):
            raise ConfigError(f"edge #{index} must be a pair of peer ids, got {edge!r}") from None
        for end in (u, v):
            if isinstance(end, bool) or not isinstance(end, int | np.integer):
                raise ConfigError(f"edge #{index} {edge!r}: peer ids must be integers")
            if not 0 <= int(end) < n:
                raise ConfigError(f"edge #{index} {edge!r}: peer id {end} is outside 0..{n - 1}")
        if u == v:
            raise ConfigError(f"edge #{index} {edge!r}: self loops are not allowed")
        graph.add_edge(int(u), int(v))
    return graph


# --------------------------------------------------------------------------- models


def _need(value: _T | None) -> _T:
    if value is None:  # pragma: no cover - parse_topology sets every field of its kind
        raise ConfigError("incomplete topology spec")
    return value


def _ring(n: int) -> nx.Graph:
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    if n >= 2:
        graph.add_edges_from((i, (i + 1) % n) for i in range(n) if (i + 1) % n != i)
    return graph


def _canonical(graph: nx.Graph, n: int) -> nx.Graph:
    """Copy with nodes inserted 0..n-1 and edges as sorted (min, max) pairs."""
    out = nx.Graph()
    out.add_nodes_from((i, dict(graph.nodes[i])) for i in range(n))
    out.add_edges_from(sorted((min(u, v), max(u, v)) for u, v in graph.edges() if u != v))
    return out


def _too_sparse(label: str, n: int, attempts: int, hint: str) -> ConfigError:
    return ConfigError(
        f"topology {label!r} with n={n}: no connected graph in {attempts} draws; {hint}"
    )


def _regular(label: str, k: int, n: int, seed: int) -> tuple[nx.Graph, int]:
    if k >= n:
        raise ConfigError(f"topology {label!r} needs K < n, got K={k} and n={n}: use "
                          f"regular:K with K < {n}, or complete")
    if (n * k) % 2:
        raise ConfigError(f"topology {label!r} needs n*K even, got n={n} and K={k}")
    if k == 1 and n != 2:
        raise ConfigError(
            f"topology {label!r}: a 1-regular graph is a perfect matching, connected only "
            f"for n=2 (got n={n}); use K >= 2"
        )
    if k == 2:
        order = list(range(n))
        random.Random(seed).shuffle(order)
        cycle = nx.Graph()
        cycle.add_nodes_from(range(n))
        cycle.add_edges_from((order[i], order[(i + 1) % n]) for i in range(n))
        return cycle, 0
    for attempt in range(MAX_ATTEMPTS):
        graph = nx.random_regular_graph(k, n, seed=derived_seed(seed, attempt))
        if nx.is_connected(graph):
            return graph, attempt
    raise _too_sparse(label, n, MAX_ATTEMPTS, "use K >= 3")  # pragma: no cover


def _er(label: str, p: float, n: int, seed: int) -> tuple[nx.Graph, int]:
    for attempt in range(MAX_ATTEMPTS):
        graph = nx.fast_gnp_random_graph(n, p, seed=derived_seed(seed, attempt))
        if nx.is_connected(graph):
            return graph, attempt
    threshold = math.log(n) / n if n > 1 else 0.0
    raise _too_sparse(
        label,
        n,
        MAX_ATTEMPTS,
        f"raise P well above the connectivity threshold ln(n)/n = {threshold:.3g}",
    )


def _ws(label: str, k: int, p: float, n: int, seed: int) -> tuple[nx.Graph, int]:
    if k >= n:
        raise ConfigError(f"topology {label!r} needs K < n, got K={k} and n={n}")
    for attempt in range(MAX_ATTEMPTS):
        graph = nx.watts_strogatz_graph(n, k, p, seed=derived_seed(seed, attempt))
        if nx.is_connected(graph):
            return graph, attempt
    raise _too_sparse(label, n, MAX_ATTEMPTS, "raise K or lower P")  # pragma: no cover


def _rgg(radius: float, max_degree: int | None, n: int, seed: int) -> tuple[nx.Graph, int, int]:
    first: tuple[npt.NDArray[np.float64], list[tuple[int, int]]] | None = None
    for attempt in range(RGG_ATTEMPTS):
        pos = np.random.default_rng(derived_seed(seed, attempt)).random((n, 2))
        pairs = cKDTree(pos).query_pairs(radius, output_type="ndarray")
        edges = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        edges = edges[np.lexsort((edges[:, 1], edges[:, 0]))]
        kept = _cap_degrees(pos, edges, max_degree)
        if _components(n, kept)[0] == 1:
            return _geometric_graph(pos, kept), attempt, 0
        if first is None:
            first = (pos, kept)
    assert first is not None
    pos, kept = first
    bridges = _bridges(pos, kept, max_degree)
    return _geometric_graph(pos, kept + bridges), 0, len(bridges)


def _geometric_graph(pos: npt.NDArray[np.float64], edges: list[tuple[int, int]]) -> nx.Graph:
    graph = nx.Graph()
    graph.add_nodes_from((i, {"pos": [float(x), float(y)]}) for i, (x, y) in enumerate(pos))
    graph.add_edges_from(edges)
    return graph


def _components(n: int, edges: list[tuple[int, int]]) -> tuple[int, npt.NDArray[np.int32]]:
    pairs = np.array(edges, dtype=np.int64).reshape(-1, 2)
    adj = sp.coo_array((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    count, labels = connected_components(adj.tocsr(), directed=False)
    return int(count), np.asarray(labels, dtype=np.int32)


def _cap_degrees(
    pos: npt.NDArray[np.float64], edges: npt.NDArray[np.int64], cap: int | None
) -> list[tuple[int, int]]:
    """Edges kept after dropping longest first while an endpoint has degree > cap."""
    pairs: list[tuple[int, int]] = [(int(u), int(v)) for u, v in edges.tolist()]
    if cap is None:
        return pairs
    n = pos.shape[0]
    length = np.linalg.norm(pos[edges[:, 0]] - pos[edges[:, 1]], axis=1)
    order = np.lexsort((edges[:, 1], edges[:, 0], -length)).tolist()
    degree = np.bincount(edges.ravel(), minlength=n).tolist()
    dropped = [False] * len(pairs)
    for index in order:
        u, v = pairs[index]
        if degree[u] > cap or degree[v] > cap:
            degree[u] -= 1
            degree[v] -= 1
            dropped[index] = True
    return [pair for pair, gone in zip(pairs, dropped, strict=True) if not gone]


def _bridges(
    pos: npt.NDArray[np.float64], edges: list[tuple[int, int]], cap: int | None
) -> list[tuple[int, int]]:
    """Shortest edges joining the components, smallest component first."""
    n = pos.shape[0]
    _, labels = _components(n, edges)
    label = np.empty(n, dtype=np.int64)
    members: dict[int, list[int]] = {}
    for node, comp in enumerate(labels.tolist()):
        members.setdefault(comp, []).append(node)
    members = {nodes[0]: nodes for nodes in members.values()}
    for root, nodes in members.items():
        label[nodes] = root
    pairs = np.array(edges, dtype=np.int64).reshape(-1, 2)
    degree = np.bincount(pairs.ravel(), minlength=n).astype(np.int64)
    added: list[tuple[int, int]] = []
    while len(members) > 1:
        root = min(members, key=lambda r: (len(members[r]), r))
        inside = np.array(members[root], dtype=np.int64)
        u, v = _nearest_pair(pos, inside, label != root, degree, cap)
        degree[u] += 1
        degree[v] += 1
        added.append((min(u, v), max(u, v)))
        other = int(label[v])
        keep, gone = (other, root) if len(members[other]) >= len(members[root]) else (root, other)
        label[members[gone]] = keep
        members[keep].extend(members.pop(gone))
    return added


def _nearest_pair(
    pos: npt.NDArray[np.float64],
    inside: npt.NDArray[np.int64],
    outside: npt.NDArray[np.bool_],
    degree: npt.NDArray[np.int64],
    cap: int | None,
) -> tuple[int, int]:
    """Shortest (u in inside, v in outside), preferring endpoints below the cap."""
    candidates = np.flatnonzero(outside)
    if cap is not None:
        free_in = inside[degree[inside] < cap]
        free_out = candidates[degree[candidates] < cap]
        if free_in.size and free_out.size:
            inside, candidates = free_in, free_out
    best = (math.inf, -1, -1)
    for start in range(0, inside.size, 256):
        block = inside[start : start + 256]
        diff = pos[block][:, None, :] - pos[candidates][None, :, :]
        dist = np.einsum("ijk,ijk->ij", diff, diff)
        flat = int(np.argmin(dist))
        i, j = divmod(flat, candidates.size)
        if dist[i, j] < best[0]:
            best = (float(dist[i, j]), int(block[i]), int(candidates[j]))
    return best[1], best[2]
