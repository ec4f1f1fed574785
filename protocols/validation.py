"""Receiver-side checks with a counted reason for every reject.

A Validator wraps ``codec.decode`` with the checks that need state or context: the
model's expected shape and dtype, replays (per sender and kind, (round, seq) must
strictly increase), stale rounds (older than ``current_round - max_lag``), floods (a
token bucket per sender: ``flood_rate`` messages per second, ``flood_burst`` at once,
time passed in) and NaN/Inf. ``check`` never raises: it returns the Envelope or None
and increments ``rejects[reason]``. A rejected message never changes replay or rate
state beyond the flood bucket, so an attacker cannot use a rejected message to block
a later honest one.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import numpy as np

from rumor.protocols.codec import Limits, decode
from rumor.protocols.errors import RejectedMessage
from rumor.protocols.messages import Envelope, Kind

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
    "bad_tensor",
    "shape_mismatch",
    "dtype_mismatch",
    "nan_inf",
)


@dataclass(frozen=True)
class ValidationConfig:
    """What a receiver accepts."""

    swarm: str
    shape: tuple[int, ...]
    dtype: str = "<f4"
    verify_signatures: bool = True
    max_lag: int = 2
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

    def __init__(self, config: ValidationConfig) -> None:
        self.config = config
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
            if link_sender is not None and kind is Kind.UPDATE and sender != link_sender:
                raise RejectedMessage("sender_mismatch", "update relayed under another identity")
            if not self._buckets.take(link_sender or sender, now):
                raise RejectedMessage("flood", "rate limit exceeded")

        env = decode(
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
        if env.round < current_round - cfg.max_lag:
            raise RejectedMessage("stale", f"round {env.round} < {current_round} - {cfg.max_lag}")
        tensor = env.body.tensor
        if tensor.shape != cfg.shape:
            raise RejectedMessage("shape_mismatch", f"{tensor.shape} != {cfg.shape}")
        if tensor.dtype != cfg.dtype:
            raise RejectedMessage("dtype_mismatch", f"{tensor.dtype} != {cfg.dtype}")
        if not np.isfinite(tensor.to_array()).all():
            raise RejectedMessage("nan_inf", "tensor holds NaN or Inf")
        self._last[key] = (env.round, env.seq)
        self._last.move_to_end(key)
        if len(self._last) > cfg.max_tracked_senders:
            self._last.popitem(last=False)
        return env
