"""RuleMerger: a peer's merge hook (rule or stateful defense, degrade, poison guard).

    x_new = rule({own} ∪ updates; f)              (rumor.aggregation, or FedAvg's
                                                  sample-weighted mean on a server)

with three guarantees on top of the rule:

- small views degrade: when the view is too small for the rule with ``f`` (n <= 2f
  for median, trimmed mean, centered clipping; n <= 2f + 2 for Krum), the rule runs
  with the largest f' < f it accepts (down to 0) and the outcome carries a
  ``small_view`` event (counted by the runtime); a run never aborts on it;
- poison through overflow is not adopted: if x_new holds NaN/Inf or |x| > max_abs,
  the previous model is kept and the outcome is ``rejected``;
- a ``step`` below 1 (compressed gossip's gamma) moves only that far:
  x_new = own + step (x_rule - own);
- gossiping defenses (SybilWall) get the relayed vectors before the merge and their
  picks to forward come back as ``forward``.

A final-merge step (``Merge.final``, rumor.protocols.schedule) is gossip averaging
whatever the rule: x_new = mean({own} ∪ updates), equal weights, no defense (its state
is left as it was); the poison guard still applies. Its goal is the global average of
all models, which a robust rule does not compute.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rumor import aggregation
from rumor.aggregation import batched
from rumor.aggregation.layout import Layout
from rumor.aggregation.sybilwall import Forwarded
from rumor.node.alloc import block_rows
from rumor.node.merging import FEDAVG, is_stateful, merge_updates, resolve_rule
from rumor.protocols.errors import AggregationError
from rumor.protocols.events import Merge, Relay, Vector
from rumor.protocols.hooks import Evaluator, MergeOutcome


class Workspace:
    """Float32 buffers kept from call to call (``take(name, rows, d)`` returns a view
    of at least that size, grown by a quarter when too small): large fresh allocations
    cost page faults that, on a VM, are slower than the arithmetic on them."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def take(self, name: str, rows: int, d: int) -> np.ndarray:
        buf = self._buffers.get(name)
        if buf is None or buf.shape[1] != d or buf.shape[0] < rows:
            buf = self._buffers[name] = np.empty((rows + rows // 4, d), dtype=np.float32)
        return buf[:rows]


class RuleMerger:
    """One peer's merger; holds its stateful defense when the rule has one."""

    def __init__(
        self,
        aggregator: str,
        *,
        f: int,
        layout: Layout,
        rule_params: dict[str, Any] | None = None,
        seed: int = 0,
        max_abs: float = 1e6,
        evaluator: Evaluator | None = None,
    ) -> None:
        self.aggregator = aggregator
        self.f = f
        self.layout = layout
        self.params = dict(rule_params or {})
        self.max_abs = max_abs
        self.rule = resolve_rule(aggregator)
        self.defense: aggregation.Defense | None = None
        if is_stateful(aggregator):
            # what the engine knows about this peer, for defenses whose factory asks
            # for it by name (SybilWall/Bristle: seed; Bristle: evaluator, layout)
            context = {"seed": seed, "evaluator": evaluator, "layout": layout}
            accepted = inspect.signature(aggregation.DEFENSES[aggregator]).parameters
            params = {**{k: v for k, v in context.items() if k in accepted}, **self.params}
            self.defense = aggregation.make_defense(aggregator, **params)

    @property
    def forwards(self) -> bool:
        """True when the merge may name received vectors to forward (HISTORY)."""
        return hasattr(self.defense, "take_outbox")

    @property
    def fedavg(self) -> bool:
        return self.aggregator == FEDAVG

    def batch_key(self, cmd: Merge) -> tuple[Any, ...] | None:
        """What makes ``cmd`` mergeable in one batch with others of the same key (a
        linear rule, rumor.aggregation.batched), or None: merge it alone. A final-merge
        step is the plain mean whatever the rule; defenses, FedAvg and catch-up merges
        are never batched."""
        if cmd.local or cmd.catch_up_to is not None:
            return None
        name, params = ("mean", {}) if cmd.final else (self.aggregator, self.params)
        if not cmd.final and self.rule is None:  # a stateful defense or FedAvg
            return None
        if not batched.supports(name, params):
            return None
        step = 1.0 if cmd.final else cmd.step  # a final merge takes the whole mean
        return (name, tuple(sorted(params.items())), self.layout, self.max_abs, step)

    @staticmethod
    def merge_batch(key: tuple[Any, ...], owns: Sequence[Vector], cmds: Sequence[Merge],
                    workspace: Workspace | None = None) -> list[MergeOutcome]:
        """The outcomes of ``cmds`` (all of batch key ``key``; owns[g] is the own model
        of cmds[g]): what ``merge`` gives each, up to float summation order, computed
        as sparse products (rumor.aggregation.batched) over blocks of receivers. The
        update vectors are stacked once however many receivers share them (by
        address), into ``workspace``'s buffers when given (reused from call to call);
        each block's result is a new tensor whose rows are the outcomes' vectors."""
        ws = workspace or Workspace()
        name, params, layout, max_abs, step = key
        slot: dict[tuple[int, tuple[int, ...], str], int] = {}
        vectors: list[Vector] = []
        members: list[list[int]] = []
        for cmd in cmds:
            row = []
            for u in cmd.updates:
                # by address: receivers of one broadcast hold views of the same bytes
                # (distinct array objects); every command keeps its arrays alive here
                arr = np.asarray(u.vector)
                at = (arr.__array_interface__["data"][0], arr.strides, arr.dtype.str)
                j = slot.get(at)
                if j is None:
                    j = slot[at] = len(vectors)
                    vectors.append(u.vector)
                row.append(j)
            members.append(row)
        d = len(owns[0]) if len(owns) else 0
        pool_np = ws.take("pool", len(vectors), d)
        if vectors:
            np.stack(vectors, out=pool_np)
        pool = torch.from_numpy(pool_np)
        pool_var = batched.input_variances(name, pool, layout)
        own_weight = dict(params).get("own_weight", 0.5)
        outcomes: list[MergeOutcome] = []
        block = block_rows(d)
        for k in range(0, len(cmds), block):
            own_np = ws.take("own", len(cmds[k:k + block]), d)
            np.stack([np.asarray(v, dtype=np.float32) for v in owns[k:k + block]],
                     out=own_np)
            own = torch.from_numpy(own_np)
            out = batched.merge_many(name, own, pool, members[k:k + block],
                                     layout=layout, own_weight=own_weight,
                                     pool_variances=pool_var)
            if step != 1.0:
                out -= own
                out *= step
                out += own
            # reductions only (no (G, d) temporaries): a NaN or Inf makes the sum
            # non-finite
            bad = ~torch.isfinite(out.sum(dim=1))
            if d:
                bad |= torch.maximum(out.amax(dim=1), -out.amin(dim=1)) > max_abs
            for g, cmd in enumerate(cmds[k:k + block]):
                if bool(bad[g]):
                    outcomes.append(MergeOutcome(own_np[g].copy(), (), True,
                                                 (("poisoned_merge", {"round": cmd.round}),)))
                else:
                    outcomes.append(MergeOutcome(out[g].numpy()))
        return outcomes

    def merge(self, own: Vector, cmd: Merge) -> MergeOutcome:
        own_t = torch.from_numpy(np.ascontiguousarray(own, dtype=np.float32))
        events: list[tuple[str, dict[str, Any]]] = []
        if cmd.final:
            vecs = [own_t, *(torch.from_numpy(np.array(u.vector, dtype=np.float32))
                             for u in cmd.updates)]
            return self._guard(torch.stack(vecs).mean(0), own_t, (), events, cmd.round)
        receive = getattr(self.defense, "receive", None)
        if receive is not None and cmd.forwarded:
            receive([Forwarded(r.origin, r.round, torch.from_numpy(
                np.array(r.vector, dtype=np.float32)), r.hops)
                for r in cmd.forwarded if r.vector is not None])
        out: torch.Tensor | None = None
        for f in range(self.f, -1, -1):
            try:
                out = merge_updates(self.aggregator, self.rule, own_t, cmd.updates, f=f,
                                    layout=self.layout, params=self.params,
                                    defense=self.defense, round_=cmd.round)
            except AggregationError as exc:
                if f == 0:
                    events.append(("merge_failed", {"round": cmd.round, "error": str(exc)}))
                continue
            if f != self.f:
                events.append(("small_view", {"round": cmd.round, "n": len(cmd.updates) + 1,
                                              "f": self.f, "used_f": f}))
            break
        forward: tuple[Relay, ...] = ()
        take = getattr(self.defense, "take_outbox", None)
        if take is not None:
            forward = tuple(Relay(x.origin, x.round, x.hops) for x in take())
        if out is None:
            return MergeOutcome(own_t.numpy().copy(), forward, True, tuple(events))
        if cmd.step != 1.0:  # Choco's consensus step (compressed gossip)
            out = own_t + cmd.step * (out.to(torch.float32) - own_t)
        return self._guard(out, own_t, forward, events, cmd.round)

    def _guard(self, out: torch.Tensor, own_t: torch.Tensor, forward: tuple[Relay, ...],
               events: list[tuple[str, dict[str, Any]]], round_: int) -> MergeOutcome:
        """Adopt ``out`` unless it is not finite or absurdly large (keep own)."""
        if not bool(torch.isfinite(out).all()) or (
                out.numel() > 0 and float(out.abs().max()) > self.max_abs):
            events.append(("poisoned_merge", {"round": round_}))
            return MergeOutcome(own_t.numpy().copy(), forward, True, tuple(events))
        return MergeOutcome(out.detach().to(torch.float32).numpy(), forward, False,
                            tuple(events))
