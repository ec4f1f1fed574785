"""Real peers (``rumor join`` processes) on loopback: crash and restart, signed updates, forgeries.

- A peer killed with kill -9 and started again on the same data dir keeps its PeerID,
  resumes from its checkpoint, is seen connected again by the others and catches up.
- Two peers exchange signed updates over the real Libp2pTransport and accept them.
- A forged update sent over the real transport to a running peer is rejected, counted
  under its reason in /status, and the peer keeps going.

The bootstrap node runs in the test process; every wait is a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from rumor import aggregation
from rumor.node.checkpoint import CHECKPOINT_FILE, read_checkpoint
from rumor.node.transport.libp2p import Libp2pTransport
from rumor.protocols.identity import Identity
from tests.helpers import update_bytes

pytestmark = pytest.mark.net

AGGREGATOR = "variance-corrected" if "variance-corrected" in aggregation.names() else "mean"
MLP_DIGITS_DIM = 64 * 32 + 32 + 32 * 10 + 10


class JoinProc:
    """A ``rumor join --json`` process and the events it printed so far."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(line))
                self.changed.set()
        self.changed.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == kind]

    @property
    def hello(self) -> dict[str, Any]:
        return self.of("listening")[0]

    def last_round(self) -> int:
        rounds = self.of("round")
        return int(rounds[-1]["round"]) if rounds else -1

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.hello['api']}/status", timeout=5) as r:
            data: dict[str, Any] = json.loads(r.read())
        return data

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        self.reader.cancel()


async def until(procs: list[JoinProc], cond: Callable[[], bool], deadline: float,
                what: str) -> None:
    """Await ``cond()``, re-checked whenever one of ``procs`` prints an event."""
    end = time.monotonic() + deadline
    while not cond():
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {deadline:.0f} s waiting for {what}")
        waiters = [asyncio.ensure_future(p.changed.wait()) for p in procs]
        await asyncio.wait(waiters, timeout=min(left, 0.5), return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
        for p in procs:
            p.changed.clear()


class Mesh:
    def __init__(self, tmp: Path, swarm: str, bootstrap: str) -> None:
        self.tmp, self.swarm, self.bootstrap = tmp, swarm, bootstrap
        self.procs: list[JoinProc] = []

    async def join(self, name: str, *extra: str) -> JoinProc:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rumor.scripts.cli", "join", "--json",
            "--node-dir", str(self.tmp / name), "--bootstrap", self.bootstrap,
            "--swarm", self.swarm, "--aggregator", AGGREGATOR, "--round-timeout", "3",
            *extra,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
        )
        jp = JoinProc(proc)
        self.procs.append(jp)
        await until([jp], lambda: bool(jp.of("listening")) or jp.proc.returncode is not None,
                    150, f"{name} to listen")
        assert jp.of("listening"), f"{name} exited early"
        return jp


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    swarm = f"test-restart-{os.getpid()}-{tmp_path.name}"
    boot = Libp2pTransport(Identity.generate(), swarm=swarm, announce=False,
                           discovery_interval=None)
    await boot.start()
    m = Mesh(tmp_path, swarm, boot.listen_addrs()[0])
    try:
        yield m
    finally:
        for p in m.procs:
            await p.stop()
        await boot.close()


@pytest.mark.timeout(300)
async def test_a_peer_killed_with_sigkill_restarts_with_its_identity_and_catches_up(
    mesh: Mesh,
) -> None:
    a, b, c = await asyncio.gather(mesh.join("a"), mesh.join("b"), mesh.join("c"))
    everyone = [a, b, c]
    c_id = c.hello["peer_id"]
    await until(everyone, lambda: c.last_round() >= 3 and a.last_round() >= 3, 120,
                "three rounds")

    c.proc.send_signal(signal.SIGKILL)  # no cleanup runs in c
    await c.proc.wait()
    ckpt = read_checkpoint(mesh.tmp / "c" / CHECKPOINT_FILE)
    assert ckpt is not None and ckpt.round > 0
    await until([a, b], lambda: any(e.get("peer") == c_id for e in a.of("peer_disconnected")),
                30, "a to notice c is gone")
    seen_before = len(a.of("peer_connected"))

    c2 = await mesh.join("c")  # same data dir
    assert c2.hello["peer_id"] == c_id
    assert c2.hello["start_round"] == ckpt.round > 0
    everyone = [a, b, c2]
    # The others see it again: its fresh address came through the DHT, not a config.
    await until(everyone, lambda: any(e.get("peer") == c_id
                                      for e in a.of("peer_connected")[seen_before:]),
                45, "a to see c connected again")
    # It catches up: rounds advance past the checkpoint, merging others' updates.
    await until(everyone, lambda: any(e["round"] >= ckpt.round + 2 and e["received"] >= 1
                                      for e in c2.of("round")), 45, "c to advance with merges")
    assert min(int(e["round"]) for e in c2.of("round")) == ckpt.round + 1
    assert c2.status()["peer_id"] == c_id


def _tampered(update: bytes) -> bytes:
    """The same signed update with one payload byte flipped."""
    env = msgpack.unpackb(update, raw=False)
    x = bytearray(env["x"])
    x[0] ^= 0xFF
    env["x"] = bytes(x)
    return bytes(msgpack.packb(env, use_bin_type=True))


@pytest.mark.timeout(300)
async def test_signed_updates_are_accepted_and_forged_ones_rejected_and_counted(
    mesh: Mesh,
) -> None:
    a, b = await asyncio.gather(mesh.join("a"), mesh.join("b"))
    # Two real peers exchange signed updates and merge them.
    await until([a, b], lambda: all(any(e["received"] >= 1 for e in p.of("round"))
                                    for p in (a, b)), 60, "a and b to merge each other's updates")
    st = a.status()
    assert st["accepted"] >= 1 and sum(st["rejects"].values()) == 0
    assert b.hello["peer_id"] in st["neighbours"]

    # An attacker with its own valid libp2p identity dials a over the real transport.
    attacker, victim = Identity.generate(), Identity.generate()
    t = Libp2pTransport(attacker, swarm=mesh.swarm, discovery_interval=None)
    await t.start()
    try:
        await t.connect(a.hello["peer_id"], a.hello["addrs"])
        vec = np.zeros(MLP_DIGITS_DIM, dtype=np.float32)
        seq = time.time_ns()
        # 1. its own update, signed, then altered in flight: the signature fails.
        good = update_bytes(attacker, vec, round_=a.last_round(), seq=seq, swarm=mesh.swarm)
        await t.send(a.hello["peer_id"], _tampered(good))
        # 2. an update signed by someone else, relayed over the attacker's link.
        other = update_bytes(victim, vec, round_=a.last_round(), seq=seq + 1, swarm=mesh.swarm)
        await t.send(a.hello["peer_id"], other)
        await until([a], lambda: sum(1 for e in a.of("reject")) >= 2, 30, "a to reject both")
        reasons = {e["reason"] for e in a.of("reject")}
        assert reasons == {"bad_signature", "sender_mismatch"}
        rejects = a.status()["rejects"]
        assert rejects["bad_signature"] >= 1 and rejects["sender_mismatch"] >= 1
    finally:
        await t.close()
    # and a keeps training with b
    after = a.last_round()
    await until([a, b], lambda: a.last_round() >= after + 2, 120, "a to keep going")
