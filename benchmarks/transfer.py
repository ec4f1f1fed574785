"""MB/s of a 10 MB model update over /rumor/update/1 vs a raw libp2p stream.

    python -m benchmarks.transfer [--mb 10] [--reps 5] [--small 200]

Two processes on 127.0.0.1: this one (sender) and a child (receiver) started with
``--serve``. Each process runs two libp2p hosts: a Libp2pTransport (our framing, our
asyncio<->trio bridge, one reused stream per peer) and a bare trio host with a raw
protocol handler (no bridge, no queue). Every timing is send start -> 1-byte ack back
from the receiver after it holds the whole message, so both paths pay one round trip.

Figures printed:
- ours:             Libp2pTransport.send(10 MB) + ack (a Received) through our transport
- raw reused:       one raw stream kept open, write 10 MB, read until 10 MB, ack
- raw new stream:   a new stream (dial-free, multistream-select) per message
- small messages:   per-message latency of 1 KiB sends, reused vs new stream per message
The ratio ours/raw says what the transport's framing and bridge cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from multiaddr import Multiaddr

from rumor.node.transport.base import Received
from rumor.node.transport.libp2p import Libp2pTransport, encode_frame_header
from rumor.protocols.identity import Identity

RAW = TProtocol("/rumor-bench/raw/1")
LISTEN = "/ip4/127.0.0.1/tcp/0"
CHUNK = 1 << 20


def _raw_host(seed: bytes) -> Any:
    return new_host(
        key_pair=create_new_key_pair(seed),
        listen_addrs=[Multiaddr(LISTEN)],
        muxer_preference="YAMUX",
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )


async def _read_exactly(stream: Any, n: int) -> bytes | None:
    chunks: list[bytes] = []
    while n > 0:
        try:
            chunk = await stream.read(min(n, CHUNK))
        except Exception:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------- receiver (child)


async def _raw_server(ready: Callable[[list[str]], None]) -> None:
    host = _raw_host(b"\x51" * 32)

    async def handler(stream: Any) -> None:
        while True:
            header = await _read_exactly(stream, 4)
            if header is None:
                break
            body = await _read_exactly(stream, int.from_bytes(header, "big"))
            if body is None:
                break
            await stream.write(b"k")
        await stream.close()

    host.set_stream_handler(RAW, handler)
    async with host.run(listen_addrs=[Multiaddr(LISTEN)]):
        ready([str(a) for a in host.get_addrs()])
        await trio.sleep_forever()


async def serve() -> None:
    transport = Libp2pTransport(
        Identity.from_seed(b"\x52" * 32), discovery_interval=None, max_message=256 << 20
    )
    await transport.start()
    raw_addrs: list[list[str]] = []
    got = threading.Event()

    def ready(addrs: list[str]) -> None:
        raw_addrs.append(addrs)
        got.set()

    threading.Thread(target=trio.run, args=(_raw_server, ready), daemon=True).start()
    await asyncio.to_thread(got.wait, 30)
    print(json.dumps({"ours": transport.listen_addrs(), "raw": raw_addrs[0]}), flush=True)
    stdin_closed = asyncio.ensure_future(asyncio.to_thread(sys.stdin.read))
    while not stdin_closed.done():
        next_event = asyncio.ensure_future(transport.next_event())
        done, _ = await asyncio.wait(
            {next_event, stdin_closed}, return_when=asyncio.FIRST_COMPLETED
        )
        if next_event not in done:
            next_event.cancel()
            break
        event = next_event.result()
        if isinstance(event, Received):
            await transport.send(event.sender, b"k")
    await transport.close()


# ---------------------------------------------------------------- sender (parent)


async def _raw_client(addr: str, payload: bytes, reps: int, small: int) -> dict[str, list[float]]:
    host = _raw_host(b"\x53" * 32)
    maddr = Multiaddr(addr)
    pid = ID.from_base58(maddr.value_for_protocol("p2p"))
    frame = [encode_frame_header(len(payload)), payload]
    tiny = [encode_frame_header(1024), b"t" * 1024]
    out: dict[str, list[float]] = {"reused": [], "new": [], "small_reused": [], "small_new": []}

    async def one(stream: Any, parts: list[bytes]) -> None:
        for part in parts:
            await stream.write(part)
        assert await _read_exactly(stream, 1) == b"k"

    async with host.run(listen_addrs=[Multiaddr(LISTEN)]):
        await host.connect(PeerInfo(pid, [maddr.decapsulate(Multiaddr(f"/p2p/{pid}"))]))
        stream = await host.new_stream(pid, [RAW])
        await one(stream, frame)  # warm-up
        for _ in range(reps):
            t0 = time.perf_counter()
            await one(stream, frame)
            out["reused"].append(time.perf_counter() - t0)
        for _ in range(small):
            t0 = time.perf_counter()
            await one(stream, tiny)
            out["small_reused"].append(time.perf_counter() - t0)
        await stream.close()
        for _ in range(reps):
            t0 = time.perf_counter()
            fresh = await host.new_stream(pid, [RAW])
            await one(fresh, frame)
            await fresh.close()
            out["new"].append(time.perf_counter() - t0)
        for _ in range(small):
            t0 = time.perf_counter()
            fresh = await host.new_stream(pid, [RAW])
            await one(fresh, tiny)
            await fresh.close()
            out["small_new"].append(time.perf_counter() - t0)
    return out


async def _ours(addrs: list[str], payload: bytes, reps: int, small: int) -> dict[str, list[float]]:
    transport = Libp2pTransport(
        Identity.from_seed(b"\x54" * 32), discovery_interval=None, max_message=256 << 20
    )
    await transport.start()
    peer = Multiaddr(addrs[0]).value_for_protocol("p2p")
    out: dict[str, list[float]] = {"ours": [], "small_ours": []}
    try:
        await transport.connect(peer, addrs)

        async def one(data: bytes) -> float:
            t0 = time.perf_counter()
            await transport.send(peer, data)
            while not isinstance(await asyncio.wait_for(transport.next_event(), 60), Received):
                pass
            return time.perf_counter() - t0

        await one(payload)  # warm-up
        out["ours"] = [await one(payload) for _ in range(reps)]
        out["small_ours"] = [await one(b"t" * 1024) for _ in range(small)]
    finally:
        await transport.close()
    return out


def _report(mb: float, results: dict[str, list[float]]) -> None:
    def rate(key: str) -> float:
        return mb / statistics.median(results[key])

    def ms(key: str) -> float:
        return 1000 * statistics.median(results[key])

    ours, raw, new = rate("ours"), rate("reused"), rate("new")
    print(f"{mb:.0f} MB update, two processes on 127.0.0.1 (TCP+Noise+yamux), median of runs")
    print(f"  ours (/rumor/update/1 via Libp2pTransport): {ours:7.1f} MB/s")
    print(f"  raw libp2p stream, reused:                  {raw:7.1f} MB/s")
    print(f"  raw libp2p stream, new per message:         {new:7.1f} MB/s")
    print(f"  ratio ours / raw reused:                    {ours / raw:7.2f}")
    print("1 KiB messages, send -> ack latency (median)")
    print(f"  ours (reused stream, bridge):               {ms('small_ours'):7.2f} ms")
    print(f"  raw reused stream:                          {ms('small_reused'):7.2f} ms")
    print(f"  raw new stream per message:                 {ms('small_new'):7.2f} ms")


async def run(mb: float, reps: int, small: int) -> None:
    payload = os.urandom(int(mb * 1_000_000))
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.transfer", "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)
        addrs = json.loads(line)
        results: dict[str, list[float]] = {}

        def raw() -> dict[str, list[float]]:
            out: dict[str, list[float]] = trio.run(
                _raw_client, addrs["raw"][0], payload, reps, small
            )
            return out

        results.update(await asyncio.to_thread(raw))
        results.update(await _ours(addrs["ours"], payload, reps, small))
        _report(mb, results)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mb", type=float, default=10.0)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    asyncio.run(serve() if args.serve else run(args.mb, args.reps, args.small))


if __name__ == "__main__":
    main()
