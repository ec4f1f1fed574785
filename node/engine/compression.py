"""CompressionHook: a peer's compression hook over rumor.aggregation.compression.

Converts between the compressors' numpy payloads (``Compressed``) and the wire's
``CompressedBody`` (little-endian bytes), and decodes keyframes (``full``). Every
peer gets one (a peer without ``--compress`` only decodes: ``name`` is None).
"""

from __future__ import annotations

import numpy as np

from rumor.aggregation.compression import (
    COMPRESSORS,
    Compressed,
    CompressionSpec,
    decompress,
    make_compressor,
    parse_spec,
)
from rumor.aggregation.layout import Layout
from rumor.protocols.errors import RejectedMessage
from rumor.protocols.events import Vector
from rumor.protocols.messages import CompressedBody, index_width


class CompressionHook:
    """The ``Compression`` hook of one peer (rumor.protocols.hooks)."""

    def __init__(self, spec: CompressionSpec | None, layout: Layout, seed: int = 0) -> None:
        self.spec = spec
        self.layout = layout
        self.name: str | None = spec.text if spec is not None else None
        self.compressor = make_compressor(spec, layout, seed) if spec is not None else None
        self.int8 = COMPRESSORS["int8"].factory(block=256)
        self.lossless_keyframes = spec is not None and spec.keyframe == "full"

    @classmethod
    def from_text(cls, text: str | None, layout: Layout, seed: int = 0) -> CompressionHook:
        return cls(parse_spec(text), layout, seed)

    def compress(self, x: Vector, *, seed: int) -> CompressedBody:
        if self.compressor is None:
            raise ValueError("this peer does not compress (no --compress)")
        c = self.compressor.compress(np.ascontiguousarray(x, dtype=np.float32), seed=seed)
        return to_body(c)

    def keyframe(self, x: Vector, *, seed: int) -> CompressedBody:
        """A receiver's first copy: int8 (block 256), or float32 with keyframe=full."""
        v = np.ascontiguousarray(x, dtype=np.float32)
        if self.lossless_keyframes:
            return CompressedBody("full", int(v.shape[0]), v.astype("<f4").tobytes())
        return to_body(self.int8.compress(v, seed=seed))

    def decompress(self, body: CompressedBody, *, seed: int) -> Vector:
        if body.scheme == "full":
            out = np.frombuffer(body.values, dtype="<f4").astype(np.float32)
            if out.shape != (body.dim,):
                raise RejectedMessage("bad_compressed", "full: size does not match d")
            if not np.isfinite(out).all():
                raise RejectedMessage("nan_inf", "keyframe holds NaN or Inf")
            return out
        return decompress(from_body(body), seed=seed, layout=self.layout)


def to_body(c: Compressed) -> CompressedBody:
    """The wire body of a payload (base and num_samples left to the caller)."""
    values = (c.values.astype("<f4") if c.scheme != "quant" else c.values.astype(np.uint8))
    indices = b""
    if c.indices is not None:
        width = "<u2" if index_width(c.dim) == 2 else "<u4"
        indices = c.indices.astype(width).tobytes()
    scales = c.scales.astype("<f4").tobytes() if c.scales is not None else b""
    return CompressedBody(c.scheme, c.dim, values.tobytes(), indices=indices, k=c.k,
                          bits=c.bits, block=c.block, scales=scales, rank=c.rank)


def from_body(b: CompressedBody) -> Compressed:
    """The numpy payload of a wire body (sizes were checked by the codec)."""
    values = (np.frombuffer(b.values, dtype=np.uint8) if b.scheme == "quant"
              else np.frombuffer(b.values, dtype="<f4"))
    indices = None
    if b.scheme == "sparse":
        width = "<u2" if index_width(b.dim) == 2 else "<u4"
        indices = np.frombuffer(b.indices, dtype=width).astype(np.int64)
    scales = np.frombuffer(b.scales, dtype="<f4") if b.scheme == "quant" else None
    return Compressed(b.scheme, b.dim, values, indices=indices, k=b.k, bits=b.bits,
                      block=b.block, scales=scales, rank=b.rank)
