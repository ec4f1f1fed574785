"""Gossip mixing matrices on a graph, and their spectral gap.

Representation: ``scipy.sparse.csr_array`` of float64, shape (n, n). Chosen over
dense numpy because the simulator merges a round of 10,000 peers as one sparse
product ``X_next = W @ X`` (X the (n, d) stack of models, ARCHITECTURE.md) and W has
only n + 2|E| nonzeros. ``W.toarray()`` gives the dense matrix for small graphs.

Row/column k stands for node ``nodelist[k]``; the default ``nodelist`` is
``sorted(G.nodes)``, which for a graph from ``build_topology`` is ``0..n-1``.
Pass the survivors' order explicitly after peers were removed. Degrees count
distinct neighbours (self loops are ignored). Directed graphs are rejected.

Rules (``N(i)`` = neighbours of i, ``d_i = |N(i)|``):

- uniform:  ``w_ij = 1 / (d_i + 1)`` for j in ``N(i) ∪ {i}``, else 0. Row-stochastic;
  symmetric only on regular graphs (each peer averages itself and its neighbours).
- metropolis-hastings:  ``w_ij = 1 / (1 + max(d_i, d_j))`` for j in ``N(i)``,
  ``w_ii = 1 - sum_{j in N(i)} w_ij``. Symmetric and doubly stochastic, entries in
  [0, 1], ``w_ii >= 1 / (1 + d_i) > 0``; gossip with it converges to the exact
  average on any connected graph.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import networkx as nx
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from rumor.protocols.errors import ConfigError

__all__ = [
    "DENSE_LIMIT",
    "MIXING_RULES",
    "metropolis_hastings_weights",
    "mixing_matrix",
    "spectral_gap",
    "uniform_weights",
]

DENSE_LIMIT = 2048
"""Up to this n, ``spectral_gap`` uses an exact dense eigen-decomposition."""


def _adjacency(
    graph: nx.Graph, nodelist: Sequence[Hashable] | None
) -> tuple[Any, npt.NDArray[np.float64], int]:
    """0/1 CSR adjacency without the diagonal, degrees, n."""
    if graph.is_directed():
        raise ConfigError("mixing weights need an undirected graph")
    order = sorted(graph.nodes) if nodelist is None else list(nodelist)
    if len(set(order)) != len(order) or set(order) != set(graph.nodes):
        raise ConfigError("nodelist must list every node of the graph exactly once")
    n = len(order)
    if n == 0:
        raise ConfigError("mixing weights need a graph with at least one node")
    index = {node: k for k, node in enumerate(order)}
    pairs = np.array(
        [(index[u], index[v]) for u, v in graph.edges() if u != v], dtype=np.int64
    ).reshape(-1, 2)
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
    adj = sp.csr_array((np.ones(rows.size), (rows, cols)), shape=(n, n), dtype=np.float64)
    adj.sum_duplicates()
    adj.data[:] = 1.0  # a multigraph's parallel edges count once
    degree = np.asarray(adj.sum(axis=1), dtype=np.float64).reshape(n)
    return adj, degree, n


def uniform_weights(graph: nx.Graph, nodelist: Sequence[Hashable] | None = None) -> Any:
    """Row-stochastic W with ``w_ij = 1 / (deg_i + 1)`` on ``N(i) ∪ {i}`` (CSR, float64)."""
    adj, degree, n = _adjacency(graph, nodelist)
    scale = sp.diags_array(1.0 / (degree + 1.0))
    return sp.csr_array(scale @ (adj + sp.eye_array(n, format="csr")))


def metropolis_hastings_weights(graph: nx.Graph, nodelist: Sequence[Hashable] | None = None) -> Any:
    """Symmetric doubly stochastic W: ``w_ij = 1 / (1 + max(deg_i, deg_j))`` on edges,
    ``w_ii = 1 - sum_j w_ij`` (CSR, float64)."""
    adj, degree, n = _adjacency(graph, nodelist)
    coo = adj.tocoo()
    rows = np.asarray(coo.row, dtype=np.int64)
    cols = np.asarray(coo.col, dtype=np.int64)
    values = 1.0 / (1.0 + np.maximum(degree[rows], degree[cols]))
    off = sp.csr_array((values, (rows, cols)), shape=(n, n))
    self_weight = 1.0 - np.asarray(off.sum(axis=1), dtype=np.float64).reshape(n)
    return sp.csr_array(off + sp.diags_array(self_weight, format="csr"))


MIXING_RULES: dict[str, Callable[..., Any]] = {
    "uniform": uniform_weights,
    "metropolis-hastings": metropolis_hastings_weights,
}
"""Mixing rules by the name a scenario file uses."""


def mixing_matrix(graph: nx.Graph, rule: str, nodelist: Sequence[Hashable] | None = None) -> Any:
    """``MIXING_RULES[rule](graph, nodelist)``; ConfigError naming the valid rules."""
    try:
        build = MIXING_RULES[rule]
    except KeyError:
        raise ConfigError(
            f"unknown mixing rule {rule!r}; valid rules: {', '.join(sorted(MIXING_RULES))}"
        ) from None
    return build(graph, nodelist)


def spectral_gap(weights: Any, *, dense_limit: int = DENSE_LIMIT) -> float:
    """``1 - |lambda_2|`` where ``|lambda_2|`` is the second largest eigenvalue modulus.

    ``weights`` is a square stochastic matrix (scipy sparse or numpy). For a
    row-stochastic W the largest modulus is 1, so the gap is in [0, 1]; it is 0
    when W does not mix (a disconnected graph: eigenvalue 1 twice; a bipartite
    graph with zero self weights: eigenvalue -1), and consensus error shrinks
    roughly like ``(1 - gap)^t``. A 1x1 matrix has gap 1.

    n <= ``dense_limit``: exact (``eigvalsh`` when symmetric, else ``eigvals``).
    Larger: ARPACK (``eigsh``/``eigs``, the two eigenvalues of largest magnitude,
    a fixed start vector, so the result is deterministic).
    """
    shape = getattr(weights, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != shape[1] or shape[0] == 0:
        raise ConfigError(f"spectral_gap needs a non-empty square matrix, got shape {shape}")
    n = int(shape[0])
    if n == 1:
        return 1.0
    matrix = sp.csr_array(weights, dtype=np.float64)
    asymmetry = abs(matrix - matrix.T).max() if matrix.nnz else 0.0
    symmetric = float(asymmetry) <= 1e-12
    if n <= dense_limit:
        dense = matrix.toarray()
        values = np.linalg.eigvalsh(dense) if symmetric else np.linalg.eigvals(dense)
        moduli = np.sort(np.abs(values))[::-1]
    else:
        start = np.random.default_rng(0).random(n)
        if symmetric:
            values = spla.eigsh(matrix, k=2, which="LM", v0=start, return_eigenvectors=False)
        else:
            values = spla.eigs(matrix, k=2, which="LM", v0=start, return_eigenvectors=False)
        moduli = np.sort(np.abs(values))[::-1]
    return float(min(1.0, max(0.0, 1.0 - float(moduli[1]))))
