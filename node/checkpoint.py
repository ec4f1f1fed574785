"""Atomic per-round checkpoints in the data dir (no pickle), validated on load.

DATA_DIR/checkpoint.npz holds ``params`` (float32 model vector), ``round`` (the next
round to train) and ``model`` (name); the vector's length is the model's dimension.

Saving writes a temp file (``checkpoint.*.tmp``), fsyncs it, keeps the current
checkpoint as checkpoint.prev.npz (a hard link, so checkpoint.npz never disappears),
renames the temp file over checkpoint.npz and fsyncs the directory: a kill -9 at any
instant leaves a complete checkpoint.npz (old or new) and at most one stray temp file.

Loading (:func:`load_checkpoint`, once at start) removes stray temp files, validates
checkpoint.npz against the expected model (a zip of the three arrays, model name,
dimension, finite values, round >= 0) and falls back to checkpoint.prev.npz, or to a
fresh start, saying why in ``LoadResult.warnings``. A rejected checkpoint.npz is moved
aside to checkpoint.rejected.npz, so the next save cannot rotate it over the good
previous one, and the user can still look at it.

The optimizer has no state across rounds (SGD momentum restarts every round, see
rumor.node.trainer), so the model and the round are the whole state to resume.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rumor.protocols.errors import ConfigError

CHECKPOINT_FILE = "checkpoint.npz"
PREVIOUS_FILE = "checkpoint.prev.npz"
REJECTED_FILE = "checkpoint.rejected.npz"
TEMP_GLOB = "checkpoint*.tmp"
_KEYS = ("params", "round", "model")
_SLACK = 1 << 16  # zip and .npy headers take ~1 KB: never read a much larger file


@dataclass(frozen=True)
class Checkpoint:
    params: npt.NDArray[np.float32]
    round: int
    model: str


@dataclass(frozen=True)
class LoadResult:
    """What :func:`load_checkpoint` found: a valid checkpoint or None, and why."""

    checkpoint: Checkpoint | None
    warnings: list[str] = field(default_factory=list)
    source: Path | None = None  # the file the checkpoint came from


class CheckpointError(ConfigError):
    """A checkpoint file is damaged or belongs to another model."""


def save_checkpoint(data_dir: Path, ckpt: Checkpoint) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / CHECKPOINT_FILE
    fd, tmp = tempfile.mkstemp(prefix="checkpoint.", suffix=".tmp", dir=data_dir)
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
        _keep_previous(data_dir, path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(data_dir)
    return path


def _keep_previous(data_dir: Path, path: Path) -> None:
    """checkpoint.npz -> checkpoint.prev.npz; checkpoint.npz stays in place meanwhile."""
    if not path.is_file():
        return
    prev = data_dir / PREVIOUS_FILE
    link = data_dir / f"checkpoint.prev-{secrets.token_hex(4)}.tmp"
    try:
        os.link(path, link)
    except OSError:  # no hard links here: a moment without checkpoint.npz, prev covers it
        os.replace(path, prev)
        return
    try:
        os.replace(link, prev)
    except BaseException:
        link.unlink(missing_ok=True)
        raise


def _fsync_dir(directory: Path) -> None:
    """Make the renames durable (POSIX); a no-op where directories cannot be opened."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temp_files(data_dir: Path) -> tuple[int, int]:
    """Delete ``checkpoint*.tmp`` left by interrupted writes: (files, bytes) removed.

    Call it before this process saves (a data dir has one writer: its peer).
    """
    files = size = 0
    for tmp in data_dir.glob(TEMP_GLOB):
        try:
            if not tmp.is_file() or tmp.is_symlink():
                continue
            n = tmp.stat().st_size
            tmp.unlink()
        except OSError:
            continue
        files += 1
        size += n
    return files, size


def read_checkpoint(path: Path, *, model: str | None = None,
                    dimension: int | None = None) -> Checkpoint:
    """One checkpoint file, validated; CheckpointError says what is wrong with it.

    ``model`` and ``dimension``, when given, must match. allow_pickle is off.
    """
    try:
        size = path.stat().st_size
        if dimension is not None and size > 4 * dimension + _SLACK:
            raise CheckpointError(f"{size:,} bytes is too large for {dimension} parameters")
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise CheckpointError("not a checkpoint (a bare .npy array, not an .npz)")
        with loaded as z:
            missing = [k for k in _KEYS if k not in z.files]
            if missing:
                raise CheckpointError(f"missing {', '.join(map(repr, missing))}")
            params, round_, name = z["params"], z["round"], z["model"]
    except CheckpointError:
        raise
    except Exception as exc:  # a damaged file can fail anywhere in numpy's zip/npy parsing
        raise CheckpointError(f"unreadable ({type(exc).__name__}: {exc})") from None
    return _validate(params, round_, name, model=model, dimension=dimension)


def _validate(params: np.ndarray, round_: np.ndarray, name: np.ndarray, *,
              model: str | None, dimension: int | None) -> Checkpoint:
    if name.shape != () or name.dtype.kind != "U":
        raise CheckpointError(f"'model' is not a name (dtype {name.dtype}, shape {name.shape})")
    if model is not None and str(name) != model:
        raise CheckpointError(f"it is for model {str(name)!r}, not {model!r}")
    if params.ndim != 1 or not np.issubdtype(params.dtype, np.floating):
        raise CheckpointError(
            f"'params' is not a float vector (dtype {params.dtype}, shape {params.shape})"
        )
    if dimension is not None and params.shape[0] != dimension:
        raise CheckpointError(
            f"it has {params.shape[0]} parameters, model {model or str(name)!r} has {dimension}"
        )
    with np.errstate(over="ignore"):  # float64 beyond float32's range: counted below
        vec = params.astype(np.float32)
    bad = int(np.count_nonzero(~np.isfinite(vec)))
    if bad:
        raise CheckpointError(f"{bad} of {vec.size} parameters are NaN or infinite")
    if round_.shape != () or not np.issubdtype(round_.dtype, np.integer):
        raise CheckpointError(f"'round' is not an integer (dtype {round_.dtype})")
    if int(round_) < 0:
        raise CheckpointError(f"round {int(round_)} is negative")
    return Checkpoint(params=vec, round=int(round_), model=str(name))


def load_checkpoint(data_dir: Path, *, model: str, dimension: int) -> LoadResult:
    """The newest valid checkpoint for ``model`` of ``dimension`` in data_dir, if any.

    Tries checkpoint.npz, then checkpoint.prev.npz; every file skipped, every stray
    temp file removed, and the fallback taken is a line in ``warnings`` (for the caller
    to show). Never raises for a damaged file: a start from round 0 is always possible.
    """
    warnings: list[str] = []
    files, size = remove_stale_temp_files(data_dir)
    if files:
        warnings.append(
            f"removed {files} stale checkpoint temp file(s) ({size:,} bytes) "
            "left by an interrupted write"
        )
    current, prev = data_dir / CHECKPOINT_FILE, data_dir / PREVIOUS_FILE
    if not current.exists() and not prev.exists():
        return LoadResult(None, warnings)
    if not current.exists():
        warnings.append(f"{current.name} is missing; trying {prev.name}")
    found: Checkpoint | None = None
    source: Path | None = None
    current_rejected = False
    for path in (current, prev):
        if not path.exists():
            continue
        try:
            found = read_checkpoint(path, model=model, dimension=dimension)
        except CheckpointError as exc:
            warnings.append(f"{path.name} rejected: {exc}")
            current_rejected |= path == current
            continue
        source = path
        break
    if current_rejected:
        warnings.append(_move_aside(current, data_dir / REJECTED_FILE))
    if found is None:
        warnings.append("no usable checkpoint: starting fresh from round 0")
    elif source == prev:
        warnings.append(f"resumed from the previous checkpoint {prev.name} (round {found.round})")
    return LoadResult(found, warnings, source)


def _move_aside(path: Path, to: Path) -> str:
    """Keep a rejected file for the user, but out of the way of the next save's rotation."""
    try:
        os.replace(path, to)
    except OSError as exc:
        try:
            path.unlink()
        except OSError:
            return f"could not move {path.name} aside or remove it ({exc})"
        return f"removed {path.name} (could not move it aside: {exc})"
    return f"moved {path.name} aside to {to.name}"
