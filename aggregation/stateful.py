"""Stateful defenses: per-peer objects whose state is explicit and checkpointable.

A stateless rule (REGISTRY) sees only this round's vectors. A stateful defense also
knows who sent what (``senders``) and remembers across rounds (SybilWall's update
histories, MoNNA-style momentum bookkeeping, Bristle's per-peer scores). Each peer
owns one instance, built by ``make_defense(name, **params)``.

Contract::

    d = make_defense("sybilwall", **params)
    x = d.merge(own, updates, senders, round=r, f=f)   # (d,), updates (n, d)
    state = d.state_dict(); d2 = make_defense(name); d2.load_state_dict(state)

``state_dict`` returns plain data (numbers, strings, lists, tensors) so a runtime can
checkpoint it with numpy/msgpack, never pickle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from torch import Tensor

from rumor.protocols.errors import AggregationError


class Defense(Protocol):
    """One peer's stateful merge rule."""

    def merge(
        self, own: Tensor, updates: Tensor, senders: Sequence[str], *, round: int, f: int
    ) -> Tensor: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


DefenseFactory = Callable[..., Defense]
DEFENSES: dict[str, DefenseFactory] = {}


def register_defense(name: str) -> Callable[[DefenseFactory], DefenseFactory]:
    def decorate(factory: DefenseFactory) -> DefenseFactory:
        if name in DEFENSES:
            raise AggregationError(f"defense {name!r} registered twice")
        DEFENSES[name] = factory
        return factory

    return decorate


def defense_names() -> list[str]:
    return sorted(DEFENSES)


def make_defense(name: str, **params: Any) -> Defense:
    try:
        factory = DEFENSES[name]
    except KeyError:
        raise AggregationError(
            f"unknown defense {name!r}; choose one of: {', '.join(defense_names())}"
        ) from None
    return factory(**params)
