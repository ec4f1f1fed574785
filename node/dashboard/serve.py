"""The dashboard wired to a run: what the commands call (they only print the URL).

``serve_mesh(mesh, ...)``  (async context) a Board fed by a MeshFeed, served on this
                           loop while the mesh runs; on exit the page shows how the run
                           ended and the server closes.
``serve_join(runtime, ...)``  the same for one ``rumor join`` peer.
``sim_board(board, sim)``  a SimFeed for one simulated run on an already served Board.
``replay(run_dir, ...)``   serve a finished run and play it back; runs until cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rumor.node.dashboard.feeds import JoinFeed, MeshFeed, SimFeed
from rumor.node.dashboard.replay import Replayer, load_run
from rumor.node.dashboard.server import Dashboard, start_dashboard
from rumor.node.dashboard.state import Board

if TYPE_CHECKING:
    from rumor.node.mesh.launcher import Mesh
    from rumor.node.runtime import NodeRuntime
    from rumor.node.simulation import Simulation

__all__ = ["replay", "serve_join", "serve_mesh", "sim_board"]


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def serve_mesh(mesh: Mesh, *, title: str, mode: str, host: str = "127.0.0.1",
                     port: int = 0, board: Board | None = None,
                     serve: bool = True) -> AsyncIterator[tuple[Dashboard | None, MeshFeed]]:
    """Feed ``board`` (a new one by default) from ``mesh`` and, with ``serve``, serve it
    on host:port; yields (the server or None, the feed)."""
    if board is None:
        board = Board(title, mode)
    else:
        board.reset(title, mode, mesh.rounds)
    dash = await start_dashboard(board, host, port) if serve else None
    feed = MeshFeed(mesh, board)
    task = asyncio.ensure_future(feed.run())
    try:
        yield dash, feed
    finally:
        await _stop(task)
        feed.finish(mesh.stop_reason)
        if dash is not None:
            await dash.close()


@contextlib.asynccontextmanager
async def serve_join(runtime: NodeRuntime, *, host: str = "127.0.0.1",
                     port: int = 0) -> AsyncIterator[Dashboard]:
    board = Board("rumor join", "join")
    dash = await start_dashboard(board, host, port)
    feed = JoinFeed(runtime, board)
    task = asyncio.ensure_future(feed.run())
    try:
        yield dash
    finally:
        await _stop(task)
        feed.publish("finished" if runtime.finished else "stopped")
        await dash.close()


def sim_board(board: Board, sim: Simulation, title: str) -> SimFeed:
    """Reset ``board`` for a new simulated run; call the feed's ``on_round`` per round
    and ``finish`` at the end."""
    board.reset(title, "experiment-sim", sim.config.rounds)
    return SimFeed(sim, board)


async def replay(run_dir: Path, *, host: str = "127.0.0.1", port: int = 0,
                 speed: float = 2.0, on_url: Callable[[str], None] | None = None) -> None:
    """Serve a finished run, play it back at ``speed`` rounds/s, then keep serving its
    final state until cancelled. ConfigError if ``run_dir`` is not a run."""
    run = load_run(run_dir)
    board = Board()
    player = Replayer(run, board)
    player.show(0)
    dash = await start_dashboard(board, host, port)
    try:
        if on_url is not None:
            on_url(dash.url)
        await player.play(speed)
        await asyncio.Event().wait()  # until cancelled (Ctrl-C)
    finally:
        await dash.close()
