"""Where each parameter tensor lives inside a flattened model vector.

Rules that act per weight tensor (variance correction, Bristle's per-class merge) get a
``layout=`` parameter: a tuple of LayerSlice in flattening order, covering [0, d).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerSlice:
    """Parameter ``name`` occupies vector[start:stop] with tensor ``shape``.

    ``is_weight`` is False for biases and normalisation parameters/statistics, which
    variance correction skips.
    """

    name: str
    start: int
    stop: int
    shape: tuple[int, ...]
    is_weight: bool


Layout = tuple[LayerSlice, ...]


def single_tensor_layout(d: int) -> Layout:
    """A layout that treats the whole vector as one weight tensor."""
    return (LayerSlice("all", 0, d, (d,), True),)
