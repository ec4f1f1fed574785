"""RoundStats: what one round's metrics need, gathered as the peers merge it.

The simulator used to keep a copy of every peer's merged model per pending round
(one model copy per peer, 1 GB at 10,000 MLP peers) and stack them at the end.
Instead, per group (honest learners, Byzantine learners) it accumulates, in float64,

    n,   S1 = sum_i (x_i - c),   S2 = sum_i ||x_i - c||^2

(c = the round's first merged model, a fixed reference point close to the mean, so
the difference below does not cancel catastrophically; identical models give
exactly 0), so that consensus_distance = sqrt(mean_i ||x_i - x̄||^2) =
sqrt(S2/n - ||S1/n||^2) (clamped at 0), and keeps copies only of the rows it must
look at again: the
evaluated sample (``eval_rows``), and every row when peers can leave before the
round completes (``keep_all``: a timeline), so a departed peer's contribution can be
taken out. Metrics are over the honest group, or over everyone when no honest
learner merged the round (as before).
"""

from __future__ import annotations

import math
from collections.abc import Collection

import torch


class _Group:
    def __init__(self, d: int) -> None:
        self.n = 0
        self.s1 = torch.zeros(d, dtype=torch.float64)
        self.s2 = 0.0

    def add(self, x: torch.Tensor, c: torch.Tensor, sign: int) -> None:
        x64 = x.to(torch.float64) - c
        self.n += sign
        self.s1.add_(x64, alpha=sign)
        self.s2 += sign * float(x64.dot(x64))

    def consensus(self) -> float:
        if self.n <= 0:
            return 0.0
        mean = self.s1 / self.n
        return math.sqrt(max(0.0, self.s2 / self.n - float(mean.dot(mean))))


class RoundStats:
    """Accumulated metrics inputs of one round; see module docstring."""

    def __init__(self, d: int, eval_rows: Collection[int], keep_all: bool) -> None:
        self._d = d
        self._eval = eval_rows
        self._keep_all = keep_all
        self.members: dict[int, bool] = {}  # peer -> Byzantine?
        self.rows: dict[int, torch.Tensor] = {}
        self._groups = {False: _Group(d), True: _Group(d)}
        self._c: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.members)

    def add(self, i: int, x: torch.Tensor, byzantine: bool) -> None:
        """Peer i merged this round with model x (a later merge replaces the earlier
        one when its row was kept; else the first one stands)."""
        if i in self.members:
            if i not in self.rows:
                return
            self.remove(i)
        if self._c is None:
            self._c = x.to(torch.float64)  # a new tensor
        self.members[i] = byzantine
        self._groups[byzantine].add(x, self._c, +1)
        if self._keep_all or i in self._eval:
            self.rows[i] = x.clone()

    def remove(self, i: int) -> None:
        """Take peer i out (it left before the round completed); needs its row."""
        byz = self.members.pop(i)
        assert self._c is not None
        self._groups[byz].add(self.rows.pop(i), self._c, -1)

    def group(self) -> tuple[list[int], float]:
        """(peers the metrics are over, consensus distance): the honest members, or all
        members when there is none."""
        honest = sorted(p for p, b in self.members.items() if not b)
        if honest:
            return honest, self._groups[False].consensus()
        both = _Group(self._d)
        for g in self._groups.values():
            both.n += g.n
            both.s1 += g.s1
            both.s2 += g.s2
        return sorted(self.members), both.consensus()
