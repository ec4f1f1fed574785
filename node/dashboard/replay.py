"""A finished run on the dashboard: its files played back round by round.

``load_run(RUN_DIR)`` reads metrics.csv (required), events.jsonl and summary.json, and
tells two kinds of run apart by their events:

- a mesh run (``rumor launch``, ``rumor experiment --mode real``): the workers' records
  carry ``i`` (the peer's index). ``ready`` names each peer, ``round`` gives its round,
  accuracy, neighbour count and bytes sent, ``peer_connected`` / ``peer_disconnected``
  are its links, ``kill`` / ``restart`` its faults, ``reject`` its rejects by reason.
  Row r is shown with every record up to ``t(go) + time(r)``.
- a simulated run (``rumor simulate``, ``rumor experiment --mode sim``): the graph is
  rebuilt from the summary's topology, peers and seed, and, when scenario.toml is next
  to it, changed by the scenario's timeline as its events (``peer == -1``) fired;
  row r is shown with every record up to its virtual time. The simulator records no
  per-peer accuracy, so every live peer is coloured by the round's mean (the page's
  detail line says so).

``Replayer.show(k)`` publishes the state after the first k rows; ``play(speed)`` steps
through them at ``speed`` rounds per second (0: the final state at once).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from rumor.node.dashboard.feeds import MAX_DRAWN, describe
from rumor.node.dashboard.state import MAX_EVENTS, Board, PeerInfo, mark_partitioned
from rumor.node.results import read_metrics_csv
from rumor.protocols.errors import ConfigError
from rumor.topology import TimelineEvent, apply_events, build_topology

__all__ = ["Replayer", "RunData", "load_run"]


@dataclass
class RunData:
    path: Path
    title: str
    kind: str  # "mesh" | "sim"
    rows: list[dict[str, float]]
    events: list[dict[str, Any]]
    summary: dict[str, Any]
    peers: int
    byzantine: frozenset[int] = frozenset()
    graph: nx.Graph | None = None  # sim: the topology at the start
    timeline: list[TimelineEvent] = field(default_factory=list)  # sim: the scenario's


def _read_events(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not path.exists():
        return out
    with path.open() as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn last line of an interrupted run
            if isinstance(rec, dict):
                out.append(rec)
    return out


def load_run(run_dir: Path) -> RunData:
    """Read a run directory; ConfigError when it holds no metrics.csv."""
    metrics = run_dir / "metrics.csv"
    if not metrics.is_file():
        raise ConfigError(f"{run_dir}: no metrics.csv (not a run directory of rumor "
                          "simulate, launch or experiment)")
    try:
        rows = read_metrics_csv(metrics)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"{metrics}: unreadable: {exc}") from None
    summary: dict[str, Any] = {}
    if (run_dir / "summary.json").is_file():
        try:
            summary = json.loads((run_dir / "summary.json").read_text())
        except ValueError:
            summary = {}
    events = _read_events(run_dir / "events.jsonl")
    cfg = summary.get("config", {})
    title = str(summary.get("scenario") or run_dir.name)
    byz = frozenset(int(b) for b in summary.get("byzantine", []) or [])
    mesh = any("i" in e for e in events)
    if mesh:
        n = int(summary.get("peers") or cfg.get("peers") or
                1 + max((int(e["i"]) for e in events if isinstance(e.get("i"), int)),
                        default=-1))
        return RunData(run_dir, title, "mesh", rows, events, summary, n, byz)
    n = int(cfg.get("peers") or summary.get("peers") or 0)
    graph: nx.Graph | None = None
    timeline: list[TimelineEvent] = []
    if n and cfg.get("topology"):
        try:
            graph = build_topology(str(cfg["topology"]), n, int(cfg.get("seed", 0)))
        except Exception:  # a file: topology that moved, ...: draw no links
            graph = None
    scenario = run_dir / "scenario.toml"
    if scenario.is_file() and graph is not None:
        from rumor.node.scenario import load_scenario  # imports the simulator (torch)

        keep = {k: cfg[k] for k in ("peers", "seed", "topology", "rounds") if k in cfg}
        try:
            timeline = list(load_scenario(scenario, keep).config.timeline)
        except Exception:
            timeline = []
    return RunData(run_dir, title, "sim", rows, events, summary, n, byz, graph, timeline)


class Replayer:
    """Publishes a RunData's state as of a given row."""

    def __init__(self, run: RunData, board: Board) -> None:
        self.run = run
        self.board = board
        mode = "replay (simulated)" if run.kind == "sim" else "replay (mesh)"
        board.reset(f"{run.title} (replay)", mode, rounds_target=len(run.rows) or None)
        self._go = next((float(e.get("t", 0.0)) for e in run.events
                         if e.get("event") == "go"), 0.0)

    def cutoff(self, k: int) -> float:
        """The event time up to which the first k rows are shown."""
        if k <= 0:
            return self._go
        t = float(self.run.rows[k - 1]["time"])
        return self._go + t if self.run.kind == "mesh" else t

    def show(self, k: int, status: str = "running") -> None:
        run = self.run
        k = max(0, min(k, len(run.rows)))
        until = self.cutoff(k) if k < len(run.rows) else float("inf")
        upto = [e for e in run.events if float(e.get("t", 0.0)) <= until]
        if run.kind == "mesh":
            peers, edges = self._mesh_state(upto)
        else:
            peers, edges = self._sim_state(upto, run.rows[k - 1] if k else None)
        rejects: Counter[str] = Counter(str(e.get("reason", "?")) for e in upto
                                        if e.get("event") == "reject")
        final = run.summary.get("rejects")
        if k == len(run.rows) and not rejects and isinstance(final, dict):
            rejects.update({str(r): int(v) for r, v in final.items()})
        detail = ("per-peer accuracy is not recorded by the simulator: peers show the "
                  "round's mean" if run.kind == "sim" else "")
        self.board.update(peers=peers, edges=edges, rows=run.rows[:k], rejects=rejects,
                          status=status, detail=detail)
        # the timeline so far (rebuilt: the board keeps the latest MAX_EVENTS)
        times = [r["time"] for r in run.rows]
        timeline = []
        for e in upto:
            got = describe(e)
            if got is not None:
                t = float(e.get("t", 0.0))
                rel = t - (self._go if run.kind == "mesh" else 0.0)
                timeline.append((got[0], got[1], t, sum(1 for x in times if x <= rel)))
        self.board.set_events(timeline[-MAX_EVENTS:])

    def _mesh_state(self, upto: list[dict[str, Any]]) -> tuple[list[PeerInfo],
                                                                list[tuple[int, int]]]:
        n = self.run.peers
        peers = [PeerInfo(i, str(i), state="starting", byzantine=i in self.run.byzantine)
                 for i in range(n)]
        links: dict[int, set[str]] = {i: set() for i in range(n)}
        rejects = [0] * n
        for e in upto:
            i = e.get("i")
            if not isinstance(i, int) or not 0 <= i < n:
                continue
            p, kind = peers[i], e.get("event")
            if kind == "ready":
                p.peer, p.state = str(e.get("peer", "")), "alive"
                p.round = int(e.get("start_round", 0))
            elif kind == "round":
                p.round, p.acc = int(e["round"]), float(e["acc"])
                p.neighbours, p.bytes_sent = int(e["neighbours"]), int(e["bytes_sent"])
            elif kind == "peer_connected":
                links[i].add(str(e.get("peer")))
            elif kind == "peer_disconnected":
                links[i].discard(str(e.get("peer")))
            elif kind == "kill":
                p.state = "killed"
                links[i].clear()
            elif kind == "restart":
                p.state = "starting"  # until its new process says ready
            elif kind == "finished":
                p.state = "finished"
            elif kind == "reject":
                rejects[i] += 1
        for p in peers:
            p.rejects = rejects[p.i]
        index = {p.peer: p.i for p in peers if p.peer}
        alive = {p.i for p in peers if p.state in ("alive", "finished")}
        edges = [(i, index[o]) for i, ls in links.items() if i in alive
                 for o in ls if o in index and index[o] in alive]
        mark_partitioned(peers, edges)
        return peers, edges

    def _sim_state(self, upto: list[dict[str, Any]], row: dict[str, float] | None
                   ) -> tuple[list[PeerInfo], list[tuple[int, int]]]:
        run = self.run
        fired = sum(1 for e in upto if e.get("peer") == -1)
        g = run.graph if run.graph is not None else nx.empty_graph(run.peers)
        if run.timeline and fired:
            g = apply_events(g, run.timeline[:fired])
        drawn = min(run.peers, MAX_DRAWN)
        acc = row["acc_mean"] if row is not None else None
        rnd = int(row["round"]) if row is not None else 0
        rejects = Counter(int(e["peer"]) for e in upto
                          if e.get("event") == "reject" and isinstance(e.get("peer"), int))
        peers = []
        for i in range(drawn):
            alive = i in g
            peers.append(PeerInfo(
                i, str(i), state="alive" if alive else "killed",
                acc=acc if alive and i not in run.byzantine else None,
                round=rnd if alive else 0, byzantine=i in run.byzantine,
                neighbours=g.degree(i) if alive else 0, rejects=rejects.get(i, 0)))
        edges = [(int(a), int(b)) for a, b in g.edges() if a < drawn and b < drawn]
        mark_partitioned(peers, edges)
        return peers, edges

    async def play(self, speed: float) -> None:
        """Step through the rows at ``speed`` rounds per second (0: all at once); the
        page then shows the final state as finished."""
        total = len(self.run.rows)
        if speed > 0:
            for k in range(total):
                self.show(k)
                await asyncio.sleep(1.0 / speed)
        self.show(total, status="finished")
