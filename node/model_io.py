"""A peer's model vector as a file others can load: safetensors or a torch ``.pt``.

The flat vector x (length d) and its Layout (one LayerSlice per parameter tensor, in
``named_parameters()`` order) give the state dict ``{name: x[start:stop].view(shape)}``:
weights only, float32, loadable with ``model.load_state_dict(...)`` into
``rumor.node.models.build_model(name, input_shape, num_classes)``.

- ``*.safetensors``: ``safetensors.torch.save_file`` (metadata: model, round, peer);
- ``*.pt``: ``torch.save(state_dict)`` (a plain dict of tensors; ``weights_only=True``
  loads it).

``layout_json`` / ``layout_from_json`` carry a Layout through JSON (the HTTP API's
GET /model, worker events).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from rumor.aggregation.layout import LayerSlice, Layout
from rumor.protocols.errors import ConfigError

FORMATS = (".safetensors", ".pt")


def layout_json(layout: Layout) -> list[dict[str, Any]]:
    return [{"name": s.name, "start": s.start, "stop": s.stop, "shape": list(s.shape),
             "is_weight": s.is_weight} for s in layout]


def layout_from_json(items: list[dict[str, Any]]) -> Layout:
    try:
        return tuple(LayerSlice(str(it["name"]), int(it["start"]), int(it["stop"]),
                                tuple(int(n) for n in it["shape"]), bool(it["is_weight"]))
                     for it in items)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"not a model layout: {exc}") from None


def vector_b64(vector: npt.NDArray[np.floating]) -> str:
    """The vector as base64 little-endian float32."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def vector_from_b64(text: str) -> npt.NDArray[np.float32]:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


def state_dict(vector: npt.NDArray[np.floating], layout: Layout) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` of the model; ConfigError if the layout does not cover x."""
    x = torch.from_numpy(np.array(vector, dtype=np.float32))
    d = layout[-1].stop if layout else 0
    if x.dim() != 1 or x.numel() != d:
        raise ConfigError(f"the model has {x.numel()} parameters, its layout {d}")
    return {s.name: x[s.start:s.stop].reshape(s.shape).clone() for s in layout}


def save_model(path: Path, vector: npt.NDArray[np.floating], layout: Layout,
               metadata: Mapping[str, object] | None = None) -> Path:
    """Write the state dict to ``path`` (.safetensors or .pt, by its suffix)."""
    tensors = state_dict(vector, layout)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"{path}: the model file must end in .safetensors or .pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(tmp),
                  metadata={str(k): str(v) for k, v in (metadata or {}).items()})
    else:
        torch.save(tensors, tmp)
    tmp.replace(path)
    return path


def load_model(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a file written by save_model (either format)."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    loaded = torch.load(path, weights_only=True)
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: not a state dict")
    return dict(loaded)
