"""Compressors: the registry, the spec grammar and the one decoder of compressed payloads.

A compressor is a named, parameterized object ``C`` (one file each, the formula in its
docstring) with::

    c = C.compress(x, seed=s)            # x: (d,) float32 -> Compressed
    y = decompress(c, seed=s, layout=L)  # what every receiver reconstructs, (d,) float32

``decompress`` dispatches on ``c.scheme`` (the wire format, shared by compressors that
travel alike: ``qsgd`` and ``int8`` are both ``quant``) and validates the payload as it
decodes (index bounds, sorted/unique indices, sizes, bits and codes, NaN/Inf, rank vs
layer shape): a receiver never trusts what the sender claims. Errors are
``RejectedMessage`` with the reason they are counted under (``bad_compressed``,
``nan_inf``). ``seed`` is shared by sender and receiver (derived from the message header:
sender, round, seq) so that seeded choices (rand-k's indices, QSGD's dither) need not
travel.

Spec grammar (``--compress`` and scenario files)::

    NAME[:k=v,...]     e.g. topk:ratio=0.01,feedback=econtrol,eta=0.5

Besides the compressor's own parameters, every spec takes ``feedback=none|ef|econtrol``
(default ``ef``), ``eta=`` (EControl's feedback strength, default 0.5, only with
``feedback=econtrol``), ``gamma=`` (the consensus step of the merge; default 1 for
quantizers and 0.3 for sparsifiers and PowerSGD, where 1 diverges: measured with top-k
1 % on digits, see docs/compression.md) and
``keyframe=int8|full`` (how a receiver gets its first copy). They are consumed by the
difference gossip of rumor.protocols.choco, not by the compressor. ``none`` means no
compression.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from rumor.aggregation.layout import Layout
from rumor.protocols.errors import ConfigError, RejectedMessage

F32 = npt.NDArray[np.float32]

#: feedback modes of the difference gossip (rumor.protocols.choco)
FEEDBACKS = ("none", "ef", "econtrol")
DEFAULT_FEEDBACK = "ef"
DEFAULT_ETA = 0.5
DEFAULT_GAMMA = 1.0


@dataclass(frozen=True)
class Compressed:
    """A compressed vector of dimension ``dim`` in one of the wire schemes.

    sparse:  ``indices`` (sorted, unique, < dim) and float32 ``values``
    seeded:  ``k`` float32 ``values`` at indices derived from the shared seed
    quant:   ``bits``-bit codes packed big-endian-bitwise into ``values`` (uint8), one
             float32 scale per ``block`` coordinates in ``scales``
    lowrank: float32 ``values``: per layer of the layout, P (m x r) then Q (n x r) for a
             factored matrix, the raw values otherwise (see powersgd.plan)
    """

    scheme: str
    dim: int
    values: npt.NDArray[Any]
    indices: npt.NDArray[np.int64] | None = None
    k: int = 0
    bits: int = 0
    block: int = 0
    scales: F32 | None = None
    rank: int = 0


class Compressor(Protocol):
    """A named, parameterized compressor."""

    name: str

    def compress(self, x: F32, *, seed: int) -> Compressed: ...


@dataclass(frozen=True)
class Param:
    """One parameter of a compressor: its parse function, default and help."""

    parse: Callable[[str], Any]
    default: Any
    help: str


@dataclass(frozen=True)
class CompressorInfo:
    factory: Callable[..., Compressor]
    summary: str
    params: dict[str, Param] = field(default_factory=dict)
    gamma: float = DEFAULT_GAMMA  # the default consensus step with this compressor


COMPRESSORS: dict[str, CompressorInfo] = {}
Decoder = Callable[[Compressed, int, Layout], F32]
DECODERS: dict[str, Decoder] = {}


def register_compressor(
    name: str, summary: str, params: dict[str, Param] | None = None,
    gamma: float = DEFAULT_GAMMA,
) -> Callable[[Callable[..., Compressor]], Callable[..., Compressor]]:
    def decorate(factory: Callable[..., Compressor]) -> Callable[..., Compressor]:
        if name in COMPRESSORS:
            raise ConfigError(f"compressor {name!r} registered twice")
        COMPRESSORS[name] = CompressorInfo(factory, summary, dict(params or {}), gamma)
        return factory

    return decorate


def register_scheme(scheme: str) -> Callable[[Decoder], Decoder]:
    def decorate(fn: Decoder) -> Decoder:
        DECODERS[scheme] = fn
        return fn

    return decorate


def compressor_names() -> list[str]:
    return sorted(COMPRESSORS)


# ------------------------------------------------------------------- the spec
def ratio(text: str) -> float:
    v = float(text)
    if not (math.isfinite(v) and 0.0 < v <= 1.0):
        raise ValueError("must be in (0, 1]")
    return v


def int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        v = int(text)
        if not low <= v <= high:
            raise ValueError(f"must be an integer in [{low}, {high}]")
        return v

    return parse


def _feedback(text: str) -> str:
    if text not in FEEDBACKS:
        raise ValueError(f"must be one of {', '.join(FEEDBACKS)}")
    return text


def _keyframe(text: str) -> str:
    if text not in ("int8", "full"):
        raise ValueError("must be int8 or full")
    return text


def _unit(text: str) -> float:
    v = float(text)
    if not (math.isfinite(v) and 0.0 < v <= 1.0):
        raise ValueError("must be in (0, 1]")
    return v


#: parameters every spec takes (consumed by the difference gossip)
COMMON: dict[str, Param] = {
    "feedback": Param(_feedback, DEFAULT_FEEDBACK,
                      "none | ef (error feedback = Choco) | econtrol (scaled feedback)"),
    "eta": Param(_unit, DEFAULT_ETA, "EControl feedback strength in (0, 1] "
                 "(feedback=econtrol only)"),
    "gamma": Param(_unit, None, "consensus step of the merge in (0, 1] (default: the "
                   "compressor's: 1 for quantizers, 0.3 for sparse and low-rank ones)"),
    "keyframe": Param(_keyframe, "int8", "a receiver's first copy: int8 (1 byte a "
                      "coordinate) or full (float32)"),
}


@dataclass(frozen=True)
class CompressionSpec:
    """A parsed ``--compress`` spec (``text`` is its canonical form)."""

    name: str
    params: dict[str, Any]
    feedback: str = DEFAULT_FEEDBACK
    eta: float = 1.0
    gamma: float = DEFAULT_GAMMA
    keyframe: str = "int8"

    @property
    def text(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.params.items())]
        parts.append(f"feedback={self.feedback}")
        if self.feedback == "econtrol":
            parts.append(f"eta={self.eta}")
        parts.append(f"gamma={self.gamma}")
        if self.keyframe != "int8":
            parts.append(f"keyframe={self.keyframe}")
        return f"{self.name}:{','.join(parts)}"


def parse_spec(text: str | None) -> CompressionSpec | None:
    """``NAME[:k=v,...]`` -> CompressionSpec, None for ``none``; ConfigError (one line)
    naming the choices otherwise."""
    if text is None or text.strip() in ("", "none"):
        return None
    name, _, rest = text.strip().partition(":")
    info = COMPRESSORS.get(name)
    if info is None:
        raise ConfigError(f"unknown compressor {name!r}; choose one of: none, "
                          f"{', '.join(compressor_names())} (--compress help lists them)")
    values: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, raw = item.partition("=")
        known = info.params.get(key) or COMMON.get(key)
        if not eq or known is None:
            allowed = ", ".join([*info.params, *COMMON])
            raise ConfigError(f"compressor {name!r}: bad parameter {item!r}; "
                              f"it takes {allowed} as key=value")
        if key in values:
            raise ConfigError(f"compressor {name!r}: {key} given twice")
        try:
            values[key] = known.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"compressor {name!r}: {key}={raw!r} {exc}") from None
    feedback = values.pop("feedback", DEFAULT_FEEDBACK)
    if "eta" in values and feedback != "econtrol":
        raise ConfigError(f"compressor {name!r}: eta applies to feedback=econtrol only")
    eta = values.pop("eta", DEFAULT_ETA) if feedback == "econtrol" else 1.0
    gamma = values.pop("gamma", info.gamma)
    keyframe = values.pop("keyframe", "int8")
    params = {k: values.get(k, p.default) for k, p in info.params.items()}
    return CompressionSpec(name, params, feedback, eta, gamma, keyframe)


def make_compressor(spec: CompressionSpec, layout: Layout, seed: int = 0) -> Compressor:
    """The compressor a spec names, for a model of this layout."""
    return COMPRESSORS[spec.name].factory(layout=layout, seed=seed, **spec.params)


def describe() -> str:
    """What ``rumor simulate --compress help`` prints: every compressor and parameter."""
    lines = ["compressors (--compress NAME[:k=v,...]; 'none' sends full models):"]
    for name in compressor_names():
        info = COMPRESSORS[name]
        lines.append(f"  {name}: {info.summary} (gamma={info.gamma})")
        for key, p in info.params.items():
            lines.append(f"      {key}={p.default}  {p.help}")
    lines.append("  every compressor also takes:")
    for key, p in COMMON.items():
        lines.append(f"      {key}={p.default if p.default is not None else 'auto'}  {p.help}")
    lines.append("  e.g. topk:ratio=0.01,feedback=econtrol,eta=0.5")
    return "\n".join(lines)


# ----------------------------------------------------------------- decoding
def decompress(c: Compressed, *, seed: int, layout: Layout) -> F32:
    """The (dim,) float32 vector ``c`` stands for; RejectedMessage on a bad payload."""
    decoder = DECODERS.get(c.scheme)
    if decoder is None:
        raise RejectedMessage("bad_compressed", f"unknown scheme {c.scheme[:16]!r}")
    if c.dim < 1:
        raise RejectedMessage("bad_compressed", f"dimension {c.dim}")
    out = decoder(c, seed, layout)
    if not np.isfinite(out).all():  # finite inputs can still overflow (scale x level)
        raise RejectedMessage("nan_inf", "decompressed vector holds NaN or Inf")
    return out


def check_finite(values: npt.NDArray[Any], what: str) -> None:
    if not np.isfinite(values).all():
        raise RejectedMessage("nan_inf", f"{what} hold NaN or Inf")


def layout_dim(layout: Layout) -> int:
    return layout[-1].stop if layout else 0
