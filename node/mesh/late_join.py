"""A late joiner on a real launched mesh: ``rumor join`` started at mesh round R.

``run_late_join`` launches N peers (rumor.node.mesh.launcher.Mesh), waits until one
of them finished round ``join_at``, then starts one more peer as a separate
``rumor join --json`` process bootstrapping through the launch's bootstrap node and
three launched peers, with the launch's learning settings. The joiner learns the
current round only from its neighbours (PULL -> signed STATE; docs/engine.md). When
the mesh is done the joiner is stopped and rumor.node.mesh.catch_up measures how fast
it was accepted (from events.jsonl and the joiner's own round events).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rumor.node.mesh.catch_up import CatchUpReport, catch_up_report, read_events
from rumor.node.mesh.launcher import Mesh, MeshConfig, MeshResult

__all__ = ["LateJoinResult", "run_late_join"]


@dataclass
class LateJoinResult:
    mesh: MeshResult
    report: CatchUpReport | None
    joiner_events: list[dict[str, Any]] = field(default_factory=list)
    joiner_log: str = ""


def _join_cmd(mesh: Mesh, data_dir: Path, rounds: int | None) -> list[str]:
    """``rumor join`` with the launch's learning settings, bootstrapping through the
    bootstrap node and three launched peers."""
    node = mesh.node_cfg
    boots = [mesh.bootstrap_addr, *[p.addrs[0] for p in mesh.peers[:3] if p.addrs]]
    cmd = [sys.executable, "-m", "rumor.scripts.cli", "join", "--json",
           "--node-dir", str(data_dir), "--swarm", node.swarm, "--model", node.model,
           "--dataset", node.dataset, "--split", node.split, "--shards", str(node.shards),
           "--seed", str(node.seed), "--aggregator", node.aggregator, "--f", str(node.f),
           "--lr", str(node.lr), "--batch-size", str(node.batch_size),
           "--local-epochs", str(node.local_epochs),
           "--round-timeout", str(node.round_timeout)]
    if node.dataset_dir:
        cmd += ["--dataset-dir", node.dataset_dir]
    if node.min_updates is not None:
        cmd += ["--min-updates", str(node.min_updates)]
    if node.fanout is not None:
        cmd += ["--fanout", str(node.fanout)]
    if rounds is not None:
        cmd += ["--rounds", str(rounds)]
    for b in boots:
        cmd += ["--bootstrap", b]
    return cmd


async def run_late_join(config: MeshConfig, join_at: int, joiner_dir: Path, *,
                        after: int = 6, join_timeout: float = 240.0) -> LateJoinResult:
    """Run the mesh of ``config`` with one ``rumor join`` peer started at ``join_at``.

    The mesh's peers run until the joiner finished ``after`` + 1 rounds of its own (the
    first one is the round its catch-up jumped to; ``config.rounds`` should be None),
    or ``join_timeout`` s after the joiner started; then everything stops (``stopped``
    is "done" when the joiner got that far, "join_timeout" otherwise).
    """
    mesh = Mesh(config)
    joiner_events: list[dict[str, Any]] = []
    log_path = config.out / "logs" / "joiner.log"
    procs: list[asyncio.subprocess.Process] = []

    async def read(proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            with contextlib.suppress(ValueError):
                e = json.loads(line)
                if isinstance(e, dict):
                    e["t"] = round(time.monotonic() - mesh.t_start, 4)
                    joiner_events.append(e)

    async def driver(m: Mesh) -> None:
        while max((p.round for p in m.peers), default=0) < join_at:
            await m.wait_changed(0.5)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                *_join_cmd(m, joiner_dir, None), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=log, start_new_session=True,
                limit=1 << 24)
        procs.append(proc)
        m.log_event({"event": "joiner_started", "pid": proc.pid})
        reader = asyncio.ensure_future(read(proc))
        deadline = time.monotonic() + join_timeout
        try:
            while time.monotonic() < deadline and not reader.done():
                if sum(e.get("event") == "round" for e in joiner_events) > after:
                    m.request_stop("done")
                    return
                await asyncio.sleep(0.5)
            m.request_stop("join_timeout")
        finally:
            reader.cancel()

    try:
        result = await mesh.run(after_go=driver)
    finally:
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), join_timeout / 4)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    await proc.wait()
    hello = next((e for e in joiner_events if e.get("event") == "listening"), None)
    report = None
    if hello is not None:
        report = catch_up_report(read_events(config.out / "events.jsonl"), hello["peer_id"],
                                 joiner_events)
        (config.out / "catch_up.json").write_text(json.dumps(report.as_dict(), indent=1))
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return LateJoinResult(result, report, joiner_events, text[-4000:])
