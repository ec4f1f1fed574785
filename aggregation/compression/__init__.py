"""Compressors for gossip: pure, named, parameterized objects; one file each.

``parse_spec("topk:ratio=0.01,feedback=ef")`` -> CompressionSpec; ``make_compressor(spec,
layout)`` -> a Compressor (``compress(x, seed=) -> Compressed``); ``decompress(c, seed=,
layout=)`` reconstructs (and validates) any payload, whichever compressor made it.
Compressors: topk, randk, qsgd, int8, powersgd (``compressor_names()``); ``describe()``
is the listing ``--compress help`` prints. The difference gossip that uses them (public
copies, error feedback, EControl) is rumor.protocols.choco.
"""

from rumor.aggregation.compression import int8 as _int8  # noqa: F401  (registers)
from rumor.aggregation.compression import powersgd as _powersgd  # noqa: F401
from rumor.aggregation.compression import qsgd as _qsgd  # noqa: F401
from rumor.aggregation.compression import randk as _randk  # noqa: F401
from rumor.aggregation.compression import topk as _topk  # noqa: F401
from rumor.aggregation.compression.base import (
    COMMON,
    COMPRESSORS,
    DECODERS,
    FEEDBACKS,
    Compressed,
    CompressionSpec,
    Compressor,
    compressor_names,
    decompress,
    describe,
    make_compressor,
    parse_spec,
)

__all__ = [
    "COMMON",
    "COMPRESSORS",
    "DECODERS",
    "FEEDBACKS",
    "Compressed",
    "CompressionSpec",
    "Compressor",
    "compressor_names",
    "decompress",
    "describe",
    "make_compressor",
    "parse_spec",
]
