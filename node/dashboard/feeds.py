"""What fills a dashboard Board while a run goes on.

- ``MeshFeed``: a launched mesh (``rumor launch``, ``rumor experiment --mode real``).
  Every ``interval`` s it asks each live peer's own API for ``/status`` (round,
  accuracy, neighbours, rejects by reason, bytes sent) and ``/topology`` (its links;
  the mesh's edges are their union), and takes the metrics rows (accuracy, consensus
  distance, bytes per round) and the timeline from the launcher (``Mesh.metrics``,
  ``Mesh.event_listeners``). Killed peers stay on the page, greyed.
- ``SimFeed``: a Simulation, called per completed round (``on_round``): per-peer
  accuracy of the evaluated peers, the links working now (``Simulation.graph_now``),
  the removed peers, the timeline events the simulator applied.
- ``JoinFeed``: one peer of ``rumor join``: itself and its neighbours, its own rounds.

``describe(record)`` turns an events.jsonl record into a timeline line (or None for
the per-peer chatter: ready, round, reject, ...); the replay uses it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from rumor.node.dashboard.state import Board, PeerInfo, mark_partitioned

if TYPE_CHECKING:  # the replay needs none of them (and no torch import)
    from rumor.node.mesh.launcher import Mesh
    from rumor.node.runtime import NodeRuntime
    from rumor.node.simulation import Simulation

__all__ = ["MAX_DRAWN", "JoinFeed", "MeshFeed", "SimFeed", "describe"]

MAX_DRAWN = 400  # peers drawn in the mesh graph (the page stays responsive)
TIMELINE = {"AddPeers", "RemovePeers", "Partition", "Heal", "RemoveLinks", "AddLinks",
            "Churn", "CrashWave"}


def describe(rec: Mapping[str, Any]) -> tuple[str, str] | None:
    """(event, text) of a record worth a timeline line, or None."""
    kind = str(rec.get("event", ""))
    i = rec.get("i")
    if rec.get("peer") == -1 or kind in TIMELINE:
        parts = []
        if rec.get("peers"):
            peers = list(rec["peers"])
            shown = ", ".join(str(p) for p in peers[:8]) + (" ..." if len(peers) > 8 else "")
            parts.append(f"peers {shown}")
        if rec.get("groups"):
            parts.append("groups " + " | ".join(
                ",".join(str(p) for p in g[:6]) + ("..." if len(g) > 6 else "")
                for g in rec["groups"]))
        if rec.get("alive") is not None:
            parts.append(f"{rec['alive']} present")
        if rec.get("components") is not None:
            parts.append(f"{rec['components']} component(s)")
        return kind, "; ".join(parts) or kind
    if kind == "go":
        return kind, "all peers up: rounds started"
    if kind == "kill":
        return kind, f"peer {i} killed (SIGKILL)"
    if kind == "restart":
        return kind, f"peer {i} restarted from its data dir"
    if kind == "worker_exit" and rec.get("code") not in (0, -9, None):
        return kind, f"worker {rec.get('worker')} exited with code {rec.get('code')}"
    if kind in ("error", "failure"):
        what = rec.get("message") or rec.get("error") or ""
        return kind, f"peer {i}: {what}" if i is not None else str(what)
    if kind in ("poisoned_merge", "merge_failed"):
        return kind, f"peer {i if i is not None else rec.get('peer')}: {kind}"
    return None


def _short(peer_id: str) -> str:
    return peer_id[-6:] if peer_id else ""


class MeshFeed:
    """Polls a launched mesh's peers and publishes what the page shows."""

    def __init__(self, mesh: Mesh, board: Board, *, interval: float | None = None,
                 byzantine: frozenset[int] = frozenset()) -> None:
        self.mesh = mesh
        self.board = board
        self.interval = interval if interval is not None else max(1.0, mesh.n / 32)
        self.byzantine = byzantine or mesh.config.excluded
        self._status: dict[int, dict[str, Any]] = {}
        self._links: dict[int, set[str]] = {}
        self._wake = asyncio.Event()
        self._rows_seen = 0
        mesh.listeners.append(self._wake.set)
        mesh.event_listeners.append(self.on_event)

    def on_event(self, rec: dict[str, Any]) -> None:
        got = describe(rec)
        if got is not None:
            self.board.add_event(got[0], got[1], t=rec.get("t"))

    async def run(self) -> None:
        """Until cancelled: poll every ``interval`` s, publish at every change."""
        timeout = aiohttp.ClientTimeout(total=max(2.0, self.interval * 2))
        last_poll = 0.0
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                if time.monotonic() - last_poll >= self.interval:
                    last_poll = time.monotonic()
                    await self.poll(session)
                self.publish()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval)
                await asyncio.sleep(0.1)  # coalesce bursts of round events

    async def poll(self, session: aiohttp.ClientSession) -> None:
        """Ask every live peer for /status and /topology (a peer that does not answer
        keeps its last answer; a dead one loses its links)."""
        live = [p for p in self.mesh.peers if p.alive and p.ready and p.api]
        for p in self.mesh.peers:
            if not p.alive:
                self._links.pop(p.index, None)

        async def one(i: int, api: str) -> None:
            try:
                async with session.get(f"{api}/status") as r:
                    self._status[i] = await r.json()
                async with session.get(f"{api}/topology") as r:
                    topo = await r.json()
                me = self._status[i].get("peer_id")
                self._links[i] = {b if a == me else a for a, b in topo.get("edges", [])}
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass

        await asyncio.gather(*(one(p.index, p.api) for p in live))

    def publish(self, status: str | None = None, detail: str = "") -> None:
        mesh = self.mesh
        index = {p.peer: p.index for p in mesh.peers if p.peer}
        peers: list[PeerInfo] = []
        rejects: Counter[str] = Counter()
        for p in mesh.peers:
            st = self._status.get(p.index, {})
            for reason, n in dict(st.get("rejects", {})).items():
                rejects[reason] += int(n)
            state = ("starting" if p.index in mesh.rejoining  # restarted, not up yet
                     else "killed" if not p.alive else "starting" if not p.ready
                     else "finished" if p.finished else "alive")
            peers.append(PeerInfo(
                i=p.index, label=str(p.index), peer=p.peer, round=p.round, acc=p.acc,
                state=state, byzantine=p.index in self.byzantine,
                neighbours=len(st.get("neighbours", ())) if st else p.neighbours,
                bytes_sent=int(st.get("bytes_sent", p.bytes_sent)) if st else p.bytes_sent,
                rejects=sum(int(v) for v in dict(st.get("rejects", {})).values())
                if st else p.rejects,
            ))
        alive = {p.index for p in mesh.peers if p.alive}
        edges = [(i, index[o]) for i, links in self._links.items() if i in alive
                 for o in links if o in index and index[o] in alive]
        mark_partitioned(peers, edges)
        if status is None:
            status = "running" if mesh.went else "starting"
        self.board.update(peers=peers, edges=edges, rows=list(mesh.metrics.rows),
                          rejects=rejects, status=status, detail=detail,
                          rounds_target=mesh.rounds)

    def finish(self, stopped: str | None) -> None:
        """The run ended: the page says so (and keeps the last state)."""
        self.publish("finished" if stopped in (None, "done") else "stopped", stopped or "")


class SimFeed:
    """Publishes a Simulation's state after every completed round."""

    def __init__(self, sim: Simulation, board: Board) -> None:
        self.sim = sim
        self.board = board
        self._seen = 0  # sim.events read so far
        cfg = sim.config
        self.bad = set(sim.byzantine) | set(sim.sybil_ids)
        board.update(status="running", rounds_target=cfg.rounds)
        self.publish()

    def on_round(self, m: Any) -> None:
        self.publish()

    def publish(self, status: str = "running", detail: str = "") -> None:
        sim = self.sim
        events = sim.events
        while self._seen < len(events):
            rec = events[self._seen]
            self._seen += 1
            if rec.get("peer") == -1:
                got = describe(rec)
                if got is not None:
                    self.board.add_event(got[0], got[1], t=rec.get("t"))
        drawn = min(sim.total, MAX_DRAWN)
        g = sim.graph_now
        peers = []
        for i in range(drawn):
            p = sim.peers[i]
            alive = i in sim.alive
            peers.append(PeerInfo(
                i=i, label=str(i), peer=sim.ids[i].peer_id, round=p.round,
                acc=sim.peer_accuracy.get(i), byzantine=i in self.bad,
                state="alive" if alive else "killed",
                neighbours=len(p.neighbours) if alive else 0,
                rejects=sum(p.validator.rejects.values()),
            ))
        edges = [(int(a), int(b)) for a, b in g.edges() if a < drawn and b < drawn
                 and a in sim.alive and b in sim.alive]
        mark_partitioned(peers, edges)
        self.board.update(peers=peers, edges=edges, rows=list(sim.metrics),
                          rejects=sim.reject_counts(), status=status, detail=detail)

    def finish(self, complete: bool, detail: str = "") -> None:
        self.publish("finished" if complete else "stopped", detail)


class JoinFeed:
    """One peer of ``rumor join``: itself, its neighbours, its own rounds."""

    def __init__(self, rt: NodeRuntime, board: Board, *, interval: float = 1.0) -> None:
        self.rt = rt
        self.board = board
        self.interval = interval

    async def run(self) -> None:
        while True:
            self.publish()
            await asyncio.sleep(self.interval)

    def publish(self, status: str | None = None, detail: str = "") -> None:
        s = self.rt.status()
        me = str(s["peer_id"])
        nbrs = list(s.get("neighbours", []))
        peers = [PeerInfo(0, "me " + _short(me), me, int(s.get("round", 0)),
                          s.get("last_accuracy"), neighbours=len(nbrs),
                          bytes_sent=int(s.get("bytes_sent", 0)),
                          rejects=sum(int(v) for v in dict(s.get("rejects", {})).values()))]
        peers += [PeerInfo(k + 1, _short(n), n, state="alive") for k, n in enumerate(nbrs)]
        rows: list[dict[str, Any]] = []
        prev_bytes = 0
        for h in self.rt.history:
            acc = float(h["acc"])
            rows.append({"round": h["round"], "acc_mean": acc, "acc_min": acc,
                         "acc_max": acc, "consensus_distance": None,
                         "bytes_sent": int(h["bytes_sent"]) - prev_bytes,
                         "messages": None, "rejects": h["rejects"],
                         "peers_alive": 1})
            prev_bytes = int(h["bytes_sent"])
        if status is None:
            status = "finished" if s.get("finished") else "running"
        self.board.update(peers=peers, edges=[(0, k + 1) for k in range(len(nbrs))],
                          rows=rows, rejects=dict(s.get("rejects", {})), status=status,
                          detail=detail, rounds_target=self.rt.peer.config.rounds)
