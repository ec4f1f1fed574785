"""Fault injection: kill -9 a process in the middle of large checkpoint writes.

A child process resumes from the data dir (load_checkpoint, as a restarting peer does)
and saves 20 MB checkpoints in a loop; each checkpoint's params all equal its round,
so a torn or mixed write would show. The parent SIGKILLs it while a temp file is
partly written (at 5%..95% of the vector, one point per kill), then loads: every load
must give a complete, consistent checkpoint no older than the last one seen, and leave
no temp file behind. Before the fix each kill left its temp file (here ~10 MB each).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rumor.node.checkpoint import TEMP_GLOB, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
DIM = 5_000_000  # 20 MB of float32
KILLS = 10
DEADLINE_S = 20.0  # per kill: the child must start and be caught mid-write by then

CHILD = f"""
import sys
from pathlib import Path
import numpy as np
from rumor.node.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
d = Path(sys.argv[1])
ck = load_checkpoint(d, model="mlp", dimension={DIM}).checkpoint
r = 0 if ck is None else ck.round + 1
while True:
    save_checkpoint(d, Checkpoint(np.full({DIM}, r, dtype=np.float32), r, "mlp"))
    r += 1
"""


def _temp_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.glob(TEMP_GLOB) if p.is_file())


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _kill_mid_write(d: Path, fraction: float) -> int:
    """Start the child; once it has saved a checkpoint, SIGKILL it while the next
    write's temp file holds ``fraction`` of the vector."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(d)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    threshold = int(fraction * 4 * DIM)
    deadline = time.monotonic() + DEADLINE_S
    first = _inode(d / "checkpoint.npz")
    try:
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the child never got caught mid-write"
            saved = _inode(d / "checkpoint.npz") not in (None, first)  # one save completed
            if saved and any(
                    p.stat().st_size >= threshold for p in d.glob(TEMP_GLOB) if p.is_file()):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.0005)  # polling a file's size; a kill point, not a wait for luck
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return _temp_bytes(d)


def test_sigkill_during_large_checkpoint_writes_never_loses_a_valid_checkpoint(
        tmp_path: Path) -> None:
    started = time.monotonic()
    left_before_load: list[int] = []
    last_round = -1
    for k in range(KILLS):
        left_before_load.append(_kill_mid_write(tmp_path, 0.05 + 0.9 * k / (KILLS - 1)))
        res = load_checkpoint(tmp_path, model="mlp", dimension=DIM)
        assert res.checkpoint is not None, res.warnings
        ck = res.checkpoint
        assert ck.round > last_round and ck.params.shape == (DIM,)  # each child saved one
        assert np.all(ck.params == np.float32(ck.round)), "a torn checkpoint was accepted"
        assert not any("rejected" in w for w in res.warnings), res.warnings
        assert _temp_bytes(tmp_path) == 0 and not list(tmp_path.glob(TEMP_GLOB))
        last_round = ck.round
    assert sum(b > 0 for b in left_before_load) >= KILLS - 1  # the kills did land mid-write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz", "checkpoint.prev.npz"]
    assert time.monotonic() - started < 60
    print(f"kills={KILLS} tmp bytes left by the kills={sum(left_before_load):,} "
          f"after load=0 last round={last_round} in {time.monotonic() - started:.1f}s")
