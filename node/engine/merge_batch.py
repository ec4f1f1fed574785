"""MergeBatch: the Merges of many peers at one virtual instant, computed together.

A runtime that runs many peers in one process (the simulator) hands each executor the
same batch. ``offer(executor, cmd)`` keeps a Merge whose merger has a batch key
(``RuleMerger.batch_key``: a linear rule, rumor.aggregation.batched) instead of
computing it; ``flush()`` computes every kept merge, one sparse product per key, and
gives each executor its outcome in the order the merges were offered
(``CommandExecutor.finish_merge``: adopt, then MergeDone).

The runtime must flush before anything can observe a kept merge: before the next event
of a peer that has one (``holds``), before any event of a later instant (the follow-ups
of MergeDone then run at the merge's own instant), and before it reads models
(training, evaluation, the end of the run). Between offer and flush nothing reads the
merged vector, so computing it late gives what computing it at once gives, up to float
summation order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumor.node.engine.merger import RuleMerger, Workspace
from rumor.protocols.events import Merge
from rumor.protocols.hooks import MergeOutcome

if TYPE_CHECKING:
    from rumor.node.engine.executor import CommandExecutor


class MergeBatch:
    """Kept merges, in offer order; see the module docstring."""

    def __init__(self) -> None:
        self._items: list[tuple[CommandExecutor, Merge, tuple[Any, ...]]] = []
        self._holders: set[int] = set()
        self.workspace = Workspace()
        self.flushes = 0
        self.merged = 0

    def __len__(self) -> int:
        return len(self._items)

    def holds(self, executor: CommandExecutor) -> bool:
        """True when ``executor``'s peer has a merge waiting here."""
        return id(executor) in self._holders

    def offer(self, executor: CommandExecutor, cmd: Merge) -> bool:
        """Keep ``cmd`` (True) when its merger can merge it in a batch; else False."""
        merger = executor.peer.merger
        key = merger.batch_key(cmd) if isinstance(merger, RuleMerger) else None
        if key is None or id(executor) in self._holders:
            return False
        self._items.append((executor, cmd, key))
        self._holders.add(id(executor))
        return True

    def flush(self) -> None:
        """Compute every kept merge and finish each, in offer order."""
        items, self._items, self._holders = self._items, [], set()
        if not items:
            return
        self.flushes += 1
        self.merged += len(items)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for k, (_, _, key) in enumerate(items):
            groups.setdefault(key, []).append(k)
        outcomes: list[MergeOutcome | None] = [None] * len(items)
        for key, ks in groups.items():
            done = RuleMerger.merge_batch(
                key, [items[k][0].backend.own_model() for k in ks],
                [items[k][1] for k in ks], self.workspace)
            for k, outcome in zip(ks, done, strict=True):
                outcomes[k] = outcome
        for (executor, cmd, _), done_one in zip(items, outcomes, strict=True):
            assert done_one is not None
            executor.finish_merge(cmd, done_one)
