"""Atomic per-round checkpoints in the data dir (no pickle).

DATA_DIR/checkpoint.npz holds ``params`` (float32 model vector), ``round`` (the next
round to train), ``dimension`` and ``model`` (name). Written to a temp file, fsynced
and renamed, so a kill -9 at any instant leaves either the old or the new checkpoint.
The optimizer has no state across rounds (SGD momentum restarts every round, see
rumor.node.trainer), so the model and the round are the whole state to resume.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

CHECKPOINT_FILE = "checkpoint.npz"


@dataclass(frozen=True)
class Checkpoint:
    params: npt.NDArray[np.float32]
    round: int
    model: str


def save_checkpoint(data_dir: Path, ckpt: Checkpoint) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / CHECKPOINT_FILE
    fd, tmp = tempfile.mkstemp(prefix="checkpoint", suffix=".tmp", dir=data_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                params=np.asarray(ckpt.params, dtype=np.float32),
                round=np.int64(ckpt.round),
                model=np.array(ckpt.model),
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(data_dir: Path) -> Checkpoint | None:
    """The saved checkpoint, or None when there is none (allow_pickle is off)."""
    path = data_dir / CHECKPOINT_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return Checkpoint(
            params=z["params"].astype(np.float32),
            round=int(z["round"]),
            model=str(z["model"]),
        )
