"""How fast a late joiner catches up on a real mesh, from the run's events.

Inputs: the launched peers' events (``events.jsonl`` of a launch: ``round`` events with
``senders``, ``reject`` events with ``from`` / ``reason``, ``peer_connected``; each with
``t``, seconds since the launch started) and the joiner's own ``round`` events with
their ``t`` on the same clock.

Definitions (mesh round at time t = the highest round any launched peer finished by t):

- ``joined_round``: the mesh round when a launched peer first saw the joiner connect.
- ``accepted_round``: the mesh round from which on the launched peers accept the
  joiner's updates: that of the last ``stale`` reject of one of its messages (the
  joined round when there was none); ``rounds_to_accept = accepted_round -
  joined_round``.
- ``first_merged_round``: the mesh round when a launched peer first merged one of the
  joiner's updates (a merge takes the first ``min_updates`` to arrive, so an accepted
  update is not always merged).
- ``stale_rejects``: launched peers' ``stale`` rejects of the joiner's messages (all
  of them, and per launched peer the most); before the PULL/STATE catch-up a joiner at
  round 0 drew ~340 of them per peer.
- ``rounds_to_accuracy``: joiner rounds after ``joined_round`` until its accuracy is
  within ``tolerance`` of the launched peers' mean accuracy of the same round.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CatchUpReport", "catch_up_report", "read_events"]


@dataclass(frozen=True)
class CatchUpReport:
    joiner: str
    joined_round: int | None
    accepted_round: int | None
    rounds_to_accept: int | None
    first_merged_round: int | None
    stale_rejects: int
    max_stale_rejects_per_peer: int
    other_rejects: dict[str, int]
    joiner_first_round: int | None  # the first round the joiner finished (after its jump)
    caught_up_to: int | None  # the round its catch-up merge jumped to, if any
    rounds_to_accuracy: int | None
    merged_by: int  # launched peers that merged at least one of its updates

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_events(path: Path) -> list[dict[str, Any]]:
    """The records of an events.jsonl file (unreadable lines skipped)."""
    out: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _mesh_round_at(rounds: list[tuple[float, int]], t: float) -> int:
    best = 0
    for when, r in rounds:
        if when > t:
            break
        best = max(best, r)
    return best


def catch_up_report(mesh_events: Iterable[dict[str, Any]], joiner: str,
                    joiner_rounds: Iterable[dict[str, Any]], *,
                    tolerance: float = 0.02) -> CatchUpReport:
    events = sorted(mesh_events, key=lambda e: float(e.get("t", 0.0)))
    rounds = [(float(e["t"]), int(e["round"])) for e in events if e.get("event") == "round"]
    accs: dict[int, list[float]] = defaultdict(list)
    for e in events:
        if e.get("event") == "round" and e.get("acc") is not None:
            accs[int(e["round"])].append(float(e["acc"]))
    joined_t = next((float(e["t"]) for e in events if e.get("event") == "peer_connected"
                     and e.get("peer") == joiner), None)
    merged_t = next((float(e["t"]) for e in events if e.get("event") == "round"
                     and joiner in (e.get("senders") or [])), None)
    stale_t = [float(e["t"]) for e in events if e.get("event") == "reject"
               and e.get("from") == joiner and e.get("reason") == "stale"]
    merged_by = len({e.get("i") for e in events if e.get("event") == "round"
                     and joiner in (e.get("senders") or [])})
    rejects: Counter[str] = Counter()
    stale_by_peer: Counter[Any] = Counter()
    for e in events:
        if e.get("event") == "reject" and e.get("from") == joiner:
            reason = str(e.get("reason"))
            rejects[reason] += 1
            if reason == "stale":
                stale_by_peer[e.get("i")] += 1
    joined = None if joined_t is None else _mesh_round_at(rounds, joined_t)
    accepted = None if joined is None else max(
        [joined, *(_mesh_round_at(rounds, t) for t in stale_t)])
    merged = None if merged_t is None else _mesh_round_at(rounds, merged_t)
    own = sorted((e for e in joiner_rounds if e.get("event") == "round"),
                 key=lambda e: int(e["round"]))
    jump = next((int(e["catch_up_to"]) for e in own if e.get("catch_up_to") is not None), None)
    to_acc = None
    if joined is not None:
        for e in own:
            r = int(e["round"])
            if r <= joined or r not in accs or e.get("acc") is None:
                continue
            if float(e["acc"]) >= statistics.fmean(accs[r]) - tolerance:
                to_acc = r - joined
                break
    stale = rejects.pop("stale", 0)
    return CatchUpReport(
        joiner=joiner,
        joined_round=joined,
        accepted_round=accepted,
        rounds_to_accept=None if joined is None or accepted is None else accepted - joined,
        first_merged_round=merged,
        stale_rejects=stale,
        max_stale_rejects_per_peer=max(stale_by_peer.values(), default=0),
        other_rejects=dict(rejects),
        joiner_first_round=int(own[0]["round"]) if own else None,
        caught_up_to=jump,
        rounds_to_accuracy=to_acc,
        merged_by=merged_by,
    )
