"""Looking at a running mesh from outside: its peers' HTTP APIs, its launch directory.

- ``launch_peers(out)``: the peers of a ``rumor launch`` from its --out directory
  (peers.json once rounds started, else the ``ready`` events in events.jsonl);
- ``walk(urls)``: GET /status of every peer reachable from ``urls``, following the
  ``apis`` that GET /peers lists (a launch tells every peer the others' API URLs), and
  listing neighbours whose API nobody named as ``no API known``;
- ``fetch_model(url)``: a peer's current model (GET /model) as (vector, layout, meta);
- ``running_launch(out)`` / ``stop_launch(out)``: the pid in OUT/launch.json (only while
  the launch runs) and a clean stop (SIGTERM: the launcher stops its peers, writes
  summary.json and the final models, then exits), awaited with a deadline.

HTTP with the standard library (urllib), a few seconds' timeout per request, requests
in parallel. Nothing here prints.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rumor.aggregation.layout import Layout
from rumor.node.model_io import layout_from_json, vector_from_b64
from rumor.protocols.errors import ConfigError, RumorError

__all__ = ["LaunchPeer", "PeerStatus", "fetch_model", "get_json", "launch_peers",
           "running_launch", "stop_launch", "walk"]


@dataclass(frozen=True)
class LaunchPeer:
    index: int
    peer: str
    api: str
    addrs: tuple[str, ...] = ()


@dataclass
class PeerStatus:
    """One row of ``rumor status``; ``error`` says why the other fields are unknown."""

    peer: str
    api: str = ""
    index: int | None = None
    round: int | None = None
    phase: str = ""
    accuracy: float | None = None
    neighbours: int | None = None
    rejects: dict[str, int] = field(default_factory=dict)
    timeouts: int | None = None
    bytes_sent: int | None = None
    finished: bool = False
    error: str | None = None

    @property
    def rejects_total(self) -> int:
        return sum(self.rejects.values())

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "peer": self.peer, "api": self.api,
                "round": self.round, "phase": self.phase, "accuracy": self.accuracy,
                "neighbours": self.neighbours, "rejects": self.rejects,
                "timeouts": self.timeouts, "bytes_sent": self.bytes_sent,
                "finished": self.finished, "error": self.error}


def get_json(url: str, timeout: float = 3.0) -> dict[str, Any]:
    """GET ``url`` as a JSON object; RumorError (one line) when that fails."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise RumorError(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RumorError(f"{url}: {reason}") from None
    except ValueError:
        raise RumorError(f"{url}: not JSON") from None
    if not isinstance(data, dict):
        raise RumorError(f"{url}: not a JSON object")
    return data


def base_url(url: str) -> str:
    """``http://h:p`` from ``http://h:p/status`` or ``h:p``; ConfigError if not HTTP."""
    u = url.strip().rstrip("/")
    if "://" not in u:
        u = "http://" + u
    if not u.startswith(("http://", "https://")):
        raise ConfigError(f"not an http URL: {url!r}")
    for tail in ("/status", "/peers", "/topology", "/model", "/history", "/metrics"):
        if u.endswith(tail):
            u = u[: -len(tail)]
    return u


def launch_peers(out: Path) -> list[LaunchPeer]:
    """The peers of the launch whose --out is ``out``; ConfigError if it has none."""
    peers_json = out / "peers.json"
    found: dict[int, LaunchPeer] = {}
    if peers_json.is_file():
        try:
            doc = json.loads(peers_json.read_text())
            for p in doc.get("peers", []):
                found[int(p["index"])] = LaunchPeer(int(p["index"]), str(p["peer"]),
                                                    str(p["api"]), tuple(p.get("addrs", ())))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{peers_json}: unreadable ({exc})") from None
    events = out / "events.jsonl"
    if events.is_file():  # later ready events (restarts, before go) win
        for line in events.read_text(errors="replace").splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if isinstance(e, dict) and e.get("event") == "ready" and isinstance(e.get("i"), int):
                found[e["i"]] = LaunchPeer(e["i"], str(e.get("peer", "")), str(e.get("api", "")),
                                           tuple(e.get("addrs", ())))
    if not found:
        raise ConfigError(f"{out}: no launch there (no peers.json, no ready peers in "
                          "events.jsonl); give the --out of a `rumor launch` or a peer's API URL")
    return [found[i] for i in sorted(found)]


def _status(url: str, timeout: float) -> tuple[PeerStatus, dict[str, str], list[str]]:
    """(this peer's row, the APIs it knows, its neighbours)."""
    s = get_json(f"{url}/status", timeout)
    row = PeerStatus(
        peer=str(s.get("peer_id", "")), api=url, round=s.get("round"),
        phase=str(s.get("phase", "")), accuracy=s.get("last_accuracy"),
        neighbours=len(s.get("neighbours", [])),
        rejects={str(k): int(v) for k, v in dict(s.get("rejects", {})).items()},
        timeouts=s.get("timeouts"), bytes_sent=s.get("bytes_sent"),
        finished=bool(s.get("finished", False)))
    apis: dict[str, str] = {}
    try:
        p = get_json(f"{url}/peers", timeout)
        apis = {str(k): base_url(str(v)) for k, v in dict(p.get("apis", {})).items()}
    except (RumorError, ConfigError, TypeError, ValueError):
        pass  # an older peer without a directory: only its own row
    return row, apis, [str(n) for n in s.get("neighbours", [])]


def walk(urls: Iterable[str], *, timeout: float = 3.0, limit: int = 4096,
         index_of: dict[str, int] | None = None) -> list[PeerStatus]:
    """Every peer reachable from ``urls`` (see the module docstring), by index, then
    PeerID; an unreachable URL is a row with ``error``."""
    todo = list(dict.fromkeys(base_url(u) for u in urls))
    seen_urls = set(todo)
    rows: dict[str, PeerStatus] = {}
    neighbours: set[str] = set()
    by_url: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        while todo and len(seen_urls) <= limit:
            batch, todo = todo, []
            for url, result in zip(batch, pool.map(lambda u: _try(u, timeout), batch),
                                   strict=True):
                if isinstance(result, str):
                    rows[f"url:{url}"] = PeerStatus(peer="", api=url, error=result)
                    continue
                row, apis, nbrs = result
                rows[row.peer or f"url:{url}"] = row
                by_url[url] = row.peer
                neighbours.update(nbrs)
                for pid, api in apis.items():
                    if api not in seen_urls and pid not in rows:
                        seen_urls.add(api)
                        todo.append(api)
    for pid in sorted(neighbours - rows.keys()):
        rows[pid] = PeerStatus(peer=pid, error="no API known")
    index_of = index_of or {}
    for row in rows.values():
        if not row.peer and row.api in by_url:
            row.peer = by_url[row.api]
        row.index = index_of.get(row.peer, index_of.get(row.api))
    return sorted(rows.values(), key=lambda r: (r.index is None, r.index or 0, r.peer, r.api))


def _try(url: str, timeout: float) -> tuple[PeerStatus, dict[str, str], list[str]] | str:
    try:
        return _status(url, timeout)
    except RumorError as exc:
        return str(exc).removeprefix(f"{url}/status: ")


def launch_status(out: Path, *, timeout: float = 3.0) -> list[PeerStatus]:
    """``walk`` from every API of the launch in ``out`` (rows carry the launch index)."""
    peers = launch_peers(out)
    index_of: dict[str, int] = {}
    for p in peers:
        if p.peer:
            index_of[p.peer] = p.index
        if p.api:
            index_of[base_url(p.api)] = p.index
    rows = walk([p.api for p in peers if p.api], timeout=timeout, index_of=index_of)
    for r in rows:
        if not r.peer and r.index is not None:
            r.peer = peers[[p.index for p in peers].index(r.index)].peer
    return rows


def fetch_model(url: str, *, timeout: float = 30.0
                ) -> tuple[npt.NDArray[np.float32], Layout, dict[str, Any]]:
    """(vector, layout, {peer_id, round, model}) of the peer serving ``url``."""
    doc = get_json(f"{base_url(url)}/model", timeout)
    try:
        vector = vector_from_b64(str(doc["vector"]))
        layout = layout_from_json(list(doc["layout"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise RumorError(f"{url}/model: unexpected answer ({exc})") from None
    meta = {k: doc.get(k) for k in ("peer_id", "round", "model")}
    return vector, layout, meta


def running_launch(out: Path) -> int:
    """The pid of the launch writing to ``out``; ConfigError when none is running."""
    path = out / "launch.json"
    if not path.is_file():
        raise ConfigError(f"{out}: no running launch (no launch.json; a finished launch "
                          "removes it)")
    try:
        pid = int(json.loads(path.read_text())["pid"])
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})") from None
    if not _is_launcher(pid):
        raise ConfigError(f"{out}: the launch (pid {pid}) is not running any more")
    return pid


def _is_launcher(pid: int) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        cmd = " ".join(proc.cmdline())
        return proc.status() != psutil.STATUS_ZOMBIE and "launch" in cmd
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def stop_launch(out: Path, *, timeout: float = 60.0) -> int:
    """SIGTERM the launch in ``out`` and wait until it exited; returns its pid.

    RumorError when it is still running after ``timeout`` seconds."""
    pid = running_launch(out)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _is_launcher(pid):
        if time.monotonic() > deadline:
            raise RumorError(f"the launch (pid {pid}) did not stop within {timeout:.0f} s")
        time.sleep(0.1)
    return pid
