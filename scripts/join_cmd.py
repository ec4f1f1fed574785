"""``rumor join``: run one peer on the real network.

With no --bootstrap it starts a new mesh and prints the multiaddr others join with.
Ctrl-C / SIGTERM stop it cleanly: the checkpoint of the last finished round is on
disk, streams and the libp2p host are closed. Started again with the same
--node-dir, it keeps its PeerID and resumes from that checkpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rumor.node.api import start_api
from rumor.node.assembly import build_runtime
from rumor.node.dashboard.serve import serve_join
from rumor.node.identity import load_or_create_identity
from rumor.node.transport.addresses import write_multiaddr_file
from rumor.node.transport.libp2p import Libp2pTransport
from rumor.node.transport.mdns import default_mdns
from rumor.node.transport.peer_book import BOOK_FILE
from rumor.node.transport.reachability import ReachabilityConfig
from rumor.protocols.errors import ConfigError
from rumor.scripts.node_options import add_node_flags, node_config
from rumor.scripts.options import (
    add_config_flag,
    add_threads_flag,
    announce_multiaddr,
    attack_spec,
    compress_help,
    existing_file,
    listen_multiaddr,
    nonneg_int,
    peer_multiaddr,
    port_or_any,
    positive_int,
    renamed_flag,
    writable_dir,
)
from rumor.scripts.tables import console as make_console
from rumor.scripts.tables import eta


def add_parser(sub: Any) -> None:
    p = sub.add_parser("join", help="run one peer that joins (or starts) a live mesh")
    p.add_argument("--bootstrap", action="append", type=peer_multiaddr, default=[],
                   metavar="MULTIADDR",
                   help="a peer to join through (/ip4/.../tcp/.../p2p/ID); repeatable")
    p.add_argument("--bootstrap-file", type=existing_file,
                   help="a file with one bootstrap multiaddr per line (default: none)")
    p.add_argument("--node-dir", type=writable_dir, default=Path("rumor-data"), metavar="DIR",
                   help="this peer's identity key and checkpoints; started again with the "
                   "same dir it keeps its PeerID and resumes")
    renamed_flag(p, "--data-dir", "this peer's identity and checkpoints are --node-dir DIR; "
                 "datasets are --dataset-dir DIR")
    p.add_argument("--listen", action="append", type=listen_multiaddr, default=[],
                   metavar="MULTIADDR",
                   help="listen address (default /ip4/127.0.0.1/tcp/0; /ip4/0.0.0.0/tcp/P: "
                   "every interface, printed as each interface's address); repeatable")
    p.add_argument("--announce", action="append", type=announce_multiaddr, default=[],
                   metavar="MULTIADDR",
                   help="an address others should dial, e.g. a public IP or a port forward "
                   "(/ip4/203.0.113.7/tcp/4001); advertised first; repeatable")
    p.add_argument("--api-host", default="127.0.0.1", help="HTTP API address (loopback)")
    p.add_argument("--api-port", type=port_or_any, default=0, help="HTTP API port (0: any)")
    p.add_argument("--rounds", type=positive_int, default=None,
                   help="stop after R rounds (default: run until Ctrl-C)")
    p.add_argument("--shard", type=nonneg_int, default=None,
                   help="which part of the split to train on (default: hash of the PeerID)")
    p.add_argument("--attack", type=attack_spec, default=None, metavar="SPEC",
                   help="run this peer as a Byzantine attacker (e.g. alie, sign-flip:scale=4, "
                        "label-flip); for robustness tests of your own mesh (default: honest)")
    p.add_argument("--relay", action="store_true",
                   help="serve circuit relay v2 for peers behind NAT (run it on a publicly "
                        "reachable peer)")
    p.add_argument("--hole-punch", action=argparse.BooleanOptionalAction, default=True,
                   help="upgrade relayed links to direct ones with DCUtR hole punching "
                        "(default: on)")
    p.add_argument("--auto-relay", action=argparse.BooleanOptionalAction, default=True,
                   help="when AutoNAT does not find this peer publicly reachable, reserve "
                        "a slot on relay peers and announce its /p2p-circuit address (default: on)")
    p.add_argument("--mdns", action=argparse.BooleanOptionalAction, default=None,
                   help="find peers on the LAN with mDNS, no bootstrap needed (default: on "
                        "when a --listen address is a private LAN address or 0.0.0.0)")
    p.add_argument("--json", action="store_true", help="one JSON line per event on stdout")
    p.add_argument("--dashboard", action="store_true",
                   help="serve this peer's live dashboard (itself, its neighbours, its "
                   "rounds) on --api-host; the URL is printed as 'dashboard: URL'")
    p.add_argument("--dashboard-port", type=port_or_any, default=0, metavar="PORT",
                   help="with --dashboard: its port (default 0: any free port)")
    p.add_argument("--verbose", action="store_true", help="show libp2p's own log messages")
    add_node_flags(p)
    add_config_flag(p)
    add_threads_flag(p)
    p.set_defaults(func=run)


def _bootstrap_list(args: argparse.Namespace) -> list[str]:
    addrs = list(args.bootstrap)
    if args.bootstrap_file is not None:
        path = args.bootstrap_file
        try:
            lines = path.read_bytes().decode("utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read --bootstrap-file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"--bootstrap-file {path} is not UTF-8 text") from None
        for n, ln in enumerate(lines, 1):
            if ln.strip() and not ln.lstrip().startswith("#"):
                try:
                    addrs.append(peer_multiaddr(ln.strip()))
                except argparse.ArgumentTypeError as exc:
                    raise ConfigError(f"--bootstrap-file {path}, line {n}: {exc}") from None
    return addrs


def run(args: argparse.Namespace) -> int:
    if compress_help(args):
        return 0
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if not args.verbose:  # py-libp2p 0.8.1 logs harmless DHT stream errors at ERROR
        logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    console = make_console()
    identity = load_or_create_identity(args.node_dir)
    cfg = dataclasses.replace(node_config(args, shard=args.shard, rounds=args.rounds),
                              attack=args.attack)
    if cfg.attack is not None:
        console.print(f"this peer is Byzantine: it sends {cfg.attack!r} instead of its model",
                      style="yellow", soft_wrap=True, markup=False, highlight=False)
    bootstrap = _bootstrap_list(args)
    listen = args.listen or ["/ip4/127.0.0.1/tcp/0"]
    transport = Libp2pTransport(
        identity,
        listen=listen,
        swarm=cfg.swarm,
        bootstrap=bootstrap,
        announce_addrs=args.announce,
        peer_book=args.node_dir / BOOK_FILE,
        reachability=ReachabilityConfig(
            relay=args.relay, auto_relay=args.auto_relay, hole_punch=args.hole_punch
        ),
        mdns=default_mdns(listen) if args.mdns is None else args.mdns,
    )

    t0 = time.monotonic()
    first: list[int] = []  # the first round this run finished

    def on_event(e: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(e, default=str), flush=True)
        elif e["event"] == "round":
            first[:] = first or [e["round"] - 1]
            left = eta(time.monotonic() - t0, e["round"] - first[0],
                       None if args.rounds is None else args.rounds - first[0])
            console.print(
                f"round {e['round']:4d}  acc {e['acc']:.4f}  neighbours {e['neighbours']}"
                f"  merged {e['received']} updates{' (timeout)' if e['timed_out'] else ''}"
                f"{left}"
            )
        elif e["event"] == "checkpoint_warning":
            console.print(f"[yellow]warning: {e['detail']}")
        elif e["event"] in ("peer_connected", "peer_disconnected", "finished"):
            console.print(f"[dim]{e['event']} {e.get('peer', e.get('round', ''))}")

    runtime, start_round = build_runtime(
        cfg, identity, transport, data_dir=args.node_dir, on_event=on_event
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runtime.stop)
    try:
        api = await start_api(runtime, args.api_host, args.api_port)
    except OSError as exc:
        raise ConfigError(f"cannot serve the API on {args.api_host}:{args.api_port}: "
                          f"{exc.strerror or exc}") from None
    task = asyncio.ensure_future(runtime.run(start_round))
    while not transport.listen_addrs() and not task.done():
        await asyncio.sleep(0.05)
    addrs = transport.listen_addrs()
    multiaddr_file = write_multiaddr_file(args.node_dir, addrs)
    remembered = len(transport.remembered_peers())
    api_port = api.addresses[0][1] if api.addresses else None
    hello = {"event": "listening", "peer_id": identity.peer_id, "addrs": addrs,
             "multiaddr_file": str(multiaddr_file),
             "api": f"http://{args.api_host}:{api_port}", "start_round": start_round}
    if args.json:
        print(json.dumps(hello), flush=True)
    else:
        console.print(f"peer {identity.peer_id} (resuming at round {start_round})",
                      soft_wrap=True, highlight=False, markup=False)
        # Plain lines, never wrapped (rich wraps at 80 columns when redirected, and a
        # wrapped PeerID copied from a log fails the Noise handshake).
        for a in addrs:
            print(f"  join with: rumor join --bootstrap {a}", file=sys.stderr, flush=True)
        if remembered:
            print(f"  {remembered} members remembered in {args.node_dir / BOOK_FILE}",
                  file=sys.stderr, flush=True)
        elif not bootstrap:
            print("  a new mesh: no --bootstrap and no remembered member",
                  file=sys.stderr, flush=True)
        print(f"  addresses written to {multiaddr_file}", file=sys.stderr, flush=True)
        print(f"  API: http://{args.api_host}:{api_port}/status", file=sys.stderr, flush=True)
    async with contextlib.AsyncExitStack() as stack:
        if args.dashboard:
            dash = await stack.enter_async_context(
                serve_join(runtime, host=args.api_host, port=args.dashboard_port))
            if args.json:
                print(json.dumps({"event": "dashboard", "url": dash.url}), flush=True)
            else:
                console.print(f"dashboard: {dash.url}", soft_wrap=True, highlight=False,
                              markup=False)
        try:
            await task
        finally:
            await api.cleanup()
    return 0
