"""Two peers behind two different NATs train together through a relay peer.

A real NAT in Linux network namespaces (tests/net/netns_lab.py: MASQUERADE routers that
drop unsolicited packets): host-a and host-b cannot dial each other; pub runs
``rumor join --relay`` and is everyone's bootstrap. The NATed peers learn from AutoNAT
that they are private, reserve a slot on the relay, announce their /p2p-circuit
address in the DHT, find each other and exchange updates through the relay; then DCUtR
may punch a direct TCP link through both NATs. The test requires training across the
NATs (each merged the other's signed update) and reports whether the link became
direct (hole punching through MASQUERADE depends on port preservation and timing;
docs/launch.md "Behind NAT" has the measured outcome).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from rumor.node.identity import load_or_create_identity
from tests.net.netns_lab import NatLab, NsPeer, stop_all, unavailable

pytestmark = pytest.mark.net

RUMOR = str(Path(sys.executable).with_name("rumor"))
LEARN = ["--min-updates", "2", "--fanout", "8", "--round-timeout", "5", "--shards", "3"]
WHY_NOT = unavailable()


@pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")
@pytest.mark.timeout(200)
def test_two_peers_behind_two_nats_train_together_through_a_relay(tmp_path: Path) -> None:
    t0 = time.monotonic()
    deadline = t0 + 75  # processes up (torch imports); then 75 s more
    peers: list[NsPeer] = []
    relay_id = load_or_create_identity(tmp_path / "relay").peer_id
    with NatLab() as lab:
        try:
            relay = NsPeer(lab, lab.pub, RUMOR, [
                "--relay", "--listen", f"/ip4/{lab.PUB_IP}/tcp/4001",
                "--node-dir", str(tmp_path / "relay"), "--shard", "0", *LEARN,
            ], str(tmp_path / "relay.log"))
            peers.append(relay)
            boot = f"/ip4/{lab.PUB_IP}/tcp/4001/p2p/{relay_id}"  # all three start at once
            nated = {}
            for i, side in enumerate(("a", "b"), start=1):
                nated[side] = NsPeer(lab, lab.hosts[side], RUMOR, [
                    "--listen", f"/ip4/{lab.HOST_IPS[side]}/tcp/4001", "--bootstrap", boot,
                    "--node-dir", str(tmp_path / side), "--shard", str(i), *LEARN,
                ], str(tmp_path / f"{side}.log"))
                peers.append(nated[side])
            a, b = nated["a"], nated["b"]
            for p in (relay, a, b):
                p.wait_for("listening", lambda p=p: p.of("listening"), deadline)
            t_up = time.monotonic()
            deadline = t_up + 75
            ida, idb = a.hello["peer_id"], b.hello["peer_id"]

            def merged_from(p: NsPeer, sender: str) -> list[dict[str, object]]:
                return [e for e in p.of("round") if sender in e.get("senders", [])]

            a.wait_for("a merged b's update", lambda: merged_from(a, idb), deadline)
            b.wait_for("b merged a's update", lambda: merged_from(b, ida), deadline)
            t_trained = time.monotonic()
            sa, sb = a.status(), b.status()
            for s, other in ((sa, idb), (sb, ida)):
                net = s["network"]
                assert net["reachability"] == "private", net
                assert net["reservations"], net  # a slot on the relay
                assert net["circuit_addrs"], net
                assert other in s["neighbours"], s["neighbours"]
            first_link = sa["network"]["links"].get(idb)

            # DCUtR: give it a little while to punch through both NATs
            def direct() -> bool:
                links = a.status()["network"]["links"]
                return bool(links.get(idb) == "direct")

            upgraded = False
            punch_deadline = min(deadline, time.monotonic() + 15)  # seen after ~2 s
            while time.monotonic() < punch_deadline and not (upgraded := direct()):
                time.sleep(1.0)
            t_end = time.monotonic()
            sr = relay.status()
            assert sr["network"]["relay_service"] is True
            assert sr["network"]["relay_clients"] >= 2, sr["network"]
            rounds_a = max(e["round"] for e in a.of("round"))
            rounds_b = max(e["round"] for e in b.of("round"))
            met = [min((e["_t"] for e in p.of("peer_connected") if e["peer"] == other),
                       default=t_trained) for p, other in ((a, idb), (b, ida))]
            outcome = {
                "peers_up_s": round(t_up - t0, 1),
                "nated_peers_connected_after_up_s": round(min(met) - t_up, 1),
                "trained_across_nats_s": round(t_trained - t_up, 1),
                "first_link": first_link,
                "dcutr_upgraded": upgraded,
                "upgrade_seen_after_s": round(t_end - t_trained, 1) if upgraded else None,
                "rounds": [rounds_a, rounds_b],
                "a_network": a.status()["network"],
            }
            report = os.environ.get("RUMOR_NAT_REPORT")
            if report:
                Path(report).write_text(json.dumps(outcome, indent=2))
            print("NAT test outcome:", json.dumps(outcome))
        finally:
            stop_all(peers)
