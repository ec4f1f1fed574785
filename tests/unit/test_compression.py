"""Compressors (aggregation/compression) and their wire bodies: round trips, contractivity,
bad payloads rejected with a counted reason."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumor.aggregation.compression import (
    Compressed,
    compressor_names,
    decompress,
    describe,
    make_compressor,
    parse_spec,
)
from rumor.aggregation.compression.powersgd import max_rank
from rumor.aggregation.compression.randk import seeded_indices
from rumor.aggregation.layout import LayerSlice, Layout, single_tensor_layout
from rumor.node.engine.compression import CompressionHook, from_body, to_body
from rumor.protocols import codec
from rumor.protocols.errors import ConfigError, RejectedMessage
from rumor.protocols.messages import CompressedBody, Kind
from tests.helpers import SWARM, ident

MLP: Layout = (LayerSlice("w1", 0, 2048, (32, 64), True),
               LayerSlice("b1", 2048, 2080, (32,), False),
               LayerSlice("w2", 2080, 2400, (10, 32), True),
               LayerSlice("b2", 2400, 2410, (10,), False))
D = 2410
SPECS = ["topk:ratio=0.01", "topk:ratio=0.3", "randk:ratio=0.05", "qsgd:bits=8",
         "qsgd:bits=4,block=64", "int8", "powersgd:rank=2", "powersgd:rank=8"]

vectors = st.builds(
    lambda seed, scale: (np.random.default_rng(seed).standard_normal(D) * scale
                         ).astype(np.float32),
    st.integers(0, 2**32 - 1), st.floats(1e-3, 1e3))


def _round_trip(spec: str, x: np.ndarray, seed: int) -> np.ndarray:
    c = make_compressor(parse_spec(spec), MLP, seed=3).compress(x, seed=seed)  # type: ignore[arg-type]
    return decompress(c, seed=seed, layout=MLP)


@pytest.mark.parametrize("spec", SPECS)
@settings(max_examples=15, deadline=None)
@given(x=vectors, seed=st.integers(0, 2**63))
def test_round_trip_keeps_shape_and_dtype_and_survives_the_wire(spec: str, x: np.ndarray,
                                                                seed: int) -> None:
    c = make_compressor(parse_spec(spec), MLP, seed=3).compress(x, seed=seed)  # type: ignore[arg-type]
    y = decompress(c, seed=seed, layout=MLP)
    assert y.shape == (D,) and y.dtype == np.float32 and np.isfinite(y).all()
    body = dataclasses.replace(to_body(c), base=7, num_samples=3)
    raw = codec.encode(Kind.DIFF, swarm=SWARM, sender=ident(1), round_=2, seq=9,
                       sent_at=0.0, body=body)
    env = codec.decode(raw, swarm=SWARM)
    assert env.body == body
    assert isinstance(env.body, CompressedBody)
    np.testing.assert_array_equal(decompress(from_body(env.body), seed=seed, layout=MLP), y)


@pytest.mark.parametrize("spec,delta", [
    ("topk:ratio=0.01", 0.01), ("topk:ratio=0.3", 0.3), ("int8", 1 - 256 / 64516),
    ("powersgd:rank=2", 0.0)])
@settings(max_examples=25, deadline=None)
@given(x=vectors, seed=st.integers(0, 2**63))
def test_deterministic_compressors_are_contractive(spec: str, delta: float, x: np.ndarray,
                                                   seed: int) -> None:
    """||C(x) - x||² <= (1 - delta) ||x||² for every x."""
    y = _round_trip(spec, x, seed)
    err = float(np.sum((y.astype(np.float64) - x) ** 2))
    assert err <= (1 - delta) * float(np.sum(x.astype(np.float64) ** 2)) * (1 + 1e-5)


@pytest.mark.parametrize("spec,delta", [("randk:ratio=0.05", 0.05),
                                        ("qsgd:bits=8", 1 - min(512 / 127**2, 512**0.5 / 127))])
@settings(max_examples=5, deadline=None)
@given(x=vectors)
def test_random_compressors_are_contractive_in_expectation(spec: str, delta: float,
                                                           x: np.ndarray) -> None:
    """E||C(x) - x||² <= (1 - delta) ||x||², averaged over 200 seeds (5 % slack)."""
    errs = [float(np.sum((_round_trip(spec, x, s).astype(np.float64) - x) ** 2))
            for s in range(200)]
    assert np.mean(errs) <= (1 - delta) * float(np.sum(x.astype(np.float64) ** 2)) * 1.05


@settings(max_examples=5, deadline=None)
@given(x=vectors)
def test_qsgd_is_unbiased(x: np.ndarray) -> None:
    mean = np.mean([_round_trip("qsgd:bits=4,block=64", x, s) for s in range(400)], axis=0)
    scale = np.sqrt(np.mean(x.astype(np.float64) ** 2))
    assert np.abs(mean - x).max() < 0.3 * scale


def test_topk_keeps_exactly_the_largest_coordinates() -> None:
    x = np.array([0.1, -5.0, 0.2, 3.0, -0.05] + [0.0] * 95, dtype=np.float32)
    c = make_compressor(parse_spec("topk:ratio=0.02"), single_tensor_layout(100)).compress(
        x, seed=0)
    assert c.indices is not None and c.indices.tolist() == [1, 3]


def test_randk_indices_come_from_the_seed_only_values_travel() -> None:
    a, b = seeded_indices(42, 10_000, 100), seeded_indices(42, 10_000, 100)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 100
    assert seeded_indices(43, 10_000, 100).tolist() != a.tolist()
    c = make_compressor(parse_spec("randk:ratio=0.01"), single_tensor_layout(10_000)).compress(
        np.ones(10_000, np.float32), seed=42)
    assert c.indices is None and c.values.nbytes == 400


def test_powersgd_warm_start_converges_on_a_fixed_low_rank_matrix() -> None:
    rng = np.random.default_rng(0)
    m = (rng.standard_normal((32, 2)) @ rng.standard_normal((2, 64))).astype(np.float32)
    x = np.zeros(D, np.float32)
    x[:2048] = m.reshape(-1)
    comp = make_compressor(parse_spec("powersgd:rank=2"), MLP, seed=1)
    errs = [float(np.sum((decompress(comp.compress(x, seed=0), seed=0, layout=MLP)[:2048]
                          - x[:2048]) ** 2)) for _ in range(3)]
    assert errs[-1] < 1e-6 * float(np.sum(x ** 2))


# ------------------------------------------------------------------ bad payloads
def _sparse(indices: list[int], values: list[float], dim: int = 10) -> Compressed:
    return Compressed("sparse", dim, np.array(values, np.float32),
                      indices=np.array(indices, np.int64))


@pytest.mark.parametrize("bad,reason", [
    (_sparse([3, 1], [1.0, 2.0]), "bad_compressed"),  # not sorted
    (_sparse([1, 1], [1.0, 2.0]), "bad_compressed"),  # not unique
    (_sparse([1, 10], [1.0, 2.0]), "bad_compressed"),  # out of bounds
    (_sparse([1, 2], [1.0]), "bad_compressed"),  # sizes
    (_sparse([1, 2], [1.0, float("nan")]), "nan_inf"),
    (_sparse([1, 2], [1.0, float("inf")]), "nan_inf"),
    (Compressed("seeded", 10, np.ones(11, np.float32), k=11), "bad_compressed"),
    (Compressed("seeded", 10, np.ones(3, np.float32), k=2), "bad_compressed"),
    (Compressed("quant", 10, np.zeros(10, np.uint8), bits=9, block=4,
                scales=np.ones(3, np.float32)), "bad_compressed"),
    (Compressed("quant", 10, np.full(10, 255, np.uint8), bits=8, block=4,
                scales=np.ones(3, np.float32)), "bad_compressed"),  # code 255 > 2s = 254
    (Compressed("quant", 10, np.zeros(10, np.uint8), bits=8, block=4,
                scales=np.array([1, -1, 1], np.float32)), "bad_compressed"),
    (Compressed("quant", 10, np.zeros(10, np.uint8), bits=8, block=4,
                scales=np.array([1, np.nan, 1], np.float32)), "nan_inf"),
    (Compressed("zip", 10, np.zeros(1, np.float32)), "bad_compressed"),
])
def test_bad_payloads_are_rejected_with_their_reason(bad: Compressed, reason: str) -> None:
    with pytest.raises(RejectedMessage) as exc:
        decompress(bad, seed=0, layout=single_tensor_layout(10))
    assert exc.value.reason == reason


def test_lowrank_rank_must_fit_the_layer_shapes_and_sizes_must_match() -> None:
    c = make_compressor(parse_spec("powersgd:rank=2"), MLP).compress(
        np.ones(D, np.float32), seed=0)
    for rank in (0, max_rank(MLP) + 1):
        with pytest.raises(RejectedMessage, match="rank"):
            decompress(dataclasses.replace(c, rank=rank), seed=0, layout=MLP)
    with pytest.raises(RejectedMessage, match="expected"):
        decompress(dataclasses.replace(c, rank=3), seed=0, layout=MLP)
    with pytest.raises(RejectedMessage):
        decompress(c, seed=0, layout=single_tensor_layout(D))  # no 2-D layer to factor


def _diff_raw(body: CompressedBody) -> bytes:
    return codec.encode(Kind.DIFF, swarm=SWARM, sender=ident(1), round_=1, seq=2,
                        sent_at=0.0, body=body)


@pytest.mark.parametrize("body", [
    CompressedBody("sparse", 10, b"\0" * 8, 1, indices=b"\0" * 3),  # odd index bytes
    CompressedBody("sparse", 10, b"\0" * 4, 1, indices=b"\0" * 4),  # 2 indices, 1 value
    CompressedBody("seeded", 10, b"\0" * 4, 1, k=0),
    CompressedBody("quant", 10, b"\0" * 10, 1, bits=8, block=4, scales=b"\0" * 8),
    CompressedBody("quant", 10, b"\0" * 10, 1, bits=1, block=4, scales=b"\0" * 12),
    CompressedBody("full", 10, b"\0" * 36),
    CompressedBody("lowrank", 10, b"\0" * 6, 1, rank=1),
    CompressedBody("mystery", 10, b"", 1),
    CompressedBody("full", 0, b""),
])
def test_the_codec_rejects_bodies_whose_sizes_do_not_add_up(body: CompressedBody) -> None:
    with pytest.raises(RejectedMessage) as exc:
        codec.decode(_diff_raw(body), swarm=SWARM)
    assert exc.value.reason == "bad_compressed"


def test_compressed_body_fields_are_signed() -> None:
    body = CompressedBody("seeded", 10, np.ones(2, "<f4").tobytes(), 5, k=2)
    raw = _diff_raw(body)
    tampered = raw.replace(b"\xa2zb\x05", b"\xa2zb\x06")
    assert tampered != raw
    with pytest.raises(RejectedMessage) as exc:
        codec.decode(tampered, swarm=SWARM)
    assert exc.value.reason == "bad_signature"


def test_unknown_compressed_body_version_is_rejected() -> None:
    raw = _diff_raw(CompressedBody("full", 2, b"\0" * 8, version=2))
    with pytest.raises(RejectedMessage) as exc:
        codec.decode(raw, swarm=SWARM, verify_signature=False)
    assert exc.value.reason == "unknown_version"


def test_keyframes_are_int8_unless_full_is_asked_for() -> None:
    x = np.linspace(-1, 1, D, dtype=np.float32)
    hook = CompressionHook.from_text("topk:ratio=0.01", MLP)
    kf = hook.keyframe(x, seed=0)
    assert kf.scheme == "quant" and len(kf.values) == D
    assert np.abs(hook.decompress(kf, seed=0) - x).max() <= 1 / 254 + 1e-6
    full = CompressionHook.from_text("topk:ratio=0.01,keyframe=full", MLP).keyframe(x, seed=0)
    assert full.scheme == "full"
    np.testing.assert_array_equal(hook.decompress(full, seed=0), x)


# ---------------------------------------------------------------------- specs
def test_spec_parsing_defaults_and_canonical_text() -> None:
    s = parse_spec("topk:ratio=0.01,feedback=econtrol,eta=0.5")
    assert s is not None and s.params == {"ratio": 0.01} and s.eta == 0.5
    assert parse_spec(s.text) == s
    ef = parse_spec("qsgd")
    assert ef is not None and ef.feedback == "ef" and ef.eta == 1.0 and ef.params["bits"] == 8
    assert parse_spec("none") is None and parse_spec(None) is None


@pytest.mark.parametrize("text", [
    "zip", "topk:ratio=2", "topk:ratio=x", "topk:size=3", "topk:ratio", "qsgd:bits=1",
    "topk:feedback=maybe", "topk:eta=0.5", "topk:feedback=econtrol,eta=0",
    "powersgd:rank=0", "topk:ratio=0.1,ratio=0.2", "topk:gamma=1.5", "int8:keyframe=f16"])
def test_bad_specs_are_one_line_config_errors(text: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_spec(text)
    assert "\n" not in str(exc.value)


def test_help_lists_every_compressor_with_its_parameters() -> None:
    text = describe()
    for name in compressor_names():
        assert f"  {name}:" in text
    for key in ("ratio=", "bits=", "rank=", "feedback=", "eta=", "gamma="):
        assert key in text
