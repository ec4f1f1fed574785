"""The one exception tree of rumor.

RumorError
├── ProtocolError      bad input from a peer: counted and logged, never fatal
│   └── RejectedMessage  carries the counted reject reason
├── ConfigError        bad input from the user: one clear line, exit code 2
│   └── DatasetMissing   a dataset that has not been prepared (names the fetch command)
├── AggregationError   bad arguments to an aggregation rule (empty, mismatched, n <= 2f)
└── TransportError     the network failed us (unreachable peer, closed transport)

Library code raises these; only rumor.scripts turns them into messages and exit codes.
aggregation/ and topology/ import this module (and nothing else from protocols/) so
that every package shares the root.
"""

from __future__ import annotations


class RumorError(Exception):
    """Root of every error rumor raises on purpose."""


class ProtocolError(RumorError):
    """Bad input from the network."""


class RejectedMessage(ProtocolError):
    """A message was rejected; ``reason`` is the counter it increments."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ConfigError(RumorError):
    """Bad input from the user (flags, scenario files, data dirs)."""


class DatasetMissing(ConfigError):
    """A dataset is not prepared on this machine."""


class AggregationError(RumorError):
    """Invalid input to an aggregation rule."""


class TransportError(RumorError):
    """A transport could not deliver or is closed."""
