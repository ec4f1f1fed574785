"""Receiver-side checks with a counted reason for every reject.

A Validator wraps ``codec.decode`` with the checks that need state or context: the
model's expected shape and dtype, replays (per sender and kind, (round, seq) must
strictly increase), stale rounds (UPDATE, GLOBAL, HISTORY older than
``current_round - max_lag``), rounds too far ahead (any kind but STATE newer than
``current_round + max_ahead``: a round near 2**62 cannot drag a peer along), floods (a
token bucket per sender: ``flood_rate`` messages per second, ``flood_burst`` at once,
time passed in), a sender that is not the authenticated link (nothing is relayed
under another identity: HISTORY wraps the origin's message instead) and, for model
bodies, shape, dtype and NaN/Inf. ``check_record`` checks the message inside a
HISTORY like one from its origin. A DIFF body (compressed gossip) is decoded by the
``compression`` hook before the message counts as accepted (``bad_compressed``,
``nan_inf``, ``shape_mismatch``); the decoded vector is ``decoded`` until the next
check. ``check`` never raises: it returns the Envelope or None
and increments ``rejects[reason]``. A rejected message never changes replay or rate
state beyond the flood bucket, so an attacker cannot use a rejected message to block
a later honest one.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from rumor.protocols.choco import shared_seed
from rumor.protocols.codec import Limits, decode
from rumor.protocols.errors import RejectedMessage
from rumor.protocols.events import Vector
from rumor.protocols.hooks import Compression
from rumor.protocols.messages import CompressedBody, Envelope, Kind, ModelBody

#: ``codec.decode``'s signature; a runtime may pass an equivalent (a memo of it)
Decode = Callable[..., Envelope]

#: kinds whose round must not be older than ``current_round - max_lag`` (not DIFF: a
#: late difference still keeps the receiver's copy in sync; the Peer does not merge it)
_LAG_CHECKED = frozenset({Kind.UPDATE, Kind.GLOBAL, Kind.HISTORY})

REJECT_REASONS: tuple[str, ...] = (
    "oversize",
    "malformed",
    "unknown_version",
    "wrong_swarm",
    "unknown_kind",
    "bad_sender",
    "sender_mismatch",
    "flood",
    "bad_signature",
    "replay",
    "stale",
    "too_far_ahead",
    "bad_record",
    "bad_tensor",
    "shape_mismatch",
    "dtype_mismatch",
    "nan_inf",
    "bad_compressed",
    "desync",
)


@dataclass(frozen=True)
class ValidationConfig:
    """What a receiver accepts."""

    swarm: str
    shape: tuple[int, ...]
    dtype: str = "<f4"
    verify_signatures: bool = True
    max_lag: int = 5
    max_ahead: int = 1000
    flood_rate: float = 20.0
    flood_burst: float = 40.0
    max_tracked_senders: int = 10_000
    limits: Limits = field(default_factory=Limits)


class _Buckets:
    """Token buckets per key, LRU-capped so that many identities cannot exhaust memory."""

    def __init__(self, rate: float, burst: float, cap: int) -> None:
        self.rate, self.burst, self.cap = rate, burst, cap
        self._state: OrderedDict[bytes, tuple[float, float]] = OrderedDict()

    def take(self, key: bytes, now: float) -> bool:
        tokens, last = self._state.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        ok = tokens >= 1.0
        self._state[key] = (tokens - 1.0 if ok else tokens, now)
        if len(self._state) > self.cap:
            self._state.popitem(last=False)
        return ok


class Validator:
    """Stateful receiver checks; see the module docstring for the contract."""

    def __init__(self, config: ValidationConfig, compression: Compression | None = None,
                 *, decode: Decode = decode) -> None:
        """``decode``: ``codec.decode`` or a function with its exact contract (same
        Envelope or RejectedMessage for the same bytes and arguments, ``on_header``
        called for every message that gets that far); the simulator passes a memo that
        decodes a message object shared by several receivers once. ``compression``
        decodes DIFF bodies (None: they are rejected as ``bad_compressed``)."""
        self.config = config
        self._decode = decode
        self.compression = compression
        self.decoded: Vector | None = None  # the last accepted DIFF body, decoded
        self.rejects: Counter[str] = Counter()
        self.accepted = 0
        self.last_reject: RejectedMessage | None = None
        self._last: OrderedDict[tuple[bytes, Kind], tuple[int, int]] = OrderedDict()
        self._buckets = _Buckets(config.flood_rate, config.flood_burst, config.max_tracked_senders)

    def check(
        self,
        raw: bytes,
        *,
        now: float,
        current_round: int,
        link_sender: bytes | None = None,
    ) -> Envelope | None:
        """The validated Envelope, or None after counting the reject reason."""
        try:
            env = self._check(raw, now, current_round, link_sender)
        except RejectedMessage as rej:
            self.rejects[rej.reason] += 1
            self.last_reject = rej
            return None
        self.accepted += 1
        return env

    def _check(
        self, raw: bytes, now: float, current_round: int, link_sender: bytes | None
    ) -> Envelope:
        cfg = self.config

        def on_header(kind: Kind, sender: bytes) -> None:
            # Before the signature check: bounded CPU per sender. The sender is not
            # authenticated yet, so the bucket is keyed by the link identity when the
            # transport authenticated one.
            if link_sender is not None and sender != link_sender:
                raise RejectedMessage("sender_mismatch", "message relayed under another identity")
            if not self._buckets.take(link_sender or sender, now):
                raise RejectedMessage("flood", "rate limit exceeded")

        env = self._decode(
            raw,
            swarm=cfg.swarm,
            verify_signature=cfg.verify_signatures,
            limits=cfg.limits,
            on_header=on_header,
        )
        key = (env.sender, env.kind)
        last = self._last.get(key)
        if last is not None and (env.round, env.seq) <= last:
            raise RejectedMessage("replay", f"(round, seq)=({env.round}, {env.seq}) <= {last}")
        if env.kind in _LAG_CHECKED and env.round < current_round - cfg.max_lag:
            raise RejectedMessage("stale", f"round {env.round} < {current_round} - {cfg.max_lag}")
        if env.kind is not Kind.STATE and env.round > current_round + cfg.max_ahead:
            raise RejectedMessage(
                "too_far_ahead", f"round {env.round} > {current_round} + {cfg.max_ahead}")
        if isinstance(env.body, ModelBody):
            self._check_tensor(env.body)
        self.decoded = None
        if isinstance(env.body, CompressedBody):
            self.decoded = self._decompress(env)
        self._last[key] = (env.round, env.seq)
        self._last.move_to_end(key)
        if len(self._last) > cfg.max_tracked_senders:
            self._last.popitem(last=False)
        return env

    def _check_tensor(self, body: ModelBody) -> None:
        cfg = self.config
        tensor = body.tensor
        if tensor.shape != cfg.shape:
            raise RejectedMessage("shape_mismatch", f"{tensor.shape} != {cfg.shape}")
        if tensor.dtype != cfg.dtype:
            raise RejectedMessage("dtype_mismatch", f"{tensor.dtype} != {cfg.dtype}")
        if not tensor.all_finite:
            raise RejectedMessage("nan_inf", "tensor holds NaN or Inf")

    def _decompress(self, env: Envelope) -> Vector:
        body = env.body
        assert isinstance(body, CompressedBody)
        if (body.dim,) != self.config.shape:
            raise RejectedMessage("shape_mismatch", f"({body.dim},) != {self.config.shape}")
        if self.compression is None:
            raise RejectedMessage("bad_compressed", "this peer decodes no compressed bodies")
        return self.compression.decompress(
            body, seed=shared_seed(env.sender, env.round, env.seq))

    def check_record(self, inner: bytes) -> Envelope | None:
        """The forwarded UPDATE inside a HISTORY message, checked like one from its origin
        (swarm, signature, shape, dtype, finiteness) but without replay or rate state;
        None after counting ``bad_record``."""
        try:
            env = self._decode(inner, swarm=self.config.swarm,
                         verify_signature=self.config.verify_signatures,
                         limits=self.config.limits)
            if env.kind is not Kind.UPDATE or not isinstance(env.body, ModelBody):
                raise RejectedMessage("bad_record", f"a forwarded {env.kind.value}")
            self._check_tensor(env.body)
        except RejectedMessage as rej:
            self.rejects["bad_record"] += 1
            self.last_reject = RejectedMessage("bad_record", rej.reason)
            return None
        return env
