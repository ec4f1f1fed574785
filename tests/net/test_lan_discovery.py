"""Three peers on one LAN find each other with mDNS, no bootstrap, and train together.

Three network namespaces on one bridge (tests/net/netns_lab.py, LanLab); each runs
``rumor join --listen /ip4/10.78.0.i/tcp/4001`` with no ``--bootstrap`` and no
``--mdns`` flag (a private listen address turns mDNS on by default). Each must see
the other two as neighbours, merge updates from both, and resolve both by mDNS.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests.net.netns_lab import LanLab, NsPeer, stop_all, unavailable

pytestmark = pytest.mark.net

RUMOR = str(Path(sys.executable).with_name("rumor"))
LEARN = ["--min-updates", "2", "--fanout", "8", "--round-timeout", "5", "--shards", "3"]
WHY_NOT = unavailable(need_iptables=False)


@pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")
@pytest.mark.timeout(200)
def test_three_peers_on_one_lan_find_each_other_with_mdns_and_train(tmp_path: Path) -> None:
    t0 = time.monotonic()
    deadline = t0 + 75  # processes up (torch imports); then 75 s more
    peers: list[NsPeer] = []
    with LanLab(3) as lab:
        try:
            for i, (ns, ip) in enumerate(zip(lab.hosts, lab.ips, strict=True)):
                peers.append(NsPeer(lab, ns, RUMOR, [
                    "--listen", f"/ip4/{ip}/tcp/4001", "--node-dir", str(tmp_path / f"p{i}"),
                    "--shard", str(i), *LEARN,
                ], str(tmp_path / f"p{i}.log")))
            for p in peers:
                p.wait_for("listening", lambda p=p: p.of("listening"), deadline)
            t_up = time.monotonic()
            deadline = t_up + 75
            ids = [p.hello["peer_id"] for p in peers]

            def merged_from(p: NsPeer, sender: str) -> bool:
                return any(sender in e.get("senders", []) for e in p.of("round"))

            for p, me in zip(peers, ids, strict=True):
                for other in ids:
                    if other != me:
                        p.wait_for(f"an update from {other}",
                                   lambda p=p, o=other: merged_from(p, o), deadline)
            t_trained = time.monotonic()
            for p, me in zip(peers, ids, strict=True):
                s = p.status()
                assert sorted(s["neighbours"]) == sorted(i for i in ids if i != me), s
            # Each listener hears the other two announcements in its own time (zeroconf's
            # browser thread resolves one service at a time, with 5 s retries); a peer can
            # be dialled by a LAN peer before its own browser has resolved that peer, so
            # the count is awaited, not read once (seen 1 of 2 under load).
            deadline = time.monotonic() + 60
            for p in peers:
                p.wait_for("mDNS to resolve both other peers",
                           lambda p=p: p.status()["network"]["mdns"]["found"] >= 2, deadline)
            connected = [min((e["_t"] for e in p.of("peer_connected")), default=t_trained)
                         for p in peers]
            outcome = {
                "peers_up_s": round(t_up - t0, 1),
                "first_neighbour_after_up_s": round(max(connected) - t_up, 1),
                "all_merged_from_all_s": round(t_trained - t_up, 1),
                "mdns": [p.status()["network"]["mdns"] for p in peers],
            }
            report = os.environ.get("RUMOR_LAN_REPORT")
            if report:
                Path(report).write_text(json.dumps(outcome, indent=2))
            print("LAN test outcome:", json.dumps(outcome))
        finally:
            stop_all(peers)
