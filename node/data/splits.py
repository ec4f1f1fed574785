"""Seeded splits of a training set across peers.

Peers share one copy of the dataset; a split gives each peer an index array into the
training set. The arrays are disjoint, cover every index, and are sorted ascending.
All randomness comes from ``numpy.random.Generator(PCG64(seed))``, so the same
``(labels, num_peers, spec, seed)`` gives the same split on every machine running the
same numpy version.

Specs (``parse_split``):

- ``iid``: a seeded permutation cut into ``num_peers`` parts whose sizes differ by at
  most one (``np.array_split``).
- ``dirichlet:ALPHA`` (ALPHA > 0): label skew. For each class c, proportions
  ``q_c ~ Dir(ALPHA * 1_P)`` and the class's (shuffled) indices are cut at
  ``floor(cumsum(q_c) * n_c)``. Small ALPHA: each peer sees few classes; large ALPHA
  tends to IID. Peers left empty are topped up deterministically: while some peer is
  empty, the lowest-numbered empty peer takes the last index of the currently largest
  peer (lowest number on ties). Every peer ends with >= 1 sample.
- ``shards:K`` (K >= 1): pathological non-IID (McMahan et al.). Indices sorted by label
  (stable, so ties keep index order) are cut into ``num_peers * K`` contiguous shards
  of near-equal size; a seeded permutation of shard ids gives peer i the shards
  ``perm[i*K:(i+1)*K]``. A peer sees at most about K labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from rumor.protocols.errors import ConfigError

SplitKind = Literal["iid", "dirichlet", "shards"]
SPLIT_SYNTAX = "iid | dirichlet:ALPHA (ALPHA > 0) | shards:K (K >= 1)"


@dataclass(frozen=True)
class SplitSpec:
    """A parsed split spec; ``param`` is ALPHA for dirichlet, K for shards, None for iid."""

    kind: SplitKind
    param: float | None = None

    def __str__(self) -> str:
        if self.kind == "iid":
            return "iid"
        if self.kind == "shards":
            return f"shards:{int(self.param or 0)}"
        return f"dirichlet:{self.param:g}"


def parse_split(spec: str | SplitSpec) -> SplitSpec:
    """Validate a split spec string; raises ConfigError naming the accepted syntax."""
    if isinstance(spec, SplitSpec):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"split spec must be a string ({SPLIT_SYNTAX}), got {spec!r}")
    text = spec.strip().lower()
    kind, sep, arg = text.partition(":")
    if kind == "iid" and not sep:
        return SplitSpec("iid")
    if kind == "dirichlet" and sep:
        try:
            alpha = float(arg)
        except ValueError:
            alpha = math.nan
        if not math.isfinite(alpha) or alpha <= 0:
            raise ConfigError(f"bad split {spec!r}: ALPHA must be a positive number; "
                              f"expected {SPLIT_SYNTAX}")
        return SplitSpec("dirichlet", alpha)
    if kind == "shards" and sep:
        if not arg.isdigit() or int(arg) < 1:
            raise ConfigError(f"bad split {spec!r}: K must be an integer >= 1; "
                              f"expected {SPLIT_SYNTAX}")
        return SplitSpec("shards", float(int(arg)))
    raise ConfigError(f"bad split {spec!r}: expected {SPLIT_SYNTAX}")


def _rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def _iid(n: int, num_peers: int, rng: np.random.Generator) -> list[npt.NDArray[np.int64]]:
    perm = rng.permutation(n).astype(np.int64)
    return list(np.array_split(perm, num_peers))


def _dirichlet(
    labels: npt.NDArray[np.int64], num_peers: int, alpha: float, rng: np.random.Generator
) -> list[npt.NDArray[np.int64]]:
    parts: list[list[npt.NDArray[np.int64]]] = [[] for _ in range(num_peers)]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c).astype(np.int64)
        idx = idx[rng.permutation(len(idx))]
        q = rng.dirichlet(np.full(num_peers, alpha))
        cuts = np.floor(np.cumsum(q)[:-1] * len(idx)).astype(np.int64)
        for p, chunk in enumerate(np.split(idx, np.clip(cuts, 0, len(idx)))):
            parts[p].append(chunk)
    out = [np.concatenate(p) if p else np.empty(0, np.int64) for p in parts]
    # deterministic top-up: the lowest empty peer takes the last index of the largest
    while True:
        empty = [p for p, a in enumerate(out) if len(a) == 0]
        if not empty:
            break
        donor = int(np.argmax([len(a) for a in out]))
        out[empty[0]] = out[donor][-1:]
        out[donor] = out[donor][:-1]
    return out


def _shards(
    labels: npt.NDArray[np.int64], num_peers: int, k: int, rng: np.random.Generator
) -> list[npt.NDArray[np.int64]]:
    order = np.argsort(labels, kind="stable").astype(np.int64)
    shards = np.array_split(order, num_peers * k)
    perm = rng.permutation(num_peers * k)
    return [
        np.concatenate([shards[s] for s in perm[i * k:(i + 1) * k]]) for i in range(num_peers)
    ]


def split_indices(
    labels: npt.ArrayLike, num_peers: int, spec: str | SplitSpec = "iid", seed: int = 0
) -> list[npt.NDArray[np.int64]]:
    """Split ``range(len(labels))`` across ``num_peers`` peers by ``spec`` (see module doc).

    Returns ``num_peers`` sorted int64 index arrays, disjoint, covering all indices,
    each non-empty. Raises ConfigError for a bad spec, ``num_peers < 1``, or fewer
    samples than peers (``num_peers * K`` shards for ``shards:K``).
    """
    parsed = parse_split(spec)
    y = np.asarray(labels).astype(np.int64, copy=False).reshape(-1)
    n = len(y)
    if num_peers < 1:
        raise ConfigError(f"num_peers must be >= 1, got {num_peers}")
    need = num_peers * (int(parsed.param or 1) if parsed.kind == "shards" else 1)
    if n < need:
        raise ConfigError(
            f"split {parsed} of {n} samples across {num_peers} peers needs >= {need} samples"
        )
    rng = _rng(seed)
    if parsed.kind == "iid":
        parts = _iid(n, num_peers, rng)
    elif parsed.kind == "dirichlet":
        parts = _dirichlet(y, num_peers, float(parsed.param or 0.0), rng)
    else:
        parts = _shards(y, num_peers, int(parsed.param or 1), rng)
    return [np.sort(p).astype(np.int64, copy=False) for p in parts]
