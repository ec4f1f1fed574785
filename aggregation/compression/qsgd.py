"""QSGD: stochastic quantization to 2**(bits-1) - 1 levels per sign, per block.

For each block x_b of ``block`` coordinates (the last may be shorter), with
s = 2**(bits-1) - 1 and a uniform dither u_i in [0, 1) drawn from the shared seed::

    r_i = s |x_i| / ||x_b||_2;   l_i = floor(r_i) + [u_i < r_i - floor(r_i)]
    C(x)_i = ||x_b||_2 * sign(x_i) * l_i / s

Unbiased (E C(x) = x) with E||C(x) - x||² <= omega ||x||², omega = min(B/s², sqrt(B)/s)
(Alistarh et al. 2017, per block of B coordinates): contractive with delta = 1 - omega
when omega < 1, e.g. bits=8 (s=127) and B=512: omega = 0.032. Not contractive for few
bits and large blocks (bits=2, B=512: omega = 22.6); feedback then does not help.

Travels as the ``quant`` scheme: one float32 scale (the block norm) per block and the
codes l_i sign_i + s in [0, 2s], ``bits`` bits each, packed (np.packbits order).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from rumor.aggregation.compression.base import (
    F32,
    Compressed,
    Param,
    check_finite,
    int_in,
    register_compressor,
    register_scheme,
)
from rumor.aggregation.layout import Layout
from rumor.protocols.errors import RejectedMessage

MAX_BLOCK = 1 << 20


def levels(bits: int) -> int:
    """s = 2**(bits-1) - 1: the levels per sign (bits=8 -> 127, bits=2 -> 1)."""
    return (1 << (bits - 1)) - 1


def pack_codes(codes: npt.NDArray[np.uint8], bits: int) -> npt.NDArray[np.uint8]:
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint8)
    planes = (codes[:, None] >> shifts) & np.uint8(1)
    return np.packbits(planes.reshape(-1))


def unpack_codes(data: npt.NDArray[np.uint8], d: int, bits: int) -> npt.NDArray[np.int64]:
    planes = np.unpackbits(data)[: d * bits].reshape(d, bits).astype(np.int64)
    return planes @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))


def block_view(x: F32, block: int) -> F32:
    """x padded with zeros to whole blocks, shape (nblocks, block)."""
    d = x.shape[0]
    nb = -(-d // block)
    pad = np.zeros(nb * block, dtype=np.float32)
    pad[:d] = x
    return pad.reshape(nb, block)


def quantized(x: F32, scales: F32, lv: npt.NDArray[np.int64], bits: int,
              block: int) -> Compressed:
    """The ``quant`` payload of signed levels ``lv`` (in [-s, s]) with these scales."""
    s = levels(bits)
    codes = (lv + s).astype(np.uint8)
    return Compressed("quant", x.shape[0], pack_codes(codes, bits), bits=bits, block=block,
                      scales=scales.astype(np.float32))


class QSGD:
    def __init__(self, *, bits: int, block: int, layout: Layout | None = None,
                 seed: int = 0) -> None:
        self.bits, self.block = bits, block
        self.name = f"qsgd:bits={bits},block={block}"

    def compress(self, x: F32, *, seed: int) -> Compressed:
        d, s = x.shape[0], levels(self.bits)
        xb = block_view(x, self.block)
        norms = np.sqrt((xb.astype(np.float64) ** 2).sum(1)).astype(np.float32)
        safe = np.where(norms > 0, norms, 1.0)[:, None]
        r = (s * np.abs(xb) / safe).reshape(-1)[:d].astype(np.float64)
        u = np.random.default_rng(seed).random(d)
        fl = np.floor(r)
        lv = np.minimum(fl + (u < r - fl), s).astype(np.int64) * np.sign(x).astype(np.int64)
        return quantized(x, norms, lv, self.bits, self.block)


register_compressor(
    "qsgd", "stochastic quantization, bits per coordinate, one norm per block",
    {"bits": Param(int_in(2, 8), 8, "bits per coordinate incl. sign, 2..8"),
     "block": Param(int_in(1, MAX_BLOCK), 512, "coordinates per norm")})(QSGD)


@register_scheme("quant")
def decode_quant(c: Compressed, seed: int, layout: Layout) -> F32:
    """x_i = scale_b * (code_i - s) / s; checks bits, block, sizes, codes <= 2s, scales."""
    if not 2 <= c.bits <= 8 or not 1 <= c.block <= MAX_BLOCK:
        raise RejectedMessage("bad_compressed", f"quant: bits={c.bits}, block={c.block}")
    nb = -(-c.dim // c.block)
    if c.scales is None or c.scales.shape != (nb,):
        raise RejectedMessage("bad_compressed", f"quant: {nb} scales expected")
    if c.values.shape != (math.ceil(c.dim * c.bits / 8),):
        raise RejectedMessage("bad_compressed", "quant: code bytes do not match d x bits")
    check_finite(c.scales, "quant scales")
    if bool((c.scales < 0).any()):
        raise RejectedMessage("bad_compressed", "quant: a negative scale")
    s = levels(c.bits)
    codes = unpack_codes(c.values.astype(np.uint8, copy=False), c.dim, c.bits)
    if codes.size and int(codes.max()) > 2 * s:
        raise RejectedMessage("bad_compressed", f"quant: a code above {2 * s}")
    scale = np.repeat(c.scales, c.block)[: c.dim]
    with np.errstate(over="ignore", invalid="ignore"):
        return (scale * ((codes - s).astype(np.float32) / np.float32(s))).astype(np.float32)
