"""A peer's identity on disk: the Ed25519 seed in DATA_DIR/identity.key, mode 0600.

The same key signs model updates and is the libp2p host key, so the PeerID is stable
across restarts as long as the data dir is kept. The file holds the 32-byte seed,
hex encoded, and nothing else. A key file readable by others is refused.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from rumor.protocols.errors import ConfigError
from rumor.protocols.identity import Identity

KEY_FILE = "identity.key"
_MAX_KEY_FILE = 1024  # 64 hex digits and a newline; anything much larger is not a key


def load_or_create_identity(data_dir: Path) -> Identity:
    """Load DATA_DIR/identity.key, or create it (0600, atomically) on first start.

    ConfigError (one line) for a data dir that cannot be made or written, a key path
    that is not a regular file, a key readable by others, or a file that is not a key.
    """
    path = data_dir / KEY_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot use data dir {data_dir}: {_reason(exc)}") from None
    if path.exists() or path.is_symlink():
        return _load(path)
    ident = Identity.generate()
    tmp = path.with_suffix(".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(ident.seed_bytes().hex() + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {_reason(exc)}") from None
    return ident


def _load(path: Path) -> Identity:
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {_reason(exc)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path} is not a regular file; move it away to create a new key")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
    try:
        with path.open("rb") as fh:
            raw = fh.read(_MAX_KEY_FILE + 1)
        if len(raw) > _MAX_KEY_FILE:
            raise ValueError("too large")
        return Identity.from_seed(bytes.fromhex(raw.decode("ascii").strip()))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {_reason(exc)}") from None
    except ValueError:  # also UnicodeDecodeError
        raise ConfigError(f"{path} is not a rumor identity key (64 hex digits)") from None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
