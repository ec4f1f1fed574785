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


_LM_MAXITER = 300
"""ARPACK restarts before the large-n path switches to shift-invert (slow mixers)."""


def _symmetrized(matrix: Any) -> Any | None:
    """A symmetric matrix similar to ``matrix`` (same eigenvalues), or None.

    Symmetric W is returned as is. W = diag(c) M with M symmetric and c > 0 (the
    diagonal of W is then positive and ``M = diag(1/w_ii) W``; uniform_weights has
    this form with M = A + I) gives ``diag(c)^(-1/2) W diag(c)^(1/2)``.
    """
    scale = float(abs(matrix).max()) if matrix.nnz else 0.0
    if scale == 0.0 or float(abs(matrix - matrix.T).max()) <= 1e-12 * scale:
        return matrix
    diagonal = np.asarray(matrix.diagonal(), dtype=np.float64)
    if (diagonal <= 0).any():
        return None
    core = sp.diags_array(1.0 / diagonal) @ matrix
    if float(abs(core - core.T).max()) > 1e-9 * float(abs(core).max()):
        return None
    root = np.sqrt(diagonal)
    return sp.csr_array(sp.diags_array(1.0 / root) @ matrix @ sp.diags_array(root))


def _slem_arpack(symmetric: Any) -> float:
    """Second largest eigenvalue modulus of a large symmetric stochastic-like matrix."""
    n = int(symmetric.shape[0])
    start = np.random.default_rng(0).random(n)
    ncv = min(n - 1, 40)
    try:
        values = spla.eigsh(
            symmetric,
            k=2,
            which="LM",
            v0=start,
            ncv=ncv,
            maxiter=_LM_MAXITER,
            return_eigenvectors=False,
        )
        return float(np.sort(np.abs(values))[0])
    except spla.ArpackNoConvergence:
        pass
    # Slow mixer: lambda_2 is within ~1/n^2 of 1. Such graphs (rings, lattices,
    # geometric graphs) factor cheaply, so shift-invert just above 1 finds
    # lambda_1 = 1 and lambda_2 fast; the bottom end only needs to be compared.
    top = spla.eigsh(
        symmetric, k=2, sigma=1.0 + 1e-8, which="LM", v0=start, return_eigenvectors=False
    )
    low = spla.eigsh(
        symmetric,
        k=1,
        which="SA",
        v0=start,
        ncv=ncv,
        tol=1e-6,
        maxiter=20 * _LM_MAXITER,
        return_eigenvectors=False,
    )
    return max(abs(float(np.min(top))), abs(float(low[0])))


def spectral_gap(weights: Any, *, dense_limit: int = DENSE_LIMIT) -> float:
    """``1 - |lambda_2|`` where ``|lambda_2|`` is the second largest eigenvalue modulus.

    ``weights`` is a square stochastic matrix (scipy sparse or numpy). For a
    row-stochastic W the largest modulus is 1, so the gap is in [0, 1]; it is 0
    when W does not mix (a disconnected graph: eigenvalue 1 twice; a bipartite
    graph with zero self weights: eigenvalue -1), and consensus error shrinks
    roughly like ``(1 - gap)^t``. A 1x1 matrix has gap 1.

    Symmetric W (Metropolis-Hastings) and W = diag(c) M with M symmetric
    (uniform weights) are handled as symmetric matrices (real spectrum).
    n <= ``dense_limit``: exact dense eigenvalues. Larger: ARPACK Lanczos for the
    two eigenvalues of largest magnitude (fixed start vector, deterministic); when
    that does not converge (a slow mixer), shift-invert just above 1 for lambda_2 and
    Lanczos for the smallest eigenvalue (about 10 s for a 10,000-peer ring). A large
    W of neither form falls back to dense ``eigvals`` (O(n^3)).
    """
    shape = getattr(weights, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != shape[1] or shape[0] == 0:
        raise ConfigError(f"spectral_gap needs a non-empty square matrix, got shape {shape}")
    n = int(shape[0])
    if n == 1:
        return 1.0
    matrix = sp.csr_array(weights, dtype=np.float64)
    symmetric = _symmetrized(matrix)
    if symmetric is not None and n > dense_limit:
        slem = _slem_arpack(symmetric)
    elif symmetric is not None:
        slem = float(np.sort(np.abs(np.linalg.eigvalsh(symmetric.toarray())))[-2])
    else:
        slem = float(np.sort(np.abs(np.linalg.eigvals(matrix.toarray())))[-2])
    return float(min(1.0, max(0.0, 1.0 - slem)))
