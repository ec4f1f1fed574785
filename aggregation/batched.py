"""Linear rules for many receivers at once: one sparse product instead of G merges.

G receivers g each merge their own vector o_g with the updates U_g ⊆ pool (S, d):

    x_g = a_g · o_g + Σ_{j ∈ U_g} b_g · pool_j            (a sparse (G, S) product)

    mean                 a_g = b_g = 1 / (|U_g| + 1)          (rumor.aggregation.mean)
    variance-corrected   a_g = w, b_g = (1 - w) / |U_g|        (w = own_weight, 0.5)
                         (|U_g| = 0: x_g = o_g)
    vc:mean              mean, then variance correction

then, for the VC rules, per weight slice s of ``layout`` (rumor.aggregation.variance,
here with float32 two-pass statistics):
tau²_g = mean over {o_g} ∪ U_g of Var(x[s]) (each input's variance computed once, however
many receivers share it), mu = mean(x_g[s]), and x_g[s] <- mu + (x_g[s] - mu) ·
sqrt(tau²_g / Var(x_g[s])) unless Var(x_g[s]) <= min_var_ratio · tau²_g or is 0.

The result equals the per-receiver rule up to float summation order (the products sum
in another order; tests compare them with a tolerance). ``supports(name, params)`` says
which (rule, params) pairs have a batched form; anything else merges one by one.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from rumor.aggregation.layout import LayerSlice, Layout, single_tensor_layout
from rumor.protocols.errors import AggregationError

BATCHED = ("mean", "variance-corrected", "vc:mean")
_CORRECTED = ("variance-corrected", "vc:mean")  # the rules that rescale variance
# floats per block of work: ~8 MB temporaries, which the allocator reuses (fresh large
# allocations cost page faults that, on a VM, are slower than the arithmetic)
_BLOCK_FLOATS = 1 << 21
_MIN_VAR_RATIO = 1e-12


def supports(name: str, params: Mapping[str, Any]) -> bool:
    """True when ``name`` with ``params`` has a batched form here."""
    if name not in BATCHED:
        return False
    allowed = {"own_weight", "layout"} if name == "variance-corrected" else {"layout"}
    if not set(params) <= allowed:
        return False
    return bool(params.get("tau2_from", "mean") == "mean")


def merge_many(
    name: str,
    own: Tensor,
    pool: Tensor,
    members: Sequence[Sequence[int]],
    *,
    layout: Layout | None = None,
    own_weight: float = 0.5,
    pool_variances: list[Tensor] | None = None,
) -> Tensor:
    """The (G, d) merged vectors: row g merges own[g] with pool[members[g]]; see the
    module docstring. ``own`` (G, d) and ``pool`` (S, d) float32; a new tensor. Works
    in blocks of receivers, so temporaries stay small whatever G is. ``pool_variances``:
    ``input_variances(name, pool, layout)`` when the caller merges several blocks of
    receivers against one pool (computed here when None)."""
    if name not in BATCHED:
        raise AggregationError(f"no batched form of rule {name!r}")
    if not 0.0 <= own_weight <= 1.0:
        raise AggregationError(f"own_weight must be in [0, 1], got {own_weight}")
    g, d = own.shape
    if len(members) != g or pool.dim() != 2 or (pool.shape[0] and pool.shape[1] != d):
        raise AggregationError(
            f"merge_many needs own (G, d), pool (S, d) and G member lists, got "
            f"{tuple(own.shape)}, {tuple(pool.shape)} and {len(members)}")
    out = torch.empty_like(own)
    counts = torch.tensor([len(m) for m in members], dtype=torch.float64)
    if name == "variance-corrected":
        a = torch.where(counts > 0, torch.full_like(counts, own_weight), 1.0)
        b = torch.where(counts > 0, (1.0 - own_weight) / counts.clamp(min=1.0), 0.0)
    else:
        a = 1.0 / (counts + 1.0)
        b = a.clone()
    correct = name in _CORRECTED
    pieces = _pieces(layout, d)
    pool_var = (input_variances(name, pool, layout) if pool_variances is None
                else pool_variances)
    rows = max(1, _BLOCK_FLOATS // max(d, 1))
    for k in range(0, g, rows):
        block = members[k:k + rows]
        view = out[k:k + rows]
        torch.mul(own[k:k + rows], a[k:k + rows].to(own.dtype)[:, None], out=view)
        if pool.shape[0]:
            view += _weights(block, b[k:k + rows], pool.shape[0]) @ pool
        if correct:
            n = counts[k:k + rows] + 1.0
            uniform = _weights(block, torch.ones(len(block)), pool.shape[0]).to(torch.float64)
            for p, var_pool in zip(pieces, pool_var, strict=True):
                var_in = _row_variances(own[k:k + rows], p.start, p.stop)
                if pool.shape[0]:
                    var_in += (uniform @ var_pool[:, None])[:, 0]
                _rescale(view[:, p.start:p.stop], var_in / n)
    return out


def input_variances(name: str, pool: Tensor, layout: Layout | None) -> list[Tensor]:
    """Per rescaled weight slice of ``layout``, each pool row's variance (S,) float64:
    computed once however many receivers share the row (empty for ``mean``)."""
    if name not in _CORRECTED:
        return []
    return [_row_variances(pool, p.start, p.stop) for p in _pieces(layout, pool.shape[1])]


def _pieces(layout: Layout | None, d: int) -> list[LayerSlice]:
    return [p for p in (layout or single_tensor_layout(d)) if _checked(p, d)]


def _checked(piece: LayerSlice, d: int) -> bool:
    """True for the slices variance correction rescales (weights of size >= 2)."""
    if not 0 <= piece.start <= piece.stop <= d:
        raise AggregationError(f"layout slice {piece.name!r} outside [0, {d})")
    return piece.is_weight and piece.stop - piece.start >= 2


def _weights(members: Sequence[Sequence[int]], b: Tensor, s: int) -> Tensor:
    """The sparse (G, S) float32 matrix with b[g] at (g, j) for j in members[g]."""
    crow = [0]
    cols: list[int] = []
    vals: list[float] = []
    for k, m in enumerate(members):
        cols.extend(m)
        vals.extend([float(b[k])] * len(m))
        crow.append(len(cols))
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.tensor(crow, dtype=torch.int64), torch.tensor(cols, dtype=torch.int64),
            torch.tensor(vals, dtype=torch.float32), (len(members), s),
            check_invariants=False)


def _row_variances(x: Tensor, start: int, stop: int) -> Tensor:
    """Population variance of each row of x[:, start:stop] (two-pass, float32 blocks:
    torch's var is a scalar loop on CPU, 5x slower; relative error ~1e-6), float64."""
    out = torch.empty(x.shape[0], dtype=torch.float64)
    rows = max(1, _BLOCK_FLOATS // max(stop - start, 1))
    for k in range(0, x.shape[0], rows):
        block = x[k:k + rows, start:stop]
        dev = block - block.mean(dim=1, keepdim=True)
        out[k:k + rows] = (dev * dev).mean(dim=1)
    return out


def _rescale(x: Tensor, tau2: Tensor) -> None:
    """x[g] <- mu + (x[g] - mu) sqrt(tau2[g] / Var(x[g])) in place, per row (two-pass
    float32 statistics); rows with Var <= min_var_ratio tau2 or Var == 0 are left as
    they are. When every row is rescaled (the usual case) the result is written in one
    fused pass (addcmul); boolean row indexing costs ~5x the arithmetic."""
    mu = x.mean(dim=1, keepdim=True)
    dev = x - mu
    var_m = (dev * dev).mean(dim=1, keepdim=True).to(torch.float64)
    t = tau2[:, None]
    keep = (var_m <= _MIN_VAR_RATIO * t) | (var_m == 0.0)
    scale = torch.where(keep, 1.0, torch.sqrt(t / var_m.clamp(min=1e-300))).to(x.dtype)
    if not bool(keep.any()):
        torch.addcmul(mu, dev, scale, out=x)
        return
    rows = ~keep[:, 0]
    x[rows] = mu[rows] + dev[rows] * scale[rows]
