"""The dashboard's HTTP server (aiohttp, loopback by default).

GET /             the page (static/index.html)
GET /static/NAME  its assets (dashboard.js, dashboard.css): package data, nothing
                  from a CDN
GET /api/state    the Board's snapshot (rumor.node.dashboard.state), JSON

``start_dashboard`` serves a Board on the running asyncio loop (launch, join, real
experiments); ``DashboardThread`` serves it from a thread of its own, for a caller
that blocks its thread (the simulator).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from rumor.node.dashboard.state import Board
from rumor.protocols.errors import ConfigError

__all__ = ["STATIC", "Dashboard", "DashboardThread", "make_app", "start_dashboard"]

STATIC = Path(__file__).resolve().with_name("static")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html",
          ".svg": "image/svg+xml"}


def make_app(board: Board) -> web.Application:
    assets = {p.name: p for p in STATIC.iterdir() if p.is_file()}

    async def index(_: web.Request) -> web.Response:
        return _file(assets["index.html"])

    async def static(request: web.Request) -> web.Response:
        path = assets.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return _file(path)

    async def state(_: web.Request) -> web.Response:
        return web.Response(text=json.dumps(board.snapshot(), allow_nan=False),
                            content_type="application/json",
                            headers={"Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/dashboard", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/state", state)
    return app


def _file(path: Path) -> web.Response:
    kind = _TYPES.get(path.suffix, "application/octet-stream")
    return web.Response(body=path.read_bytes(), content_type=kind,
                        headers={"Cache-Control": "no-cache"})


@dataclass
class Dashboard:
    """A running dashboard server on this loop."""

    runner: web.AppRunner
    url: str

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_dashboard(board: Board, host: str = "127.0.0.1", port: int = 0) -> Dashboard:
    """Serve ``board`` on host:port (0: any free port); ``url`` is the page's address.

    Raises ConfigError when the port cannot be bound."""
    runner = web.AppRunner(make_app(board), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"cannot serve the dashboard on {host}:{port}: "
                          f"{exc.strerror or exc}") from None
    bound = runner.addresses[0][1] if runner.addresses else port
    shown = f"[{host}]" if ":" in host else host
    return Dashboard(runner, f"http://{shown}:{bound}/")


class DashboardThread:
    """A dashboard served by its own event loop in a daemon thread.

    ``start()`` returns once the port is bound (or raises what binding raised);
    ``close()`` stops the server and joins the thread.
    """

    def __init__(self, board: Board, host: str = "127.0.0.1", port: int = 0) -> None:
        self.board, self.host, self.port = board, host, port
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dash: Dashboard | None = None
        self._thread: threading.Thread | None = None
        self._ready: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._stop: asyncio.Event | None = None

    def start(self, timeout: float = 30.0) -> str:
        self._thread = threading.Thread(target=self._main, name="rumor-dashboard",
                                        daemon=True)
        self._thread.start()
        self.url = self._ready.result(timeout)
        return self.url

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self._dash = await start_dashboard(self.board, self.host, self.port)
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(self._dash.url)
        try:
            await self._stop.wait()
        finally:
            await self._dash.close()

    def close(self, timeout: float = 10.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
