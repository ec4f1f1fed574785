"""Each real peer's HTTP API (aiohttp, loopback by default).

GET /status    JSON: peer_id, listen_addrs, round, phase, neighbours, last_accuracy,
               rejects by reason, messages/bytes sent, timeouts
GET /peers     JSON: {"peers": [PeerID, ...]} (current neighbours) and "apis":
               {PeerID: URL} of the other peers' APIs this peer was told (a launch tells
               every peer; empty for a lone ``rumor join``)
GET /topology  JSON: this peer's view, {"nodes": [...], "edges": [[a, b], ...]}
GET /metrics   Prometheus text format (rumor_round, rumor_accuracy, rumor_neighbours,
               rumor_rejects_total{reason=...}, rumor_bytes_sent_total, ...)
GET /history   JSON: one record per completed round
GET /model     JSON: peer_id, round, model (name), layout (one entry per tensor: name,
               start, stop, shape, is_weight) and vector (the current model, base64
               little-endian float32); ``rumor export`` turns it into a file
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from rumor.node.model_io import layout_json, vector_b64
from rumor.node.runtime import NodeRuntime
from rumor.protocols.validation import REJECT_REASONS


def _prom_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(rt: NodeRuntime) -> str:
    """The /metrics body (text exposition format 0.0.4)."""
    s = rt.status()
    pid = _prom_label(s["peer_id"])
    acc = s["last_accuracy"]
    metrics: list[tuple[str, str, str, object]] = [  # name, type, help, value
        ("rumor_round", "gauge", "Current round of this peer.", s["round"]),
        ("rumor_accuracy", "gauge", "Test accuracy after the last merge.",
         acc if acc is not None else "NaN"),
        ("rumor_neighbours", "gauge", "Current number of neighbours.", len(s["neighbours"])),
        ("rumor_messages_sent_total", "counter", "Messages sent.", s["messages_sent"]),
        ("rumor_bytes_sent_total", "counter", "Bytes sent.", s["bytes_sent"]),
        ("rumor_accepted_total", "counter", "Messages that passed validation.", s["accepted"]),
        ("rumor_round_timeouts_total", "counter", "Rounds merged on timeout.", s["timeouts"]),
    ]
    lines = []
    for name, kind, help_text, value in metrics:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}",
                  f'{name}{{peer="{pid}"}} {value}']
    lines += ["# HELP rumor_rejects_total Messages rejected, by reason.",
              "# TYPE rumor_rejects_total counter"]
    for reason in sorted(set(REJECT_REASONS) | set(s["rejects"])):
        lines.append(
            f'rumor_rejects_total{{peer="{pid}",reason="{reason}"}} {s["rejects"].get(reason, 0)}'
        )
    return "\n".join(lines) + "\n"


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
        return web.Response(text=prometheus_text(rt), content_type="text/plain",
                            headers={"X-Prometheus-Format": "0.0.4"})

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
