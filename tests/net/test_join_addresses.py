"""``rumor join`` prints addresses people can copy: whole lines, dialable, also in a file.

A real ``rumor join`` process with its stderr redirected to a pipe and COLUMNS=40
(rich wraps at the terminal width, or 80 columns, when output is redirected), listening
on 0.0.0.0. Waits are conditions with deadlines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rumor.protocols.identity import Identity

pytestmark = pytest.mark.net

STARTUP = 180.0  # importing torch on a loaded 2-core box


@pytest.mark.timeout(300)
def test_join_prints_unwrapped_dialable_addresses_and_writes_them_to_the_data_dir(
        tmp_path: Path) -> None:
    data = tmp_path / "peer"
    env = {**os.environ, "COLUMNS": "40", "TERM": "dumb"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rumor.scripts.cli", "join", "--node-dir", str(data),
         "--listen", "/ip4/0.0.0.0/tcp/0", "--announce", "/ip4/203.0.113.7/tcp/4001",
         "--swarm", f"addr-test-{os.getpid()}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=env, start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + STARTUP
        while time.monotonic() < deadline:
            raw = proc.stderr.readline()
            if not raw:
                break
            lines.append(raw.decode(errors="replace").rstrip("\n"))
            if "API:" in lines[-1]:
                break
        assert any("API:" in ln for ln in lines), lines
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    peer_id = Identity.from_seed(b"\x00" * 32).peer_id  # only its length matters
    joins = [ln.split("--bootstrap ", 1)[1] for ln in lines if "join with:" in ln]
    written = (data / "multiaddr").read_text().splitlines()
    assert joins == written
    assert joins[0] == f"/ip4/203.0.113.7/tcp/4001/p2p/{joins[0].rsplit('/', 1)[1]}"
    assert any(a.startswith("/ip4/127.0.0.1/tcp/") for a in joins)
    for addr in joins:
        assert "0.0.0.0" not in addr
        assert len(addr.rsplit("/", 1)[1]) == len(peer_id)  # the whole PeerID, one line
