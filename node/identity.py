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


def load_or_create_identity(data_dir: Path) -> Identity:
    """Load DATA_DIR/identity.key, or create it (0600, atomically) on first start."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KEY_FILE
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
            )
        try:
            seed = bytes.fromhex(path.read_text().strip())
            return Identity.from_seed(seed)
        except ValueError:
            raise ConfigError(f"{path} is not a rumor identity key (64 hex digits)") from None
    ident = Identity.generate()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(ident.seed_bytes().hex() + "\n")
    os.replace(tmp, path)
    return ident
