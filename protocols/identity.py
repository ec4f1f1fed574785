"""Peer identities: Ed25519 keys and libp2p-compatible PeerIDs. Pure, no I/O.

A PeerID is derived exactly as libp2p does for Ed25519 keys:
    pb   = protobuf PublicKey{Type: Ed25519 (1), Data: 32 raw key bytes}
         = 08 01 12 20 || key                       (36 bytes)
    id   = identity multihash of pb = 00 24 || pb   (38 bytes; pb <= 42 bytes)
    text = base58btc(id)                            ("12D3KooW...")
so the public key can be read back out of the PeerID and a signature checked
against the sender's claimed identity with no lookup.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from rumor.protocols.errors import RejectedMessage

_PB_ED25519_PREFIX = b"\x08\x01\x12\x20"
_IDENTITY_MH_PREFIX = b"\x00\x24"
PEER_ID_BYTES = 38
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


def b58encode(data: bytes) -> str:
    """Bitcoin base58 (libp2p's text form of PeerIDs)."""
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Inverse of b58encode; ValueError on characters outside the alphabet."""
    n = 0
    for c in text:
        if c not in _B58_INDEX:
            raise ValueError(f"invalid base58 character {c!r}")
        n = n * 58 + _B58_INDEX[c]
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * pad + body


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def peer_id_bytes(key: Ed25519PublicKey) -> bytes:
    """The binary PeerID (identity multihash of the protobuf public key)."""
    return _IDENTITY_MH_PREFIX + _PB_ED25519_PREFIX + raw_public_key(key)


def peer_id_text(key: Ed25519PublicKey) -> str:
    """The base58 PeerID, as libp2p prints it."""
    return b58encode(peer_id_bytes(key))


def public_key_from_peer_id(pid: bytes) -> Ed25519PublicKey:
    """Read the Ed25519 key out of a binary PeerID; RejectedMessage('bad_sender') else."""
    if (
        len(pid) != PEER_ID_BYTES
        or not pid.startswith(_IDENTITY_MH_PREFIX + _PB_ED25519_PREFIX)
    ):
        raise RejectedMessage("bad_sender", "sender is not an Ed25519 identity PeerID")
    return Ed25519PublicKey.from_public_bytes(pid[len(_IDENTITY_MH_PREFIX) + 4 :])


@functools.lru_cache(maxsize=65536)
def peer_id_to_bytes(text: str) -> bytes:
    """Binary form of a base58 PeerID text; RejectedMessage('bad_sender') if malformed."""
    try:
        raw = b58decode(text)
    except ValueError as exc:
        raise RejectedMessage("bad_sender", str(exc)) from None
    public_key_from_peer_id(raw)
    return raw


@functools.lru_cache(maxsize=65536)
def peer_id_from_bytes(pid: bytes) -> str:
    """Text form of a binary PeerID."""
    return b58encode(pid)


@dataclass(frozen=True)
class Identity:
    """A peer's signing key and the PeerID derived from it."""

    private_key: Ed25519PrivateKey

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """Deterministic identity from 32 seed bytes (simulator peers, tests)."""
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is exactly 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @functools.cached_property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @functools.cached_property
    def peer_id(self) -> str:
        return peer_id_text(self.public_key)

    @functools.cached_property
    def peer_id_bytes(self) -> bytes:
        return peer_id_bytes(self.public_key)

    def seed_bytes(self) -> bytes:
        """The 32-byte private seed (for persisting; handle with care)."""
        return self.private_key.private_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


def verify(pid: bytes, signature: bytes, message: bytes) -> bool:
    """True iff ``signature`` is the owner of PeerID ``pid`` signing ``message``."""
    key = public_key_from_peer_id(pid)
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
