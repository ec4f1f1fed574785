"""Compressed gossip: public copies and error feedback (Choco-Gossip, EF, EControl).

What travels is never a compressed *model* (a top-1% model is 99% zeros: nothing to
average with) but a compressed *difference to the public copy*: every receiver j of
peer i holds x_hat_i, the public copy of i's model, and i knows exactly what that copy
is (it decodes its own payload). With g_t = x_t - x_{t-1} (progress since i's previous
send to j: training and merging) and e_t = x_{t-1} - x_hat_t (what the copy still
lacks), i sends::

    feedback=none:      c_t = C(g_t)                  (the copy drifts: e grows)
    feedback=ef:        c_t = C(e_t + g_t) = C(x_t - x_hat_t)      (Choco-Gossip)
    feedback=econtrol:  c_t = C(eta e_t + g_t)                     (EControl)
    all:                x_hat_{t+1} = x_hat_t + c_t;  e_{t+1} = e_t + g_t - c_t

so x_hat_{t+1} = x_t - e_{t+1}: the copy is the model minus the error not yet sent;
plain error feedback is exactly Choco's q = C(x - x_hat), and EControl feeds back only
eta of the error. The merge (Choco) compares copies, not models: the receiver's view
of neighbour j is

    y_j = x_i + (x_hat_j - x_hat_i->j)

(x_hat_i->j: the copy of i that j holds), and the merged model is
x_i + gamma (rule({x_i} ∪ {y_j}) - x_i): with the mean, x_i + gamma/n sum_j (x_hat_j -
x_hat_i), Choco's consensus step; any robust rule filters the y_j the same way.

Keeping copies in sync: the sender keeps one *track* (public copy, last sent model,
version) per group of receivers that hold the same copy. Pushing to every neighbour
(the simulator's default) keeps one track; a fanout subset splits a track. The first
message to a receiver without a track is a keyframe (``base`` = 0: the copy *is* the
decoded body; the model int8-quantized by default, ``keyframe=full`` sends float32; the
quantization error is the first error the feedback sends); every other DIFF names the
version it applies to (``base``: the seq, >= 1, of the previous DIFF to that
receiver). A receiver whose copy is missing or at another version (lost message,
restart, partition) counts ``desync`` and sends RESYNC once; the sender then drops it
from its track, so its next message to it is a keyframe.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from rumor.protocols.events import PeerId, Vector
from rumor.protocols.hooks import Compression
from rumor.protocols.messages import CompressedBody

F32 = npt.NDArray[np.float32]


def shared_seed(sender: bytes, round_: int, seq: int) -> int:
    """The seed sender and receiver derive from a DIFF header (rand-k, QSGD dither)."""
    h = hashlib.sha256(b"rumor/seed/v1" + sender + struct.pack(">QQ", round_, seq))
    return int.from_bytes(h.digest()[:8], "big")


def full_body(x: Vector) -> CompressedBody:
    """The ``full`` scheme: d float32 values, lossless."""
    v = np.ascontiguousarray(x, dtype="<f4")
    return CompressedBody("full", int(v.shape[0]), v.tobytes())


@dataclass
class Track:
    """What every member receiver holds of this peer: ``public`` at ``version``."""

    public: F32
    last: F32  # the model at the last send (e = last - public)
    version: int
    members: set[PeerId] = field(default_factory=set)


@dataclass
class Copy:
    """A neighbour's public copy as this peer holds it."""

    vector: F32
    version: int


class DifferenceGossip:
    """Sender tracks and receiver copies of one peer (see the module docstring)."""

    def __init__(self, compression: Compression | None, feedback: str = "ef",
                 eta: float = 1.0) -> None:
        if feedback not in ("none", "ef", "econtrol"):
            raise ValueError(f"feedback must be none, ef or econtrol, got {feedback!r}")
        self.compression = compression
        self.feedback = feedback
        self.eta = eta if feedback == "econtrol" else 1.0
        self.tracks: list[Track] = []
        self.copies: dict[PeerId, Copy] = {}
        self.asked: set[PeerId] = set()  # RESYNC sent, no keyframe yet

    @property
    def compressing(self) -> bool:
        return self.compression is not None and self.compression.name is not None

    # ------------------------------------------------------------------ sender
    def track_of(self, peer: PeerId) -> Track | None:
        for t in self.tracks:
            if peer in t.members:
                return t
        return None

    def groups(self, targets: list[PeerId]) -> list[tuple[list[PeerId], Track | None]]:
        """Targets grouped by the track they are in (None: they need a keyframe)."""
        out: dict[int, tuple[list[PeerId], Track | None]] = {}
        for p in targets:
            t = self.track_of(p)
            out.setdefault(id(t) if t is not None else 0, ([], t))[0].append(p)
        return [out[k] for k in sorted(out, key=lambda k: (k != 0, sorted(out[k][0])))]

    def keyframe(self, x: Vector, members: list[PeerId], *, seq: int, seed: int,
                 num_samples: int, full: bool = False) -> CompressedBody:
        """A keyframe for ``members``: a new track whose copy is the decoded body
        (``full``: the model itself in float32, so the copy is exact)."""
        assert self.compression is not None
        self._detach(members)
        v = np.array(x, dtype=np.float32)
        if full:
            body, public = full_body(v), v.copy()
        else:
            body = self.compression.keyframe(v, seed=seed)
            public = np.array(self.compression.decompress(body, seed=seed), dtype=np.float32)
        self.tracks.append(Track(public, v, seq, set(members)))
        return replace(body, base=0, num_samples=num_samples)

    def difference(self, x: Vector, track: Track, members: list[PeerId], *, seq: int,
                   seed: int, num_samples: int) -> CompressedBody:
        """The compressed difference for ``members`` of ``track`` (split off when the
        others are not sent to), applied to their copy at once."""
        assert self.compression is not None
        if set(members) != track.members:
            self._detach(members)
            track = Track(track.public.copy(), track.last.copy(), track.version, set(members))
            self.tracks.append(track)
        x32 = np.asarray(x, dtype=np.float32)
        g = x32 - track.last
        if self.feedback == "none":
            signal = g
        elif self.feedback == "ef":
            signal = x32 - track.public  # = e + g
        else:
            signal = np.float32(self.eta) * (track.last - track.public) + g
        body = self.compression.compress(signal.astype(np.float32), seed=seed)
        c = self.compression.decompress(body, seed=seed)  # exactly what receivers add
        base = track.version
        track.public = track.public + np.asarray(c, dtype=np.float32)
        track.last = x32.copy()
        track.version = seq
        return replace(body, base=base, num_samples=num_samples)

    def public_of(self, peer: PeerId) -> F32 | None:
        t = self.track_of(peer)
        return t.public if t is not None else None

    def resync(self, peer: PeerId) -> None:
        """``peer`` lost its copy of us: its next message is a keyframe."""
        self._detach([peer])

    def forget(self, peer: PeerId) -> None:
        self._detach([peer])
        self.copies.pop(peer, None)
        self.asked.discard(peer)

    def _detach(self, members: list[PeerId]) -> None:
        drop = set(members)
        for t in self.tracks:
            t.members -= drop
        self.tracks = [t for t in self.tracks if t.members]

    # ---------------------------------------------------------------- receiver
    def receive(self, sender: PeerId, body: CompressedBody, decoded: Vector,
                seq: int) -> F32 | None:
        """The sender's updated public copy, or None when this peer's copy is not at
        ``body.base`` (desync: the caller asks for a keyframe)."""
        if body.base == 0:  # a keyframe
            copy = Copy(np.array(decoded, dtype=np.float32), seq)
            self.copies[sender] = copy
            self.asked.discard(sender)
            return copy.vector
        have = self.copies.get(sender)
        if have is None or have.version != body.base:
            return None
        new = Copy(have.vector + np.asarray(decoded, dtype=np.float32), seq)
        self.copies[sender] = new  # a new array: buffered views of the old stay valid
        return new.vector

    def view(self, sender: PeerId, public: Vector, own: Vector) -> Vector:
        """y_j = x_i + (x_hat_j - x_hat_i->j) when this peer compresses and ``sender``
        holds a copy of it, else x_hat_j (module docstring)."""
        mine = self.public_of(sender) if self.compressing else None
        if mine is None:
            return public
        return np.asarray(public, np.float32) + (np.asarray(own, np.float32) - mine)
