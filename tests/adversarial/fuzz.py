"""Seeded input generator and oracle for fuzzing codec.decode + Validator.check.

``inputs(seed)`` yields an endless, reproducible stream of ``(category, bytes)``:
random bytes, mutations of valid signed messages of every kind, hostile structures
(nested containers, lying lengths, deep nesting, random msgpack trees) and well-typed
field maps with random values. ``check_one`` feeds one input to a Validator and to
``codec.decode`` and fails unless each either accepted it or refused it with
RejectedMessage and a counted reason. Used by tests/adversarial/test_fuzz_decoder.py
(bounded, in CI) and benchmarks/fuzz_decoder.py (millions, locally).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np

from rumor.aggregation.layout import single_tensor_layout
from rumor.node.engine.compression import CompressionHook
from rumor.protocols import codec
from rumor.protocols.errors import RejectedMessage
from rumor.protocols.messages import (
    COMPRESSED_KINDS,
    MODEL_KINDS,
    RECORD_KINDS,
    Body,
    CompressedBody,
    EmptyBody,
    Kind,
    ModelBody,
    RecordBody,
    TensorPayload,
)
from rumor.protocols.validation import REJECT_REASONS, ValidationConfig, Validator
from tests.adversarial.frames import deep_nesting, lying_lengths, nested_tree
from tests.helpers import SWARM, ident

SHAPE = (16,)
_INTERESTING = [
    *range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6,
    0xC7, 0xD4, 0xD9, 0xDB, 0xCA, 0xCB, 0xCF, 0xD3, 0x00, 0x7F, 0xFF,
]


def validator() -> Validator:
    """What a receiver of SHAPE float32 models in SWARM checks (no flood limit)."""
    return Validator(ValidationConfig(swarm=SWARM, shape=SHAPE, flood_rate=1e12,
                                      flood_burst=1e12, max_lag=1_000_000),
                     CompressionHook.from_text(None, single_tensor_layout(SHAPE[0])))


def seed_messages(rng: random.Random, count: int = 24) -> list[bytes]:
    """Valid signed messages of every kind from a few identities."""
    out: list[bytes] = []
    kinds = list(Kind)
    for i in range(count):
        kind = kinds[i % len(kinds)]
        sender = ident(i % 4)
        vec = np.asarray([rng.uniform(-1, 1) for _ in range(SHAPE[0])], dtype=np.float32)
        body: Body
        if kind in MODEL_KINDS:
            body = ModelBody(TensorPayload.from_array(vec), rng.randrange(100))
        elif kind in RECORD_KINDS:
            inner = codec.encode(Kind.UPDATE, swarm=SWARM, sender=ident(9), round_=i, seq=i + 1,
                                 sent_at=0.0, body=ModelBody(TensorPayload.from_array(vec), 3))
            body = RecordBody(inner, 1 + i % 3)
        elif kind in COMPRESSED_KINDS:
            body = CompressedBody("full", SHAPE[0], vec.astype("<f4").tobytes(), i % 3)
        else:
            body = EmptyBody()
        out.append(codec.encode(kind, swarm=SWARM, sender=sender, round_=i, seq=i + 1,
                                sent_at=float(i), body=body))
    return out


def mutate(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 2 and b:
            b[min(pos, len(b) - 1)] = rng.choice(_INTERESTING)
        elif op == 3:
            del b[pos:]
        elif op == 4:
            b[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 5:
            del b[pos : pos + rng.randint(1, 32)]
        elif op == 6:
            b[pos:pos] = b[pos : pos + rng.randint(1, 64)] * rng.randint(1, 8)
        else:
            other = rng.choice(others)
            cut = rng.randrange(len(other) + 1)
            b = b[:pos] + other[cut:]
    return bytes(b)


def random_tree(rng: random.Random, depth: int) -> Any:
    """A random msgpack-able object: scalars, and lists/maps up to ``depth`` deep."""
    roll = rng.random()
    if depth <= 0 or roll < 0.4:
        return rng.choice([
            rng.randint(-(2**63), 2**64 - 1), rng.random(), None, True,
            rng.randbytes(rng.randint(0, 40)), "".join(rng.choices("abcsxvkqtnrh", k=2)),
        ])
    n = rng.randint(0, 12)
    if roll < 0.7:
        return [random_tree(rng, depth - 1) for _ in range(n)]
    return {rng.choice([*sorted(codec.FIELDS), "zz", "", "é"]): random_tree(rng, depth - 1)
            for _ in range(n)}


def hostile(rng: random.Random, seeds: list[bytes]) -> bytes:
    roll = rng.randrange(6)
    if roll == 0:
        return nested_tree(rng.randint(1, 4), rng.randint(1, 32))
    if roll == 1:  # a valid header with a nested tree in one field
        obj = msgpack.unpackb(rng.choice(seeds), raw=False)
        key = rng.choice(sorted(obj))
        head = msgpack.packb({k: v for k, v in obj.items() if k != key}, use_bin_type=True)
        tree = nested_tree(rng.randint(1, 3), rng.randint(1, 32))
        count = head[0] & 0x0F  # fixmap header of the rest
        return bytes([0x80 | (count + 1)]) + head[1:] + msgpack.packb(key) + tree
    if roll == 2:
        return deep_nesting(rng.randint(1, 50_000))
    if roll == 3:
        return rng.choice(lying_lengths())
    if roll == 4:
        return bytes(msgpack.packb(random_tree(rng, rng.randint(1, 6)), use_bin_type=True))
    obj = {k: random_tree(rng, 0) for k in rng.sample(sorted(codec.FIELDS), rng.randint(1, 14))}
    obj.setdefault("v", 1)
    obj["sw"] = SWARM
    return bytes(msgpack.packb(obj, use_bin_type=True))


def inputs(seed: int) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(seed)
    seeds = seed_messages(rng)
    while True:
        roll = rng.random()
        if roll < 0.15:
            yield "random", rng.randbytes(rng.randint(0, 512))
        elif roll < 0.60:
            yield "mutated", mutate(rng, rng.choice(seeds), seeds)
        elif roll < 0.70:
            yield "valid", rng.choice(seeds)
        else:
            yield "hostile", hostile(rng, seeds)


def check_one(v: Validator, raw: bytes, now: float) -> str:
    """Feed ``raw`` to ``v`` and to codec.decode; the outcome ("accepted" or the reason)."""
    before = sum(v.rejects.values())
    env = v.check(raw, now=now, current_round=0)
    if env is None:
        assert sum(v.rejects.values()) == before + 1, "a reject was not counted"
        assert v.last_reject is not None
        reason = v.last_reject.reason
        assert reason in REJECT_REASONS, reason
    else:
        assert sum(v.rejects.values()) == before
        reason = "accepted"
    try:
        codec.decode(raw, swarm=SWARM)
    except RejectedMessage as rej:
        assert rej.reason in REJECT_REASONS, rej.reason
    return reason
