"""Soak: an N-peer real mesh for T minutes under kill -9 churn and one hostile peer.

    python -m benchmarks.soak [--peers 16] [--minutes 30] [--kill-every 30]

N real peers (one process each, rumor.node.mesh.Mesh, loopback libp2p) train for T
minutes. Every ``--kill-every`` seconds a random live peer is killed with SIGKILL and
restarted from its data dir (same PeerID, its checkpoint). One hostile peer (a
Libp2pTransport in this process, a valid identity of its own) sends, every second, to a
random peer: garbage bytes, random msgpack, and valid-but-hostile signed messages
(finite 3.4e38 updates that overflow a merge, a round near 2**62, NaN, a wrong shape,
replays, a STATE with a huge round).

Prints a table every minute: RSS per process (each peer's current process, and this
process: the bootstrap node plus the hostile peer), each peer's round and restarts.
At the end: rounds completed per peer, the hostile traffic and what the peers rejected.

Fails loudly (exit 1) when a peer stalls (a live, started peer whose round did not
advance for 3 x round timeout), when an incarnation's RSS grows without bound (more than
``--rss-growth`` x its RSS one minute after it started, and by more than 64 MiB), when a
worker dies on its own, or when the mesh reports errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import logging
import os
import random
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np
import psutil

from rumor.node.assembly import NodeConfig
from rumor.node.mesh.launcher import Mesh, mesh_config
from rumor.node.transport.libp2p import Libp2pTransport
from rumor.protocols import codec
from rumor.protocols.identity import Identity
from rumor.protocols.messages import Kind, ModelBody, TensorPayload

MiB = 1 << 20
MLP_DIGITS_DIM = 64 * 32 + 32 + 32 * 10 + 10
GROWTH_SLACK = 64 * MiB


@dataclass
class Incarnation:
    """One process of one peer (a restart starts a new one)."""

    peer: int
    pid: int
    started: float
    samples: list[tuple[float, int]] = field(default_factory=list)  # (t, rss)

    def baseline(self) -> int | None:
        """RSS one minute after start (the first sample at or after 60 s)."""
        for t, rss in self.samples:
            if t - self.started >= 60.0:
                return rss
        return None


@dataclass
class Hostile:
    sent: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    last: dict[int, bytes] = field(default_factory=dict)


def _rss(pid: int) -> int | None:
    with contextlib.suppress(psutil.Error):
        return int(psutil.Process(pid).memory_info().rss)
    return None


def _update(me: Identity, swarm: str, round_: int, seq: int, vec: np.ndarray,
            kind: Kind = Kind.UPDATE) -> bytes:
    body = ModelBody(TensorPayload.from_array(vec), 10)
    return codec.encode(kind, swarm=swarm, sender=me, round_=round_, seq=seq,
                        sent_at=time.time(), body=body, sign=True)


def hostile_batch(me: Identity, swarm: str, round_: int, rng: random.Random,
                  previous: bytes | None) -> list[tuple[str, bytes]]:
    """What the hostile peer sends one target in one go (labels for the tally)."""
    seq = time.time_ns() // 1000
    huge = np.full(MLP_DIGITS_DIM, 3.4e38, np.float32)
    nan = np.zeros(MLP_DIGITS_DIM, np.float32)
    nan[rng.randrange(MLP_DIGITS_DIM)] = np.nan
    out = [
        ("garbage", rng.randbytes(rng.randrange(1, 4096))),
        ("random_msgpack", msgpack.packb({"v": 1, "k": rng.randrange(9), "sw": swarm,
                                          "x": rng.randbytes(64)}, use_bin_type=True)),
        ("overflow_update", _update(me, swarm, round_, seq + 1, huge)),
        ("round_2**62", _update(me, swarm, 2**62, seq + 2, huge)),
        ("nan_update", _update(me, swarm, round_, seq + 3, nan)),
        ("wrong_shape", _update(me, swarm, round_, seq + 4, np.zeros(7, np.float32))),
        ("state_2**62", _update(me, swarm, 2**62, seq + 5, huge, Kind.STATE)),
    ]
    if previous is not None:
        out.append(("replay", previous))
    return out


async def hostile_peer(mesh: Mesh, swarm: str, tally: Hostile, seed: int) -> None:
    """Every second: one random ready peer gets a hostile batch (reconnecting after a
    restart gave it a new address)."""
    rng = random.Random(seed)
    me = Identity.generate()
    t = Libp2pTransport(me, swarm=swarm, discovery_interval=None, announce=False)
    await t.start()

    async def drain() -> None:
        with contextlib.suppress(Exception):
            while True:
                await t.next_event()

    drainer = asyncio.ensure_future(drain())
    dialled: dict[int, tuple[str, ...]] = {}
    try:
        while True:
            await asyncio.sleep(1.0)  # the attack's pace, not a wait for a condition
            ready = [p for p in mesh.peers if p.alive and p.ready and p.addrs]
            if not ready:
                continue
            p = rng.choice(ready)
            try:
                if dialled.get(p.index) != tuple(p.addrs):
                    await asyncio.wait_for(t.connect(p.peer, p.addrs), 15)
                    dialled[p.index] = tuple(p.addrs)
                for label, data in hostile_batch(me, swarm, p.round, rng,
                                                 tally.last.get(p.index)):
                    await asyncio.wait_for(t.send(p.peer, data), 15)
                    tally.sent[label] = tally.sent.get(label, 0) + 1
                    if label == "overflow_update":
                        tally.last[p.index] = data
            except Exception:
                tally.failures += 1
                dialled.pop(p.index, None)
    finally:
        drainer.cancel()
        with contextlib.suppress(Exception):
            await t.close()


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.failures: list[str] = []
        self.incarnations: dict[int, Incarnation] = {}
        self.history: list[Incarnation] = []
        self.own: list[tuple[float, int]] = []
        self.progress: dict[int, tuple[int, float, int | None]] = {}  # round, since, pid
        self.kills = 0
        self.t0 = time.monotonic()
        self.hostile = Hostile()

    def say(self, text: str) -> None:
        print(text, flush=True)

    def fail(self, text: str) -> None:
        self.failures.append(text)
        self.say(f"FAIL: {text}")

    def sample(self, mesh: Mesh) -> None:
        now = time.monotonic()
        for p in mesh.peers:
            if not (p.alive and p.ready and p.pid):
                continue
            inc = self.incarnations.get(p.index)
            if inc is None or inc.pid != p.pid:
                inc = Incarnation(p.index, p.pid, now)
                self.incarnations[p.index] = inc
                self.history.append(inc)
            rss = _rss(p.pid)
            if rss is not None:
                inc.samples.append((now, rss))
        own = _rss(os.getpid())
        if own is not None:
            self.own.append((now, own))

    def check_stalls(self, mesh: Mesh) -> None:
        now = time.monotonic()
        limit = 3 * self.args.round_timeout
        for p in mesh.peers:
            if not (p.alive and p.ready) or p.index in mesh.rejoining:
                self.progress.pop(p.index, None)
                continue
            last = self.progress.get(p.index)
            if last is None or last[0] != p.round or last[2] != p.pid:
                self.progress[p.index] = (p.round, now, p.pid)
            elif now - last[1] > limit:
                self.fail(f"peer {p.index} stalled: round {p.round} for "
                          f"{now - last[1]:.0f} s (> 3 x round timeout = {limit:.0f} s)")
                self.progress[p.index] = (p.round, now, p.pid)  # report once per stall

    def check_growth(self) -> None:
        for inc in self.history:
            base = inc.baseline()
            if base is None or not inc.samples:
                continue
            now = inc.samples[-1][1]
            if now > base * self.args.rss_growth and now - base > GROWTH_SLACK:
                self.fail(f"peer {inc.peer} (pid {inc.pid}) RSS grew from {base / MiB:.0f} "
                          f"to {now / MiB:.0f} MiB")
                inc.samples.clear()  # report once
        if len(self.own) > 2:
            base = next((r for t, r in self.own if t - self.own[0][0] >= 60.0), None)
            now = self.own[-1][1]
            if base is not None and now > base * self.args.rss_growth \
                    and now - base > GROWTH_SLACK:
                self.fail(f"soak process RSS grew from {base / MiB:.0f} to {now / MiB:.0f} MiB")
                self.own = self.own[-1:]

    def table(self, mesh: Mesh) -> None:
        minute = (time.monotonic() - self.t0) / 60
        self.say(f"\n-- minute {minute:4.1f}: kills {self.kills}, hostile batches "
                 f"{self.hostile.sent.get('garbage', 0)} --")
        self.say(f"{'peer':>4} {'pid':>7} {'rss MiB':>8} {'round':>6} {'restarts':>8} "
                 f"{'neigh':>5} {'rejects':>7}")
        for p in mesh.peers:
            inc = self.incarnations.get(p.index)
            rss = inc.samples[-1][1] / MiB if inc and inc.samples and p.alive else float("nan")
            self.say(f"{p.index:>4} {p.pid or 0:>7} {rss:>8.0f} {p.round:>6} "
                     f"{p.restarts:>8} {p.neighbours:>5} {p.rejects:>7}")
        if self.own:
            self.say(f"soak process (bootstrap + hostile) rss {self.own[-1][1] / MiB:.0f} MiB")

    async def drive(self, mesh: Mesh) -> None:
        """After go: sample every 5 s, a table every minute, a kill every kill_every."""
        args = self.args
        end = self.t0 + args.minutes * 60
        next_table = time.monotonic() + 60
        next_kill = time.monotonic() + args.kill_every
        last_killed: int | None = None
        while time.monotonic() < end:
            await mesh.wait_changed(5.0)
            self.sample(mesh)
            self.check_stalls(mesh)
            self.check_growth()
            now = time.monotonic()
            if now >= next_kill:
                next_kill = now + args.kill_every
                live = [p.index for p in mesh.peers if p.alive and p.ready
                        and p.index != last_killed and p.index not in mesh.rejoining]
                if live:
                    i = self.rng.choice(live)
                    mesh.kill_peer(i)
                    self.kills += 1
                    last_killed = i
                    self.progress.pop(i, None)
                    await mesh.restart_peer(i)
            if now >= next_table:
                next_table = now + 60
                self.table(mesh)
        mesh.request_stop("soak_done")


def rounds_per_peer(events: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    with events.open() as fh:
        for line in fh:
            with contextlib.suppress(ValueError):
                e = json.loads(line)
                if e.get("event") == "round" and isinstance(e.get("i"), int):
                    counts[e["i"]] = counts.get(e["i"], 0) + 1
    return counts


def reject_reasons(events: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    with events.open() as fh:
        for line in fh:
            with contextlib.suppress(ValueError):
                e = json.loads(line)
                if e.get("event") in ("reject", "poisoned_merge"):
                    key = str(e.get("reason", e["event"]))
                    counts[key] = counts.get(key, 0) + 1
    return counts


async def amain(args: argparse.Namespace) -> int:
    out = Path(args.out)
    swarm = f"soak-{os.getpid()}"
    node = NodeConfig(swarm=swarm, rounds=None, round_timeout=args.round_timeout,
                      aggregator=args.aggregator)
    soak = Soak(args)
    mesh = Mesh(mesh_config(node, args.peers, out, per_process=1, spares=1,
                            wall_cap=args.minutes * 60 + 600),
                on_notice=lambda level, text: soak.say(f"[{level}] {text}"))
    attacker: asyncio.Task[None] | None = None

    async def after_go(m: Mesh) -> None:
        nonlocal attacker
        soak.t0 = time.monotonic()
        attacker = asyncio.ensure_future(hostile_peer(m, swarm, soak.hostile, args.seed))
        try:
            await soak.drive(m)
        finally:
            attacker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await attacker

    result = await mesh.run(after_go=after_go)
    soak.table(mesh)
    rounds = rounds_per_peer(out / "events.jsonl")
    soak.say(f"\n== soak: {args.peers} peers, {args.minutes:g} min, kill -9 + restart "
             f"every {args.kill_every:g} s ({soak.kills} kills), round timeout "
             f"{args.round_timeout:g} s ==")
    soak.say("rounds completed per peer (all incarnations): "
             + ", ".join(f"{i}:{rounds.get(i, 0)}" for i in range(args.peers)))
    if rounds:
        vals = [rounds.get(i, 0) for i in range(args.peers)]
        soak.say(f"  min {min(vals)}, median {statistics.median(vals):g}, max {max(vals)}")
    soak.say(f"hostile messages sent: {dict(sorted(soak.hostile.sent.items()))}, "
             f"send failures {soak.hostile.failures}")
    reasons = dict(sorted(reject_reasons(out / "events.jsonl").items()))
    soak.say(f"reject / guard events at the peers: {reasons}")
    peak = max((r for inc in soak.history for _, r in inc.samples), default=0)
    firsts = [inc.samples[0][1] for inc in soak.history if inc.samples]
    lasts = [inc.samples[-1][1] for inc in soak.history if inc.samples]
    if firsts:
        soak.say(f"peer RSS: first sample median {statistics.median(firsts) / MiB:.0f} MiB, "
                 f"last sample median {statistics.median(lasts) / MiB:.0f} MiB, peak "
                 f"{peak / MiB:.0f} MiB over {len(soak.history)} incarnations")
    if soak.own:
        soak.say(f"soak process RSS: {soak.own[0][1] / MiB:.0f} -> {soak.own[-1][1] / MiB:.0f} MiB")
    if result.stopped not in ("soak_done", "done"):
        soak.fail(f"the mesh stopped early: {result.stopped}")
    for e in result.errors:
        soak.fail(f"mesh error: {e}")
    if soak.failures:
        soak.say(f"\nSOAK FAILED ({len(soak.failures)} problems); run files in {out}")
        return 1
    soak.say(f"\nsoak passed; run files in {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--peers", type=int, default=16)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--kill-every", type=float, default=30.0, help="seconds")
    p.add_argument("--round-timeout", type=float, default=10.0)
    p.add_argument("--aggregator", default="variance-corrected")
    p.add_argument("--rss-growth", type=float, default=1.5,
                   help="fail when an incarnation's RSS exceeds this x its 1-minute RSS")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="soak-out")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)  # harmless DHT stream noise
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid>: where is it stuck?
    if args.peers < 2 or args.minutes <= 0 or args.kill_every <= 0:
        p.error("--peers >= 2, --minutes > 0, --kill-every > 0")
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
