"""The dashboard's snapshot (what ``/api/state`` serves) and the Board that holds it.

A snapshot is one JSON object::

    version        increases with every change (the page redraws when it moves)
    title, mode    e.g. "rumor launch", "launch" | "join" | "experiment-sim" |
                   "experiment-real" | "replay"
    status         "starting" | "running" | "finished" | "stopped"; detail: why
    rounds_target  the run's --rounds (null: until stopped)
    round          the last completed round (the last metrics row)
    peers          [{i, label, peer, round, acc, state, byzantine, neighbours,
                     bytes_sent, rejects}]; state: "starting" | "alive" |
                   "partitioned" (alive, outside the largest connected part of the
                   mesh) | "killed" | "finished"
    edges          [[i, j], ...] current links (i < j, indices into peers)
    rows           metrics.csv rows so far (rumor.node.results columns)
    rejects        {reason: count} over all peers
    events         the latest timeline events [{t, round, event, text}] (oldest first)

Floats that are NaN or infinite become null (the browser's JSON.parse rejects NaN).
The Board is shared between a feed (the simulator's thread, or the launcher's loop) and
the server's loop, so every read and write holds its lock.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

import networkx as nx

__all__ = ["MAX_EVENTS", "Board", "PeerInfo", "clean", "mark_partitioned", "row_dict"]

MAX_EVENTS = 300
STATES = ("starting", "alive", "partitioned", "killed", "finished")


def clean(obj: Any) -> Any:
    """``obj`` with NaN / inf floats replaced by None, tuples as lists (JSON-safe)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    return obj


def row_dict(row: Any) -> dict[str, Any]:
    """A metrics row (a RoundMetrics or a metrics.csv dict) as a JSON-safe dict."""
    d = asdict(row) if is_dataclass(row) and not isinstance(row, type) else dict(row)
    if "round" in d:
        d["round"] = int(d["round"])
    return {k: clean(v) for k, v in d.items()}


@dataclass
class PeerInfo:
    """One node of the mesh drawing."""

    i: int
    label: str
    peer: str = ""
    round: int = 0
    acc: float | None = None
    state: str = "alive"
    byzantine: bool = False
    neighbours: int = 0
    bytes_sent: int | None = None
    rejects: int | None = None


def mark_partitioned(peers: Sequence[PeerInfo], edges: Iterable[tuple[int, int]]) -> None:
    """Set ``state = "partitioned"`` on alive peers outside the largest connected part
    of the alive peers' links (nothing when they form one part)."""
    alive = [p.i for p in peers if p.state in ("alive", "finished")]
    if len(alive) < 2:
        return
    g = nx.Graph()
    g.add_nodes_from(alive)
    keep = set(alive)
    g.add_edges_from((a, b) for a, b in edges if a in keep and b in keep)
    parts = sorted(nx.connected_components(g), key=len, reverse=True)
    if len(parts) < 2:
        return
    main = parts[0]
    for p in peers:
        if p.i in keep and p.i not in main:
            p.state = "partitioned"


class Board:
    """The latest snapshot of one run; thread-safe."""

    def __init__(self, title: str = "rumor", mode: str = "launch") -> None:
        self._lock = threading.Lock()
        self._version = 0
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._state: dict[str, Any] = {
            "title": title, "mode": mode, "status": "starting", "detail": "",
            "rounds_target": None, "round": 0, "peers": [], "edges": [], "rows": [],
            "rejects": {},
        }

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def reset(self, title: str, mode: str, rounds_target: int | None = None) -> None:
        """A new run on the same page (the next scenario of an experiment)."""
        with self._lock:
            self._events.clear()
            self._state.update(title=title, mode=mode, status="starting", detail="",
                               rounds_target=rounds_target, round=0, peers=[], edges=[],
                               rows=[], rejects={})
            self._version += 1

    def update(self, *, peers: Sequence[PeerInfo] | None = None,
               edges: Iterable[tuple[int, int]] | None = None,
               rows: Sequence[Any] | None = None,
               rejects: Mapping[str, int] | None = None,
               **fields: Any) -> None:
        """Replace the parts given (``fields``: title, mode, status, detail,
        rounds_target)."""
        new: dict[str, Any] = {k: clean(v) for k, v in fields.items()}
        if peers is not None:
            new["peers"] = [clean(asdict(p)) for p in peers]
        if edges is not None:
            new["edges"] = sorted({(min(a, b), max(a, b)) for a, b in edges if a != b})
            new["edges"] = [list(e) for e in new["edges"]]
        if rows is not None:
            new["rows"] = [row_dict(r) for r in rows]
            new["round"] = new["rows"][-1]["round"] if new["rows"] else 0
        if rejects is not None:
            new["rejects"] = {str(k): int(v) for k, v in sorted(rejects.items()) if v}
        with self._lock:
            self._state.update(new)
            self._version += 1

    def add_event(self, event: str, text: str, *, t: float | None = None,
                  round_: int | None = None) -> None:
        """One timeline entry; ``round_`` defaults to the last completed round."""
        with self._lock:
            r = self._state["round"] if round_ is None else round_
            self._events.append(clean({"t": t, "round": r, "event": event, "text": text}))
            self._version += 1

    def set_events(self, events: Iterable[tuple[str, str, float | None, int]]) -> None:
        """Replace the timeline with (event, text, t, round) entries (a replay)."""
        with self._lock:
            self._events.clear()
            for event, text, t, r in events:
                self._events.append(clean({"t": t, "round": r, "event": event,
                                           "text": text}))
            self._version += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self._state, "events": list(self._events), "version": self._version}
