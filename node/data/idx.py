"""The idx file format (MNIST's original format) and Fashion-MNIST from Debian.

An idx file is a big-endian header ``00 00 TT ND`` (TT the element type, ND the number
of dimensions), then ND uint32 sizes, then the elements in C order. rumor reads only
unsigned-byte files (TT = 0x08), which is what (Fashion-)MNIST uses. Files may be
gzip-compressed (by name: ``*.gz``).

Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist`` (MIT), which puts
``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` under
``/usr/share/datasets/fashion-mnist/``.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rumor.protocols.errors import ConfigError, DatasetMissing

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
_UBYTE = 0x08


def parse_idx(data: bytes) -> npt.NDArray[np.uint8]:
    """Parse uncompressed idx bytes of unsigned bytes into an array of the header's shape.

    Raises ConfigError on a bad magic, a type other than ubyte, or a size mismatch.
    """
    if len(data) < 4:
        raise ConfigError("idx: file too short")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or ndim == 0:
        raise ConfigError("idx: bad magic number")
    if dtype != _UBYTE:
        raise ConfigError(f"idx: element type 0x{dtype:02x} unsupported (only ubyte)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ConfigError("idx: truncated header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    count = 1
    for s in shape:
        count *= s
    if len(data) - header != count:
        raise ConfigError(f"idx: {len(data) - header} data bytes for shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def read_idx(path: Path) -> npt.NDArray[np.uint8]:
    """Read an idx file, gunzipping when its name ends in ``.gz``."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return parse_idx(raw)


def fetch_fashion_mnist(path: Path, source_dir: Path = FASHION_MNIST_DIR) -> Path:
    """Convert the Debian idx.gz files in ``source_dir`` into the cache at ``path``."""
    from rumor.node.data.datasets import save_cache

    missing = [f for f in FASHION_MNIST_FILES.values() if not (source_dir / f).is_file()]
    if missing:
        raise DatasetMissing(
            f"fashion-mnist files not found in {source_dir}: "
            "run `sudo apt-get install dataset-fashion-mnist`, then `rumor data fetch "
            "fashion-mnist`"
        )
    arr = {k: read_idx(source_dir / f) for k, f in FASHION_MNIST_FILES.items()}
    for split in ("train", "test"):
        x, y = arr[f"x_{split}"], arr[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ConfigError(f"fashion-mnist {split}: shapes {x.shape} and {y.shape}")
    return save_cache(
        path,
        arr["x_train"],
        arr["y_train"].astype(np.int64),
        arr["x_test"],
        arr["y_test"].astype(np.int64),
    )
