"""Hostile msgpack payloads, built byte by byte (no msgpack object is built to make them).

Shared by the adversarial tests, the fuzz target and benchmarks/fuzz_decoder.py.
"""

from __future__ import annotations

import struct

import msgpack

MiB = 1024 * 1024


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    if n < 1 << 16:
        return b"\xde" + struct.pack(">H", n)
    return b"\xdf" + struct.pack(">I", n)


def nested_tree(depth: int, fanout: int = 32, leaf: bytes = b"\x90") -> bytes:
    """An array of ``fanout`` arrays ... ``depth`` levels down to ``leaf`` (an empty array).

    About ``fanout ** depth`` bytes on the wire; every leaf byte becomes a Python list
    (~56 B) in a decoder that builds the whole structure.
    """
    node = leaf
    for _ in range(depth):
        node = _array_header(fanout) + node * fanout
    return node


def header_fields() -> bytes:
    """A plausible envelope start (a fixmap's entries, not the header byte)."""
    fields = {"v": 1, "k": "update", "sw": "test-swarm", "s": b"\x00" * 38, "r": 0, "q": 1}
    return b"".join(msgpack.packb(k) + msgpack.packb(v, use_bin_type=True) for k, v in
                    fields.items())


def nested_frame(size: int = 35 * MiB, fanout: int = 32) -> bytes:
    """A ~``size``-byte envelope whose ``x`` field is a tree of small nested arrays.

    Within the old decoder's per-container limits (arrays <= 32 entries, maps <= 16), so
    a decoder that only bounds each container builds all of it before checking a field.
    """
    sub = nested_tree(4, fanout)  # ~1 MiB at fanout 32
    count = max(1, min(fanout, size // len(sub)))
    tree = _array_header(count) + sub * count
    return bytes([0x87]) + header_fields() + msgpack.packb("x") + tree


def top_level_array(size: int = 35 * MiB) -> bytes:
    """Not even a map: an array tree of ~``size`` bytes."""
    sub = nested_tree(4)
    count = max(1, min(32, size // len(sub)))
    return _array_header(count) + sub * count


def wide_maps(size: int = 8 * MiB) -> bytes:
    """An envelope whose ``x`` is an array of 16-entry maps of small ints."""
    entry = _map_header(15) + b"".join(bytes([0xA1, 0x61 + i, 0]) for i in range(15))
    inner = _array_header(32) + entry * 32
    count = max(1, min(32, size // (len(inner) * 32)))
    tree = _array_header(count) + (_array_header(32) + inner * 32) * count
    return bytes([0x87]) + header_fields() + msgpack.packb("x") + tree


def deep_nesting(depth: int = 100_000) -> bytes:
    """``[[[[...]]]]`` ``depth`` levels deep (recursion limits)."""
    return b"\x91" * depth + b"\x90"


def lying_lengths() -> list[bytes]:
    """Headers that announce far more than the buffer holds."""
    return [
        b"\xdf\xff\xff\xff\xff",  # map32 with 4 G entries
        b"\xdd\xff\xff\xff\xff",  # array32 with 4 G entries
        b"\x81\xa1x\xc6\xff\xff\xff\xff",  # {"x": bin32 of 4 GiB}
        b"\x81\xa1x\xdb\xff\xff\xff\xff",  # {"x": str32 of 4 GiB}
        bytes([0x8F]) + b"\xa1v\x01" * 15,  # 15 duplicate keys
        b"\x81\x81\xa1a\x01\x01",  # a map as a key
        b"\x81\xa1x\xc7\x05\x01abcde",  # an ext value
        b"\x81\xa1x\xc1",  # the never-used byte
    ]
