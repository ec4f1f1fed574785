"""A hostile py-libp2p host for the adversarial tier, driven from asyncio tests.

It runs one libp2p host (TCP + Noise + yamux, like the node) in its own trio thread and
speaks the node's ``/rumor/update/1`` framing by hand, so a test can send what an honest
Libp2pTransport never would: frames whose payload is a hostile structure, frames that
announce more than they send and then stall, many streams at once, or thousands of
short-lived connections.

Every call is bounded: ``run`` waits at most ``timeout`` seconds for the trio side.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from multiaddr import Multiaddr

from rumor.node.transport.libp2p import UPDATE_PROTOCOL, _split_p2p, encode_frame_header
from rumor.protocols.identity import Identity

T = TypeVar("T")


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/status (VmRSS)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class HostileHost:
    """A raw libp2p host in a trio thread; ``await run(fn)`` runs ``fn()`` there."""

    def __init__(self, identity: Identity | None = None) -> None:
        self.identity = identity or Identity.generate()
        self._thread: threading.Thread | None = None
        self._token: Any = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.host: Any = None
        self.streams: list[Any] = []

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    async def start(self, timeout: float = 30.0) -> None:
        self._thread = threading.Thread(target=self._main, name="hostile-libp2p", daemon=True)
        self._thread.start()
        ok = await asyncio.to_thread(self._ready.wait, timeout)
        if not ok or self._error is not None:
            raise RuntimeError(f"hostile host did not start: {self._error!r}")

    def _main(self) -> None:
        try:
            trio.run(self._trio_main)
        except BaseException as exc:  # surfaced through start()
            self._error = exc
            self._ready.set()

    async def _trio_main(self) -> None:
        listen = [Multiaddr("/ip4/127.0.0.1/tcp/0")]
        self.host = new_host(
            key_pair=create_new_key_pair(self.identity.seed_bytes()),
            listen_addrs=listen,
            muxer_preference="YAMUX",
            connection_config=ConnectionConfig(max_connections_per_peer=1),
        )
        self._stop = trio.Event()
        async with self.host.run(listen_addrs=listen):
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()

    async def run(self, fn: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
        """Run the async ``fn()`` in the host's trio thread, bounded by ``timeout``."""

        async def bounded() -> T:
            with trio.fail_after(timeout):
                return await fn()

        def call() -> T:
            return trio.from_thread.run(bounded, trio_token=self._token)

        return await asyncio.to_thread(call)

    async def close(self) -> None:
        if self._token is not None and self._stop is not None:
            stop = self._stop
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(stop.set, trio_token=self._token)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 15.0)

    # ------------------------------------------------------------ trio-side helpers

    @staticmethod
    def target(addrs: list[str]) -> tuple[Any, list[Multiaddr]]:
        maddr, pid = _split_p2p(addrs[0])
        assert pid is not None
        return ID.from_base58(pid), [maddr]

    async def connect(self, addrs: list[str]) -> None:
        pid, maddrs = self.target(addrs)
        network = self.host.get_network()
        network.unblock_peer(pid)
        self.host.get_peerstore().clear_addrs(pid)
        await self.host.connect(PeerInfo(pid, maddrs))

    async def disconnect(self, addrs: list[str]) -> None:
        pid, _ = self.target(addrs)
        await self.host.disconnect(pid)

    async def open_update_stream(self, addrs: list[str]) -> Any:
        pid, maddrs = self.target(addrs)
        self.host.get_peerstore().add_addrs(pid, maddrs, 3600)
        stream = await self.host.new_stream(pid, [UPDATE_PROTOCOL])
        self.streams.append(stream)
        return stream

    @staticmethod
    async def write_frame(stream: Any, payload: bytes, announce: int | None = None) -> None:
        """Write a frame header announcing ``announce`` (default len(payload)), then payload."""
        length = len(payload) if announce is None else announce
        await stream.write(encode_frame_header(length))
        step = 1 << 20
        for i in range(0, len(payload), step):
            await stream.write(payload[i : i + step])


@dataclass
class ChurnResult:
    opened: int = 0
    failures: int = 0
    first_failure: str = ""
    seconds: float = 0.0


def churn_connections(addrs: list[str], total: int, clients: int = 8) -> ChurnResult:
    """Open ``total`` connections to ``addrs`` one after another, closing each one.

    ``clients`` libp2p hosts (distinct identities) take turns, so that one host's close
    (py-libp2p 0.8.1 spends ~0.2 s in sleeps there) overlaps the next host's open; a host
    opens again only after its previous connection is closed. At most ``clients``
    connections are alive at once. Blocking: run it with ``asyncio.to_thread``.
    """
    result = ChurnResult()

    async def main() -> None:
        listen = [Multiaddr("/ip4/127.0.0.1/tcp/0")]
        hosts = [
            new_host(
                key_pair=create_new_key_pair(Identity.generate().seed_bytes()),
                listen_addrs=listen,
                muxer_preference="YAMUX",
                connection_config=ConnectionConfig(max_connections_per_peer=1),
            )
            for _ in range(clients)
        ]
        pid, maddrs = HostileHost.target(addrs)
        idle = [trio.Event() for _ in hosts]
        for ev in idle:
            ev.set()
        t0 = trio.current_time()
        async with contextlib.AsyncExitStack() as stack:
            for host in hosts:
                await stack.enter_async_context(host.run(listen_addrs=listen))

            async def close(i: int) -> None:
                with contextlib.suppress(Exception), trio.move_on_after(10):
                    await hosts[i].disconnect(pid)
                idle[i].set()

            async with trio.open_nursery() as nursery:
                for n in range(total):
                    i = n % clients
                    await idle[i].wait()
                    host = hosts[i]
                    host.get_network().unblock_peer(pid)
                    host.get_peerstore().clear_addrs(pid)
                    try:
                        with trio.fail_after(10):
                            await host.connect(PeerInfo(pid, maddrs))
                        result.opened += 1
                    except Exception as exc:
                        result.failures += 1
                        result.first_failure = result.first_failure or f"#{n}: {exc!r}"[:300]
                        continue
                    idle[i] = trio.Event()
                    nursery.start_soon(close, i)
        result.seconds = trio.current_time() - t0

    trio.run(main)
    return result


async def churn_in_subprocess(
    addrs: list[str], total: int, clients: int = 32, timeout: float = 110.0
) -> ChurnResult:
    """``churn_connections`` in a child process (its own GIL and core share).

    The node under test and the churning clients then do not take turns on one GIL;
    on a loaded 2-core box that halves the wall time.
    """
    root = Path(__file__).resolve().parents[2]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.adversarial.hostile", "churn", addrs[0], str(total),
        str(clients), cwd=root, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = out.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"churn process exited with {proc.returncode}")
    return ChurnResult(**json.loads(lines[-1]))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "churn":
        logging.disable(logging.CRITICAL)
        res = churn_connections([sys.argv[2]], int(sys.argv[3]), int(sys.argv[4]))
        print(json.dumps(dataclasses.asdict(res)))
    else:
        sys.exit("usage: python -m tests.adversarial.hostile churn <multiaddr> <total> <clients>")
