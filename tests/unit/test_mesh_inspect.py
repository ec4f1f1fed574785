"""rumor.node.mesh.inspect against stand-in peer APIs (stdlib HTTP servers on loopback):
the walk follows the API URLs GET /peers lists, lists neighbours nobody named an API for,
reports peers that do not answer, and reads a launch directory."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rumor.node.mesh.inspect import base_url, launch_peers, running_launch, walk
from rumor.protocols.errors import ConfigError


class _Peer:
    def __init__(self, peer_id: str, neighbours: list[str], round_: int) -> None:
        self.peer_id, self.neighbours, self.round = peer_id, neighbours, round_
        self.apis: dict[str, str] = {}
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body: dict[str, Any]
                if self.path == "/status":
                    body = {"peer_id": peer.peer_id, "round": peer.round, "phase": "training",
                            "neighbours": peer.neighbours, "last_accuracy": 0.5,
                            "rejects": {"bad_signature": 2}, "timeouts": 1}
                elif self.path == "/peers":
                    body = {"peers": peer.neighbours, "apis": peer.apis}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def mesh() -> Iterator[tuple[_Peer, _Peer]]:
    a = _Peer("A", ["B", "C"], 4)
    b = _Peer("B", ["A"], 5)
    a.apis = {"B": b.url}
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_walk_follows_apis_and_names_neighbours_without_one(mesh: tuple[_Peer, _Peer]) -> None:
    a, _b = mesh
    rows = {r.peer: r for r in walk([a.url + "/status"], timeout=5)}
    assert set(rows) == {"A", "B", "C"}
    assert (rows["A"].round, rows["B"].round, rows["A"].api) == (4, 5, a.url)
    assert rows["A"].rejects_total == 2 and rows["A"].error is None
    assert rows["C"].error == "no API known" and rows["C"].round is None


def test_walk_reports_a_peer_that_does_not_answer(mesh: tuple[_Peer, _Peer]) -> None:
    _a, b = mesh
    dead = _Peer("D", [], 0)
    dead.close()
    rows = walk([b.url, dead.url], timeout=5)
    assert [r.peer for r in rows if r.error is None] == ["B"]
    (down,) = [r for r in rows if r.api == dead.url]
    assert down.error and "refused" in down.error.lower()


def test_base_url_and_launch_dir(tmp_path: Path) -> None:
    assert base_url("127.0.0.1:80/status") == "http://127.0.0.1:80"
    with pytest.raises(ConfigError):
        base_url("ftp://x")
    with pytest.raises(ConfigError, match="no launch there"):
        launch_peers(tmp_path)
    (tmp_path / "events.jsonl").write_text(
        json.dumps({"event": "ready", "i": 1, "peer": "P1", "api": "http://h:2"}) + "\n"
        + "not json\n")
    assert [(p.index, p.peer, p.api) for p in launch_peers(tmp_path)] == [(1, "P1", "http://h:2")]
    with pytest.raises(ConfigError, match="no running launch"):
        running_launch(tmp_path)
    (tmp_path / "launch.json").write_text(json.dumps({"pid": 2**22 + 12345}))
    with pytest.raises(ConfigError, match="not running any more"):
        running_launch(tmp_path)
