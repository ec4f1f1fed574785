"""Each real peer's HTTP API (aiohttp, loopback by default).

GET /status    JSON: peer_id, listen_addrs, round, phase, neighbours, last_accuracy,
               rejects by reason, messages/bytes sent, timeouts
GET /peers     JSON: {"peers": [PeerID, ...]} (current neighbours) and "apis":
               {PeerID: URL} of the other peers' APIs this peer was told (a launch tells
               every peer; empty for a lone ``rumor join``)
GET /topology  JSON: this peer's view, {"nodes": [...], "edges": [[a, b], ...]}
GET /metrics   Prometheus text format from the node's own prometheus_client registry
               (rumor_round, rumor_accuracy, rumor_neighbours, rumor_rejects_total
               {reason=...}, rumor_bytes_sent_total, rumor_round_duration_seconds,
               rumor_merge_seconds, ...; the list is in rumor.node.prometheus)
GET /history   JSON: one record per completed round
GET /model     JSON: peer_id, round, model (name), layout (one entry per tensor: name,
               start, stop, shape, is_weight) and vector (the current model, base64
               little-endian float32); ``rumor export`` turns it into a file
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from rumor.node.model_io import layout_json, vector_b64
from rumor.node.prometheus import CONTENT_TYPE
from rumor.node.runtime import NodeRuntime


def prometheus_text(rt: NodeRuntime) -> str:
    """The /metrics body: the node's own registry (rumor.node.prometheus) as text."""
    return rt.metrics.text().decode("utf-8")


def model_payload(rt: NodeRuntime) -> dict[str, object]:
    """The GET /model body: the peer's current model and how to unflatten it."""
    learner = rt.learner
    params = learner.params  # replaced (never mutated) by the engine thread: a snapshot
    return {"peer_id": rt.peer.peer_id, "round": rt.peer.round,
            "model": learner.config.model, "layout": layout_json(learner.trainer.layout),
            "vector": vector_b64(params.numpy())}


def make_app(rt: NodeRuntime, directory: Mapping[str, str] | None = None) -> web.Application:
    apis = directory if directory is not None else {}

    async def status(_: web.Request) -> web.Response:
        return web.json_response(rt.status())

    async def peers(_: web.Request) -> web.Response:
        return web.json_response({"peers": sorted(rt.peer.neighbours),
                                  "apis": dict(sorted(apis.items()))})

    async def model(_: web.Request) -> web.Response:
        return web.json_response(model_payload(rt))

    async def topology(_: web.Request) -> web.Response:
        me = rt.peer.peer_id
        nbrs = sorted(rt.peer.neighbours)
        return web.json_response({"nodes": [me, *nbrs], "edges": [[me, n] for n in nbrs]})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=rt.metrics.text(), headers={"Content-Type": CONTENT_TYPE})

    async def history(_: web.Request) -> web.Response:
        return web.json_response({"rounds": rt.history})

    app = web.Application()
    app.router.add_get("/status", status)
    app.router.add_get("/peers", peers)
    app.router.add_get("/topology", topology)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/history", history)
    app.router.add_get("/model", model)
    return app


async def start_api(rt: NodeRuntime, host: str = "127.0.0.1", port: int = 0, *,
                    directory: Mapping[str, str] | None = None) -> web.AppRunner:
    """Serve the API; returns the runner (``runner.addresses`` has the bound port).
    ``directory`` (PeerID -> API URL, read at each request) is what GET /peers lists
    under "apis"."""
    runner = web.AppRunner(make_app(rt, directory), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
