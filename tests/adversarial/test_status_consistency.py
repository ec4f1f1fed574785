"""/status agrees with the events a node already emitted (real NodeRuntime, MemoryTransport).

A client that reads a ``reject`` event and then asks /status must find that reject
counted. The runtime used to emit a step's events while the engine thread was still
inside the step and replace the /status snapshot only after it, so a fast reader could
see the event and an older count (tests/net/test_restart.py failed that way once on a
quiet machine). Here every event is handed to the observer the moment it is
published, in the publishing thread (``_publish`` made synchronous), which makes that
window deterministic: with the old order (publish during the step) the check fails.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from rumor.node.assembly import NodeConfig, build_runtime
from rumor.node.transport.memory import MemoryHub, MemoryTransport
from tests.helpers import ident

SWARM = "status-consistency"


@pytest.mark.timeout(120)
async def test_a_reject_event_is_already_counted_in_status(tmp_path: Path) -> None:
    hub = MemoryHub()
    me, attacker_id = ident(0), ident(1)
    seen: list[tuple[int, int]] = []  # (reject events so far, rejects in /status then)
    got_two = asyncio.Event()
    loop = asyncio.get_running_loop()
    cfg = NodeConfig(swarm=SWARM, rounds=50, round_timeout=30.0, shards=4, aggregator="mean")

    def on_event(record: dict[str, Any]) -> None:
        if record.get("event") == "reject":
            counted = sum(rt.status()["rejects"].values())
            seen.append((len(seen) + 1, counted))
            if len(seen) >= 2:  # on_event runs in the engine thread here
                loop.call_soon_threadsafe(got_two.set)

    rt, start = build_runtime(cfg, me, MemoryTransport(hub, me.peer_id),
                              data_dir=tmp_path / "p0", on_event=on_event)

    def synchronous(record: dict[str, Any]) -> None:
        on_event(record)  # the observer runs the moment the runtime publishes

    rt._publish = synchronous  # type: ignore[method-assign]
    node_up = asyncio.Event()  # run() starts the node's transport: it joins the hub
    register = hub.register

    def registered(transport: MemoryTransport) -> None:
        register(transport)
        if transport.local_id == me.peer_id:
            node_up.set()

    hub.register = registered  # type: ignore[method-assign]
    attacker = MemoryTransport(hub, attacker_id.peer_id)
    await attacker.start()
    task = asyncio.ensure_future(rt.run(start))
    try:
        await asyncio.wait_for(node_up.wait(), 60)
        for junk in (b"\x00 not msgpack", b"\x81\xa1v\x01"):  # malformed, twice
            await attacker.send(me.peer_id, junk)
        await asyncio.wait_for(got_two.wait(), 60)
    finally:
        rt.stop()
        await asyncio.wait_for(task, 60)
        await attacker.close()
    assert seen and all(counted >= n for n, counted in seen), seen
