"""PeerBook: the swarm members a peer met, remembered in its data dir across restarts.

A restarted peer dials the members it remembers (besides any ``--bootstrap``), so it
rejoins its mesh with no bootstrap at all, and every member it reaches can be its DHT
entry point. The file is ``DATA_DIR/known_peers.json``::

    {"version": 1, "peer": OWN_PEER_ID, "swarm": NAME, "saved": UNIX_TIME,
     "peers": [{"peer": PEER_ID, "addrs": [MULTIADDR, ...], "seen": UNIX_TIME}, ...],
     "sig": BASE64(Ed25519 signature of the canonical JSON of the other fields)}

It is signed with the peer's own key: a file copied from another data dir, written for
another swarm, edited by hand or damaged is ignored with one warning (the peer then
starts from its ``--bootstrap`` addresses). At most ``limit`` members are kept, the most
recently seen first; addresses are those the member was last reached at (a member that
moved since is found again through the DHT). Writes are atomic (temp file, fsync,
rename).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rumor.protocols.identity import Identity, peer_id_to_bytes, verify

__all__ = ["BOOK_FILE", "PeerBook"]

logger = logging.getLogger(__name__)

BOOK_FILE = "known_peers.json"
VERSION = 1


def _canonical(record: dict[str, Any]) -> bytes:
    body = {k: v for k, v in record.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


@dataclass
class _Entry:
    addrs: tuple[str, ...]
    seen: float


class PeerBook:
    """Members met (peer -> last addresses), loaded from and saved to ``path``."""

    def __init__(self, path: Path, identity: Identity, swarm: str, limit: int = 64) -> None:
        self.path = path
        self._identity = identity
        self._swarm = swarm
        self.limit = limit
        self._entries: dict[str, _Entry] = {}
        self.dirty = False
        self.load_warning: str | None = None

    def load(self) -> list[tuple[str, tuple[str, ...]]]:
        """Read the file (missing: nothing); the members, most recently seen first."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            return self._reject(f"cannot read: {exc.strerror}")
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            sig = base64.b64decode(record["sig"], validate=True)
            owner = str(record["peer"])
        except (ValueError, KeyError, TypeError):
            return self._reject("damaged")
        if owner != self._identity.peer_id or not verify(
                peer_id_to_bytes(owner), sig, _canonical(record)):
            return self._reject("not signed by this peer's key")
        if record.get("version") != VERSION or record.get("swarm") != self._swarm:
            return self._reject(f"written for swarm {record.get('swarm')!r}")
        for item in record.get("peers", []):
            try:
                peer, addrs, seen = str(item["peer"]), item["addrs"], float(item["seen"])
            except (KeyError, TypeError, ValueError):
                continue
            if peer != self._identity.peer_id and isinstance(addrs, list):
                self._entries[peer] = _Entry(tuple(str(a) for a in addrs), seen)
        self._trim()
        return self.members()

    def _reject(self, why: str) -> list[tuple[str, tuple[str, ...]]]:
        self.load_warning = f"ignoring {self.path} ({why})"
        logger.warning("%s", self.load_warning)
        return []

    def members(self) -> list[tuple[str, tuple[str, ...]]]:
        ordered = sorted(self._entries.items(), key=lambda kv: -kv[1].seen)
        return [(peer, e.addrs) for peer, e in ordered]

    def met(self, peer: str, addrs: tuple[str, ...], now: float | None = None) -> None:
        """Remember ``peer`` at ``addrs`` (empty: keep the addresses known before)."""
        if peer == self._identity.peer_id:
            return
        old = self._entries.get(peer)
        if not addrs and old is None:
            return
        keep = addrs or (old.addrs if old is not None else ())
        if old is None or set(old.addrs) != set(keep):
            self.dirty = True
        self._entries[peer] = _Entry(keep, time.time() if now is None else now)
        self._trim()

    def _trim(self) -> None:
        if len(self._entries) > self.limit:
            self._entries = dict(sorted(self._entries.items(),
                                        key=lambda kv: -kv[1].seen)[: self.limit])

    def save(self) -> None:
        """Write the signed file atomically (OSError is logged, not raised)."""
        record: dict[str, Any] = {
            "version": VERSION,
            "peer": self._identity.peer_id,
            "swarm": self._swarm,
            "saved": time.time(),
            "peers": [{"peer": p, "addrs": list(e.addrs), "seen": e.seen}
                      for p, e in sorted(self._entries.items(), key=lambda kv: -kv[1].seen)],
        }
        record["sig"] = base64.b64encode(self._identity.sign(_canonical(record))).decode()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="utf-8") as fh:
                json.dump(record, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            logger.warning("cannot save %s: %s", self.path, exc.strerror or exc)
            tmp.unlink(missing_ok=True)
            return
        self.dirty = False
