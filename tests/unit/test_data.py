"""Datasets: the digits loader, cache files, the missing-dataset message, fetchers."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from rumor.node.data import (
    DATASET_NAMES,
    Dataset,
    default_data_dir,
    fetch_dataset,
    is_prepared,
    load_dataset,
)
from rumor.node.data import idx as idxmod
from rumor.node.data import mnist as mnistmod
from rumor.protocols.errors import ConfigError, DatasetMissing


def test_digits_has_the_documented_shapes_dtypes_and_normalisation() -> None:
    ds = load_dataset("digits")
    assert isinstance(ds, Dataset)
    assert ds.x_train.shape == (1438, 1, 8, 8) and ds.x_test.shape == (359, 1, 8, 8)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    assert abs(float(ds.x_train.mean())) < 1e-5
    assert abs(float(ds.x_train.std()) - 1.0) < 1e-3
    assert set(ds.y_train.tolist()) == set(range(10))


def test_digits_split_is_deterministic_and_disjoint() -> None:
    a, b = load_dataset(), load_dataset("digits")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    train = {tuple(r) for r in a.x_train.reshape(len(a.x_train), -1).tolist()}
    test = [tuple(r) for r in a.x_test.reshape(len(a.x_test), -1).tolist()]
    # sklearn digits contains a few duplicate images; nearly all test rows are unseen
    assert sum(t in train for t in test) < 10


def test_digits_read_from_the_csv_are_sklearns_load_digits() -> None:
    from sklearn.datasets import load_digits

    from rumor.node.data.datasets import _digits_arrays, _digits_csv

    assert _digits_csv() is not None  # the fast path, not the sklearn fallback
    images, labels = _digits_arrays()
    bunch = load_digits()
    assert images.dtype == np.float64 and labels.dtype == np.int64
    np.testing.assert_array_equal(images, bunch.images)
    np.testing.assert_array_equal(labels, bunch.target)


def test_missing_dataset_names_the_fetch_command(tmp_path: Path) -> None:
    assert not is_prepared("mnist", tmp_path)
    with pytest.raises(DatasetMissing) as err:
        load_dataset("mnist", tmp_path)
    msg = str(err.value)
    assert "rumor data fetch mnist" in msg and "\n" not in msg
    with pytest.raises(DatasetMissing, match="rumor data fetch fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path)


def test_unknown_dataset_lists_the_choices() -> None:
    with pytest.raises(ConfigError) as err:
        load_dataset("cifar")
    assert all(name in str(err.value) for name in DATASET_NAMES)


def test_default_data_dir_is_under_the_user_cache() -> None:
    assert default_data_dir() == Path.home() / ".cache" / "rumor" / "data"
    assert is_prepared("digits") and fetch_dataset("digits") is None


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(((_Evil(marker), 1), (2, 3), (4, 5)), protocol=2)
    with pytest.raises(mnistmod.UnsafePickle, match="system"):
        mnistmod.load_mnist_pickle(payload)
    with pytest.raises(ConfigError):
        mnistmod.restricted_loads(pickle.dumps(eval, protocol=2))
    assert not marker.exists()


def test_restricted_unpickler_admits_numpy_arrays_and_checks_structure() -> None:
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, (6, 784)) / 256.0).astype(np.float32)
    y = rng.integers(0, 10, 6).astype(np.int64)
    # protocol 4 is the oldest that writes bytes without _codecs.encode (like py2 str)
    data = pickle.dumps(((x, y), (x[:2], y[:2]), (x[:3], y[:3])), protocol=4)
    xtr, ytr, xte, _ = mnistmod.load_mnist_pickle(data)
    assert xtr.shape == (6, 28, 28) and xtr.dtype == np.uint8 and xte.shape == (3, 28, 28)
    np.testing.assert_array_equal(xtr.reshape(6, -1), np.rint(x * 256).astype(np.uint8))
    np.testing.assert_array_equal(ytr, y)
    objs = np.array([1, 2], dtype=object)
    with pytest.raises(ConfigError):
        mnistmod.load_mnist_pickle(pickle.dumps(((objs, y), (x, y), (x, y)), protocol=4))


def test_wheel_with_wrong_sha256_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / mnistmod.MNIST_WHEEL_NAME
    fake.write_bytes(b"not the wheel")
    with pytest.raises(ConfigError, match="sha256"):
        mnistmod.read_wheel(fake)


def _idx(arr: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(
        f">{arr.ndim}I", *arr.shape
    ) + arr.astype(np.uint8).tobytes()


def test_idx_parser_round_trips_and_rejects_bad_headers() -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(idxmod.parse_idx(_idx(arr)), arr)
    with pytest.raises(ConfigError):
        idxmod.parse_idx(_idx(arr)[:-1])
    with pytest.raises(ConfigError):
        idxmod.parse_idx(b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"\x00" * 4)


def test_fashion_mnist_fetch_converts_idx_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 256, (20, 28, 28)),
        "y_train": np.arange(20) % 10,
        "x_test": rng.integers(0, 256, (10, 28, 28)),
        "y_test": np.arange(10),
    }
    for key, fname in idxmod.FASHION_MNIST_FILES.items():
        (src / fname).write_bytes(gzip.compress(_idx(arrays[key])))
    out = idxmod.fetch_fashion_mnist(tmp_path / "data" / "fashion-mnist.npz", src)
    assert out.is_file()
    ds = load_dataset("fashion-mnist", tmp_path / "data")
    assert ds.x_train.shape == (20, 1, 28, 28) and ds.num_classes == 10
    np.testing.assert_array_equal(ds.y_test.numpy(), np.arange(10))


def test_fashion_mnist_without_debian_files_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(DatasetMissing, match="apt-get install dataset-fashion-mnist"):
        idxmod.fetch_fashion_mnist(tmp_path / "f.npz", tmp_path / "absent")


@pytest.mark.slow
def test_prepared_mnist_loads_full_size() -> None:
    if not is_prepared("mnist"):
        pytest.skip("mnist not fetched (rumor data fetch mnist)")
    ds = load_dataset("mnist")
    assert ds.x_train.shape == (50000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
