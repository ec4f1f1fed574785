"""Each real peer's HTTP API (aiohttp, loopback by default).

GET /status    JSON: peer_id, listen_addrs, round, phase, neighbours, last_accuracy,
               rejects by reason, messages/bytes sent, timeouts
GET /peers     JSON: {"peers": [PeerID, ...]} (current neighbours)
GET /topology  JSON: this peer's view, {"nodes": [...], "edges": [[a, b], ...]}
GET /metrics   Prometheus text format from the node's own prometheus_client registry
               (rumor_round, rumor_accuracy, rumor_neighbours, rumor_rejects_total
               {reason=...}, rumor_bytes_sent_total, rumor_round_duration_seconds,
               rumor_merge_seconds, ...; the list is in rumor.node.prometheus)
GET /history   JSON: one record per completed round
"""

from __future__ import annotations

from aiohttp import web

from rumor.node.prometheus import CONTENT_TYPE
from rumor.node.runtime import NodeRuntime


def prometheus_text(rt: NodeRuntime) -> str:
    """The /metrics body: the node's own registry (rumor.node.prometheus) as text."""
    return rt.metrics.text().decode("utf-8")


def make_app(rt: NodeRuntime) -> web.Application:
    async def status(_: web.Request) -> web.Response:
        return web.json_response(rt.status())

    async def peers(_: web.Request) -> web.Response:
        return web.json_response({"peers": sorted(rt.peer.neighbours)})

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
    return app


async def start_api(rt: NodeRuntime, host: str = "127.0.0.1", port: int = 0) -> web.AppRunner:
    """Serve the API; returns the runner (``runner.addresses`` has the bound port)."""
    runner = web.AppRunner(make_app(rt), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
