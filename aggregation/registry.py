"""The rule registry and the one place where rule arguments are validated.

Contract (tests, benchmarks and the peer rely on it)::

    rule = REGISTRY["trimmed-mean"]
    x = rule(updates, own=own_vector, f=2, **params)   # updates: (n, d) float -> (d,)

``updates`` holds the vectors a peer received this round (its partial view). When
``own`` is given, rules aggregate over {own} ∪ updates (n = len(updates) + 1, as in
ALGORITHMS.md) unless their docstring says how they use ``own`` differently (NNA and
centered clipping measure distances to it). When ``own`` is None they aggregate
``updates`` alone. Rules never modify their inputs and return the dtype of ``updates``.

``get("vc:<rule>")`` returns ``<rule>`` followed by variance correction (see
rumor.aggregation.variance); ``names()`` lists only the base rules.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from rumor.protocols.errors import AggregationError


class Rule(Protocol):
    """A registered aggregation rule."""

    __name__: str

    def __call__(
        self, updates: Tensor, *, own: Tensor | None = None, f: int = 0, **params: Any
    ) -> Tensor: ...


REGISTRY: dict[str, Rule] = {}


def names() -> list[str]:
    """Every registered rule name, sorted."""
    return sorted(REGISTRY)


def get(name: str) -> Rule:
    """The rule registered as ``name``; AggregationError naming the choices otherwise.

    ``"vc:<rule>"`` composes ``<rule>`` with variance correction (extra params
    ``layout=`` and ``tau2_from=``; see rumor.aggregation.variance.corrected).
    """
    if name.startswith("vc:"):
        from rumor.aggregation.variance import corrected  # lazy: variance imports registry

        return corrected(get(name[3:]))
    try:
        return REGISTRY[name]
    except KeyError:
        raise AggregationError(
            f"unknown aggregation rule {name!r}; choose one of: {', '.join(names())}"
        ) from None


def check_inputs(
    updates: Tensor, own: Tensor | None, f: int, min_honest: int = 0, min_extra: int = 0
) -> int:
    """Validate shapes and f; return n, the number of vectors the rule sees.

    Raises AggregationError on: non-tensor or non-2-D ``updates``, non-float dtype,
    d == 0, an empty view (no updates and no own), ``own`` not of shape (d,) or not
    floating point, negative f, or n <= min_honest * f + min_extra (pass min_honest=2
    for rules that need n > 2f; min_honest=2, min_extra=2 for Krum's n > 2f + 2).
    """
    if not isinstance(updates, Tensor) or updates.dim() != 2:
        shape = tuple(updates.shape) if isinstance(updates, Tensor) else type(updates)
        raise AggregationError(f"updates must be a 2-D tensor (n, d), got {shape}")
    if not updates.is_floating_point():
        raise AggregationError(f"updates must be floating point, got {updates.dtype}")
    d = updates.shape[1]
    if d == 0:
        raise AggregationError("updates have dimension d = 0")
    if own is not None:
        if not isinstance(own, Tensor) or own.shape != (d,):
            got = tuple(own.shape) if isinstance(own, Tensor) else type(own)
            raise AggregationError(f"own must have shape ({d},), got {got}")
        if not own.is_floating_point():
            raise AggregationError(f"own must be floating point, got {own.dtype}")
    n = updates.shape[0] + (1 if own is not None else 0)
    if n == 0:
        raise AggregationError("nothing to aggregate: no updates and no own vector")
    if f < 0:
        raise AggregationError(f"f must be >= 0, got {f}")
    if (min_honest or min_extra) and n <= min_honest * f + min_extra:
        need = f"{min_honest}f" + (f" + {min_extra}" if min_extra else "")
        raise AggregationError(f"this rule needs n > {need}, got n={n}, f={f}")
    return n


def with_own(updates: Tensor, own: Tensor | None) -> Tensor:
    """Stack ``own`` on top of ``updates`` when given: the (n, d) set a rule aggregates."""
    if own is None:
        return updates
    return torch.cat([own.unsqueeze(0).to(updates.dtype), updates], dim=0)


def register(
    name: str, *, min_honest: int = 0, min_extra: int = 0
) -> Callable[[Callable[..., Tensor]], Rule]:
    """Register a rule under ``name``; the wrapper validates inputs the same way for all.

    ``min_honest=2`` makes the wrapper reject n <= 2f with AggregationError;
    ``min_extra=k`` raises the bar to n <= min_honest * f + k. The wrapper returns the
    rule's output in the dtype of ``updates``.
    """

    def decorate(fn: Callable[..., Tensor]) -> Rule:
        if name in REGISTRY:
            raise AggregationError(f"rule {name!r} registered twice")

        @functools.wraps(fn)
        def wrapper(
            updates: Tensor, *, own: Tensor | None = None, f: int = 0, **params: Any
        ) -> Tensor:
            check_inputs(updates, own, f, min_honest, min_extra)
            out = fn(updates, own=own, f=f, **params)
            return out.to(updates.dtype)

        REGISTRY[name] = wrapper
        return wrapper

    return decorate
