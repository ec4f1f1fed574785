"""SharedDecoder: ``codec.decode`` for message objects that several receivers share.

In the simulator a peer's broadcast is one ``bytes`` object handed to every receiver
(by reference, never copied). ``codec.decode`` is a pure function of the bytes and
its arguments, so decoding that object once and giving every receiver the same
(frozen) Envelope is exact; the tensor's finiteness scan is cached on its payload
(``TensorPayload.all_finite``), so it runs once too. What depends on the receiver
still runs per receiver: ``on_header`` (sender/link match, flood bucket) on every
call, and the Validator's own checks (replay, stale, too far ahead, shape, dtype).

The memo holds the last ``capacity`` decoded objects (with a reference to each, so
an ``id`` is never reused while it is a key); a miss just decodes again. Failures
are not memoized (they re-raise identically on the next decode).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from rumor.protocols.codec import Limits, decode
from rumor.protocols.messages import Envelope, Kind

_LIMITS = Limits()


class SharedDecoder:
    """A drop-in ``decode`` for ``Validator(decode=...)``; see module docstring."""

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self._memo: OrderedDict[int, tuple[object, str | None, bool, Limits, Envelope]] = (
            OrderedDict())
        self.hits = 0
        self.misses = 0

    def __call__(
        self,
        raw: bytes,
        *,
        swarm: str | None = None,
        verify_signature: bool = True,
        limits: Limits = _LIMITS,
        on_header: Callable[[Kind, bytes], None] | None = None,
    ) -> Envelope:
        hit = self._memo.get(id(raw))
        if (hit is not None and hit[0] is raw and hit[1] == swarm
                and hit[2] == verify_signature and (hit[3] is limits or hit[3] == limits)):
            self.hits += 1
            env = hit[4]
            if on_header is not None:
                on_header(env.kind, env.sender)
            return env
        env = decode(raw, swarm=swarm, verify_signature=verify_signature, limits=limits,
                     on_header=on_header)
        self.misses += 1
        self._memo[id(raw)] = (raw, swarm, verify_signature, limits, env)
        if len(self._memo) > self.capacity:
            self._memo.popitem(last=False)
        return env
