"""The dashboard without a browser: the snapshot, the server and its assets, replays."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from rumor.node.dashboard import Board, start_dashboard
from rumor.node.dashboard.feeds import JoinFeed, MeshFeed
from rumor.node.dashboard.replay import Replayer, load_run
from rumor.node.dashboard.server import STATIC
from rumor.node.dashboard.state import PeerInfo, mark_partitioned
from rumor.node.mesh.launcher import PeerView
from rumor.node.results import RoundMetrics, write_metrics_csv
from rumor.scripts.cli import main

SCENARIO = """\
name = "tiny-removal"
description = "8 peers on a ring lose peers 2 and 5 at round 2."

[network]
peers = 8
topology = "ring"
seed = 3

[data]
dataset = "digits"

[learning]
aggregator = "mean"
rounds = 4
test_subset = 150

[[timeline]]
action = "remove_peers"
select = "list"
peers = [2, 5]
at_round = 2
"""


def row(r: int, t: float, acc: float = 0.5) -> RoundMetrics:
    return RoundMetrics(round=r, time=t, acc_mean=acc, acc_min=acc - 0.1, acc_max=acc + 0.1,
                        acc_std=0.05, consensus_distance=float("nan"), messages=6,
                        bytes_sent=1000 * r, rejects=0, timeouts=0, peers_alive=3)


def test_snapshot_is_strict_json_and_versions_every_change() -> None:
    b = Board("t", "launch")
    v0 = b.version
    b.update(rows=[row(1, 1.0)], peers=[PeerInfo(0, "0", acc=float("nan"))],
             edges=[(1, 0), (0, 1), (2, 2)], rejects={"bad_signature": 2, "replay": 0})
    b.add_event("kill", "peer 0 killed")
    snap = b.snapshot()
    assert b.version == v0 + 2 and snap["version"] == b.version
    text = json.dumps(snap, allow_nan=False)  # the browser's JSON.parse takes no NaN
    back = json.loads(text)
    assert back["rows"][0]["consensus_distance"] is None
    assert back["peers"][0]["acc"] is None
    assert back["edges"] == [[0, 1]]  # one undirected edge, no self-loop
    assert back["rejects"] == {"bad_signature": 2}
    assert back["round"] == 1 and back["events"][0]["round"] == 1
    b.reset("next", "experiment-sim", 7)
    snap = b.snapshot()
    assert snap["rows"] == [] and snap["events"] == [] and snap["rounds_target"] == 7


def test_peers_outside_the_largest_part_are_marked_partitioned() -> None:
    peers = [PeerInfo(i, str(i)) for i in range(6)]
    peers[5].state = "killed"
    mark_partitioned(peers, [(0, 1), (1, 2), (3, 4), (4, 5)])
    assert [p.state for p in peers] == ["alive"] * 3 + ["partitioned"] * 2 + ["killed"]
    whole = [PeerInfo(i, str(i)) for i in range(3)]
    mark_partitioned(whole, [(0, 1), (1, 2)])
    assert all(p.state == "alive" for p in whole)


async def test_server_serves_the_page_its_own_assets_and_the_state() -> None:
    board = Board("served", "launch")
    board.update(peers=[PeerInfo(0, "0"), PeerInfo(1, "1")], edges=[(0, 1)])
    dash = await start_dashboard(board)
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", dash.url)
        async with aiohttp.ClientSession() as s:
            async with s.get(dash.url) as r:
                assert r.status == 200 and r.content_type == "text/html"
                html = await r.text()
            assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
            assert sorted(assets) == ["/static/dashboard.css", "/static/dashboard.js"]
            for a in assets:
                async with s.get(dash.url.rstrip("/") + a) as r:
                    assert r.status == 200, a
            async with s.get(dash.url + "static/../server.py") as r:
                assert r.status == 404
            async with s.get(dash.url + "api/state") as r:
                state = json.loads(await r.text())
        assert [p["i"] for p in state["peers"]] == [0, 1] and state["edges"] == [[0, 1]]
    finally:
        await dash.close()


def test_assets_load_nothing_from_elsewhere() -> None:
    """No CDN: every URL in the page, its script and its style is this server's."""
    for path in STATIC.iterdir():
        text = path.read_text()
        urls = set(re.findall(r"https?://[^\s\"'`)]+", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (path.name, urls)
        assert "import(" not in text and "@import" not in text


def _mesh_run(d: Path) -> Path:
    d.mkdir()
    write_metrics_csv(d / "metrics.csv", [row(1, 2.0), row(2, 4.0, 0.7), row(3, 6.0, 0.8)])
    ids = ["PA", "PB", "PC"]
    ev: list[dict[str, object]] = [
        {"t": 1.0, "i": i, "event": "ready", "peer": ids[i], "start_round": 0}
        for i in range(3)]
    ev += [{"t": 1.5, "i": i, "event": "peer_connected", "peer": ids[j]}
           for i in range(3) for j in range(3) if i != j]
    ev += [{"t": 2.0, "event": "go"}]
    ev += [{"t": 3.9, "i": i, "event": "round", "round": 1, "acc": 0.5, "neighbours": 2,
            "bytes_sent": 10, "received": 2} for i in range(3)]
    ev += [{"t": 4.5, "i": 0, "event": "reject", "reason": "bad_signature"},
           {"t": 5.0, "i": 2, "event": "kill", "pid": 1},
           {"t": 5.1, "i": 0, "event": "peer_disconnected", "peer": "PC"}]
    (d / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ev) + "{torn")
    (d / "summary.json").write_text(json.dumps({"peers": 3, "config": {"peers": 3}}))
    return d


def test_replay_of_a_mesh_run_rebuilds_links_faults_and_rejects(tmp_path: Path) -> None:
    run = load_run(_mesh_run(tmp_path / "launch"))
    assert run.kind == "mesh" and run.peers == 3 and len(run.rows) == 3
    board = Board()
    player = Replayer(run, board)
    player.show(1)
    s = board.snapshot()
    assert s["round"] == 1 and len(s["edges"]) == 3
    assert [p["state"] for p in s["peers"]] == ["alive"] * 3
    assert [p["acc"] for p in s["peers"]] == [0.5] * 3
    assert s["rejects"] == {} and [e["event"] for e in s["events"]] == ["go"]
    player.show(2)  # up to t(go) + 4.0 = 6.0: the kill and the reject happened
    s = board.snapshot()
    assert [p["state"] for p in s["peers"]] == ["alive", "alive", "killed"]
    assert s["edges"] == [[0, 1]] and s["rejects"] == {"bad_signature": 1}
    assert s["events"][-1]["event"] == "kill" and s["events"][-1]["round"] == 1


@pytest.mark.timeout(240)
def test_sim_experiment_with_dashboard_then_its_replay_shows_the_removal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(SCENARIO)
    out = tmp_path / "out"
    assert main(["experiment", str(path), "--out", str(out), "--dashboard"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/$", err, re.M), err
    run = load_run(out / "tiny-removal")
    assert run.kind == "sim" and run.peers == 8 and len(run.timeline) == 1
    board = Board()
    player = Replayer(run, board)
    player.show(1)
    assert all(p["state"] == "alive" for p in board.snapshot()["peers"])
    player.show(len(run.rows), status="finished")
    s = board.snapshot()
    killed = [p["i"] for p in s["peers"] if p["state"] == "killed"]
    assert killed == [2, 5] and s["status"] == "finished"
    assert len(s["edges"]) == 4  # the ring lost the 4 links of peers 2 and 5
    assert [e["event"] for e in s["events"]] == ["RemovePeers"]


def test_dashboard_command_says_what_is_wrong_with_a_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rumor: error:") and "metrics.csv" in err and "\n" not in err


class _FakeMesh:
    """What MeshFeed reads of a Mesh: its peers (PeerView), metrics rows, hooks."""

    def __init__(self, peers: list[PeerView]) -> None:
        self.peers = peers
        self.n = len(peers)
        self.rounds = 5
        self.went = True
        self.stop_reason: str | None = None
        self.config = SimpleNamespace(excluded=frozenset({2}))
        self.metrics = SimpleNamespace(rows=[row(1, 1.0)])
        self.rejoining: dict[int, int | None] = {}
        self.listeners: list[Any] = []
        self.event_listeners: list[Any] = []


async def test_mesh_feed_aggregates_every_peers_status_and_topology() -> None:
    ids = ["PA", "PB", "PC", "PD"]
    links = {"PA": ["PB", "PC"], "PB": ["PA"], "PC": ["PA", "PD"], "PD": ["PC"]}
    runners = []
    views = []
    for i, me in enumerate(ids):
        app = web.Application()
        st = {"peer_id": me, "neighbours": links[me], "bytes_sent": 100 * (i + 1),
              "rejects": {"bad_signature": i, "replay": 1}}
        topo = {"nodes": [me, *links[me]], "edges": [[me, n] for n in links[me]]}

        async def status(_: web.Request, st: dict[str, Any] = st) -> web.Response:
            return web.json_response(st)

        async def topology(_: web.Request, topo: dict[str, Any] = topo) -> web.Response:
            return web.json_response(topo)

        app.router.add_get("/status", status)
        app.router.add_get("/topology", topology)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        views.append(PeerView(i, 0, peer=me, api=f"http://127.0.0.1:{runner.addresses[0][1]}",
                              ready=True, round=1, acc=0.5 + i / 10))
    views[3].alive = False  # killed: it keeps its place, loses its links
    mesh = _FakeMesh(views)
    board = Board()
    feed = MeshFeed(mesh, board)  # type: ignore[arg-type]
    try:
        async with aiohttp.ClientSession() as session:
            await feed.poll(session)
        feed.publish()
        feed.on_event({"t": 3.0, "event": "kill", "i": 3})
        feed.on_event({"t": 3.1, "event": "round", "i": 0})  # chatter: not on the timeline
    finally:
        for r in runners:
            await r.cleanup()
    s = board.snapshot()
    assert s["edges"] == [[0, 1], [0, 2]]  # the union of the live peers' links
    assert [p["state"] for p in s["peers"]] == ["alive", "alive", "alive", "killed"]
    assert [p["byzantine"] for p in s["peers"]] == [False, False, True, False]
    assert [p["bytes_sent"] for p in s["peers"]][:3] == [100, 200, 300]
    assert s["rejects"] == {"bad_signature": 3, "replay": 3}  # peer 3 was never polled
    assert s["round"] == 1 and s["rounds_target"] == 5 and s["status"] == "running"
    assert [e["text"] for e in s["events"]] == ["peer 3 killed (SIGKILL)"]
    feed.finish("interrupted")
    assert board.snapshot()["status"] == "stopped"


def test_join_feed_shows_the_peer_its_neighbours_and_its_rounds() -> None:
    history = [{"round": r, "acc": 0.5 + r / 10, "bytes_sent": 300 * r, "rejects": 0}
               for r in (1, 2)]
    rt = SimpleNamespace(
        status=lambda: {"peer_id": "12D3KooWme", "round": 2, "last_accuracy": 0.7,
                        "neighbours": ["12D3KooWaa", "12D3KooWbb"], "bytes_sent": 600,
                        "rejects": {"replay": 2}, "finished": False},
        history=history, peer=SimpleNamespace(config=SimpleNamespace(rounds=4)))
    board = Board()
    JoinFeed(rt, board).publish()  # type: ignore[arg-type]
    s = board.snapshot()
    assert [p["label"] for p in s["peers"]] == ["me KooWme", "KooWaa", "KooWbb"]
    assert s["edges"] == [[0, 1], [0, 2]] and s["rejects"] == {"replay": 2}
    assert [r["bytes_sent"] for r in s["rows"]] == [300, 300]  # per round, not cumulative
    assert s["round"] == 2 and s["rounds_target"] == 4
