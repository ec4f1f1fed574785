"""Checkpoints: damaged or foreign files are rejected with a reason, never a traceback.

load_checkpoint falls back to the previous checkpoint (or a fresh start) and says so;
stray temp files from interrupted writes are removed on load.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rumor.node.checkpoint import (
    CHECKPOINT_FILE,
    PREVIOUS_FILE,
    REJECTED_FILE,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)

DIM = 50
MODEL = "mlp"


def _ckpt(round_: int = 3, dim: int = DIM, fill: float = 0.5) -> Checkpoint:
    return Checkpoint(np.full(dim, fill, dtype=np.float32), round_, MODEL)


def _npz(**arrays: object) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _good() -> bytes:
    return _npz(params=np.zeros(DIM, np.float32), round=np.int64(2), model=np.array(MODEL))


def _npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros(DIM, np.float32))
    return buf.getvalue()


def _flip_data_byte() -> bytes:
    raw = bytearray(_good())
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as z:
        info = z.getinfo("params.npy")
    raw[info.header_offset + 30 + len(info.filename) + 140] ^= 0xFF  # inside the tensor
    return bytes(raw)


DAMAGED: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (lambda: b"", "unreadable"),
    "truncated": (lambda: _good()[: len(_good()) // 2], "unreadable"),
    "truncated-to-header": (lambda: _good()[:40], "unreadable"),
    "random-bytes": (lambda: np.random.default_rng(0).bytes(4096), "unreadable"),
    "random-zip-magic": (lambda: b"PK\x03\x04" + np.random.default_rng(1).bytes(999), "unreadable"),
    "bit-flip-in-data": (_flip_data_byte, "unreadable"),
    "pickle": (lambda: _npz(params=np.array([object()], dtype=object), round=np.int64(1),
                            model=np.array(MODEL)), "unreadable"),
    "bare-npy": (_npy, "not a checkpoint"),
    "missing-round": (lambda: _npz(params=np.zeros(DIM, np.float32), model=np.array(MODEL)),
                      "missing 'round'"),
    "missing-params": (lambda: _npz(round=np.int64(1), model=np.array(MODEL)),
                       "missing 'params'"),
    "wrong-dimension": (lambda: _npz(params=np.zeros(DIM + 1, np.float32), round=np.int64(1),
                                     model=np.array(MODEL)), f"{DIM + 1} parameters"),
    "much-larger-dimension": (lambda: _npz(params=np.zeros(100_000, np.float32),
                                           round=np.int64(1), model=np.array(MODEL)),
                              "too large for 50 parameters"),
    "wrong-model": (lambda: _npz(params=np.zeros(DIM, np.float32), round=np.int64(1),
                                 model=np.array("lenet5")), "for model 'lenet5'"),
    "nan-params": (lambda: _npz(params=np.full(DIM, np.nan, np.float32), round=np.int64(1),
                                model=np.array(MODEL)), "NaN or infinite"),
    "inf-param": (lambda: _npz(params=np.array([np.inf] + [0.0] * (DIM - 1), np.float32),
                               round=np.int64(1), model=np.array(MODEL)), "1 of 50"),
    "float64-overflowing-float32": (lambda: _npz(params=np.full(DIM, 1e300),
                                                 round=np.int64(1), model=np.array(MODEL)),
                                    "NaN or infinite"),
    "negative-round": (lambda: _npz(params=np.zeros(DIM, np.float32), round=np.int64(-1),
                                    model=np.array(MODEL)), "round -1 is negative"),
    "float-round": (lambda: _npz(params=np.zeros(DIM, np.float32), round=np.float64(1.5),
                                 model=np.array(MODEL)), "'round' is not an integer"),
    "matrix-params": (lambda: _npz(params=np.zeros((5, 10), np.float32), round=np.int64(1),
                                   model=np.array(MODEL)), "not a float vector"),
    "int-params": (lambda: _npz(params=np.zeros(DIM, np.int32), round=np.int64(1),
                                model=np.array(MODEL)), "not a float vector"),
    "numeric-model": (lambda: _npz(params=np.zeros(DIM, np.float32), round=np.int64(1),
                                   model=np.array(7)), "'model' is not a name"),
}


def test_saved_checkpoint_loads_back_without_warnings(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _ckpt(round_=4, fill=0.25))
    res = load_checkpoint(tmp_path, model=MODEL, dimension=DIM)
    assert res.warnings == [] and res.source == tmp_path / CHECKPOINT_FILE
    assert res.checkpoint is not None and res.checkpoint.round == 4
    assert res.checkpoint.model == MODEL and res.checkpoint.params.dtype == np.float32
    np.testing.assert_array_equal(res.checkpoint.params, np.full(DIM, 0.25, np.float32))


def test_empty_data_dir_is_a_silent_fresh_start(tmp_path: Path) -> None:
    res = load_checkpoint(tmp_path, model=MODEL, dimension=DIM)
    assert res.checkpoint is None and res.warnings == [] and res.source is None


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_or_foreign_checkpoint_is_rejected_with_its_reason(case: str,
                                                                   tmp_path: Path) -> None:
    make, reason = DAMAGED[case]
    path = tmp_path / CHECKPOINT_FILE
    path.write_bytes(make())
    with pytest.raises(CheckpointError, match=reason):
        read_checkpoint(path, model=MODEL, dimension=DIM)
    res = load_checkpoint(tmp_path, model=MODEL, dimension=DIM)
    assert res.checkpoint is None
    assert any(w.startswith(f"{CHECKPOINT_FILE} rejected:") and reason in w
               for w in res.warnings), res.warnings
    assert res.warnings[-1] == "no usable checkpoint: starting fresh from round 0"
    assert not path.exists() and (tmp_path / REJECTED_FILE).is_file()  # kept for the user


@pytest.mark.parametrize("case", ["truncated", "random-bytes", "wrong-dimension", "nan-params"])
def test_damaged_checkpoint_falls_back_to_the_previous_one(case: str, tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _ckpt(round_=1, fill=1.0))
    save_checkpoint(tmp_path, _ckpt(round_=2, fill=2.0))
    (tmp_path / CHECKPOINT_FILE).write_bytes(DAMAGED[case][0]())
    res = load_checkpoint(tmp_path, model=MODEL, dimension=DIM)
    assert res.checkpoint is not None and res.checkpoint.round == 1
    assert res.source == tmp_path / PREVIOUS_FILE
    assert res.warnings[0].startswith(f"{CHECKPOINT_FILE} rejected:")
    assert res.warnings[-1] == f"resumed from the previous checkpoint {PREVIOUS_FILE} (round 1)"


def test_the_save_after_a_fallback_does_not_rotate_the_damaged_file_over_the_good_one(
        tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _ckpt(round_=1))
    save_checkpoint(tmp_path, _ckpt(round_=2))
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"garbage")
    assert load_checkpoint(tmp_path, model=MODEL, dimension=DIM).source == tmp_path / PREVIOUS_FILE
    save_checkpoint(tmp_path, _ckpt(round_=2))
    assert read_checkpoint(tmp_path / PREVIOUS_FILE).round == 1
    save_checkpoint(tmp_path, _ckpt(round_=3))
    assert read_checkpoint(tmp_path / PREVIOUS_FILE).round == 2
    assert load_checkpoint(tmp_path, model=MODEL, dimension=DIM).checkpoint.round == 3  # type: ignore[union-attr]


def test_both_checkpoints_damaged_starts_fresh_and_says_why(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"")
    (tmp_path / PREVIOUS_FILE).write_bytes(b"xx")
    res = load_checkpoint(tmp_path, model=MODEL, dimension=DIM)
    assert res.checkpoint is None
    assert [w.split(":")[0] for w in res.warnings[:2]] == [
        f"{CHECKPOINT_FILE} rejected", f"{PREVIOUS_FILE} rejected"]
    assert res.warnings[-1].startswith("no usable checkpoint")


def test_missing_current_with_a_previous_resumes_from_it(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _ckpt(round_=5))
    os.replace(tmp_path / CHECKPOINT_FILE, tmp_path / PREVIOUS_FILE)
    res = load_checkpoint(tmp_path, model=MODEL, dimension=DIM)
    assert res.checkpoint is not None and res.checkpoint.round == 5
    assert res.warnings[0] == f"{CHECKPOINT_FILE} is missing; trying {PREVIOUS_FILE}"


def test_checkpoint_that_is_a_directory_is_rejected(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_FILE).mkdir()
    res = load_checkpoint(tmp_path, model=MODEL, dimension=DIM)
    assert res.checkpoint is None and "unreadable" in res.warnings[0]


def test_each_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _ckpt(round_=1))
    assert not (tmp_path / PREVIOUS_FILE).exists()
    save_checkpoint(tmp_path, _ckpt(round_=2))
    save_checkpoint(tmp_path, _ckpt(round_=3))
    assert read_checkpoint(tmp_path / CHECKPOINT_FILE).round == 3
    assert read_checkpoint(tmp_path / PREVIOUS_FILE).round == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE, PREVIOUS_FILE]


def test_stale_temp_files_are_removed_on_load_and_counted(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _ckpt(round_=2))
    (tmp_path / "checkpointab12cd.tmp").write_bytes(b"x" * 1000)  # the old naming
    (tmp_path / "checkpoint.zz9.tmp").write_bytes(b"y" * 24)
    (tmp_path / "checkpoint.prev-00ff00ff.tmp").write_bytes(b"")
    (tmp_path / "identity.key").write_bytes(b"k")  # not ours to touch
    (tmp_path / "notes.tmp").write_bytes(b"n")
    res = load_checkpoint(tmp_path, model=MODEL, dimension=DIM)
    assert res.checkpoint is not None and res.checkpoint.round == 2
    assert res.warnings == [
        "removed 3 stale checkpoint temp file(s) (1,024 bytes) left by an interrupted write"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        CHECKPOINT_FILE, "identity.key", "notes.tmp"]


def test_a_failed_save_leaves_no_temp_file_and_the_old_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_checkpoint(tmp_path, _ckpt(round_=1))

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path, _ckpt(round_=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]
    assert read_checkpoint(tmp_path / CHECKPOINT_FILE).round == 1


def test_save_fsyncs_the_file_and_the_directory(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    kinds: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        kinds.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    save_checkpoint(tmp_path, _ckpt(round_=1))
    save_checkpoint(tmp_path, _ckpt(round_=2))
    assert kinds == ["file", "dir", "file", "dir"]


def test_build_runtime_resumes_falls_back_or_starts_fresh_and_reports_warnings(
        tmp_path: Path) -> None:
    from rumor.node.assembly import NodeConfig, build_runtime
    from rumor.node.transport.memory import MemoryHub, MemoryTransport
    from tests.helpers import ident

    cfg = NodeConfig(swarm="ck", shards=2, shard=0, aggregator="mean")
    me = ident(0)

    def build() -> tuple[int, list[str], np.ndarray]:
        events: list[dict[str, object]] = []
        rt, start = build_runtime(cfg, me, MemoryTransport(MemoryHub(), me.peer_id),
                                  data_dir=tmp_path, on_event=events.append)
        assert all(e["event"] == "checkpoint_warning" for e in events)
        return start, [str(e["detail"]) for e in events], rt.learner.params.numpy()

    start, warnings, fresh = build()
    assert (start, warnings) == (0, [])
    dim = fresh.shape[0]
    save_checkpoint(tmp_path, Checkpoint(np.full(dim, 0.5, np.float32), 4, "mlp"))
    save_checkpoint(tmp_path, Checkpoint(np.full(dim, 0.5, np.float32), 5, "mlp"))
    assert build()[:2] == (5, [])
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"\0" * 100)  # damaged: the previous one
    start, warnings, params = build()
    assert start == 4 and np.all(params == 0.5)
    assert warnings[-1] == f"resumed from the previous checkpoint {PREVIOUS_FILE} (round 4)"
    for _ in range(2):  # both checkpoints of another dimension
        save_checkpoint(tmp_path, Checkpoint(np.zeros(dim + 7, np.float32), 9, "mlp"))
    start, warnings, params = build()
    assert start == 0 and params.shape == (dim,)
    assert f"it has {dim + 7} parameters, model 'mlp' has {dim}" in warnings[0]
    assert warnings[-1] == "no usable checkpoint: starting fresh from round 0"
