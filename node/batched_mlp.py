"""Batched forward and backward of the MLP (rumor.node.models.MLP) by hand, for B peers
at once, without torch.func (whose first vmap/grad imports torch._dynamo: ~2 s).

Row b holds peer b's parameters: per layer l, W_l (B, out, in) and c_l (B, out). With
a_0 = flatten(x) (B, n, in):

    z_l = a_{l-1} W_l^T + c_l,   a_l = relu(z_l)  (l < L),   logits = z_L
    loss_b = mean_i CE(logits[b, i], y[b, i])

and the gradients of each row's own loss:

    dz_L = (softmax(z_L) - onehot(y)) / n
    dW_l = dz_l^T a_{l-1},   dc_l = sum_i dz_l,   dz_{l-1} = (dz_l W_l) * [z_{l-1} > 0]

the same function as vmap(grad(cross_entropy o functional_call)) (equal up to float
rounding; tests compare them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from rumor.node.models import MLP


def linear_layers(module: nn.Module) -> list[tuple[str, str]] | None:
    """The (weight, bias) parameter names of an MLP's Linear layers in order, or None
    when ``module`` is not an MLP (then torch.func does the work)."""
    if not isinstance(module, MLP):
        return None
    names: list[tuple[str, str]] = []
    for name, layer in module.net.named_children():
        if isinstance(layer, nn.Linear):
            names.append((f"net.{name}.weight", f"net.{name}.bias"))
        elif not isinstance(layer, nn.ReLU | nn.Flatten):
            return None
    return names


def _forward(params: Mapping[str, torch.Tensor], layers: Sequence[tuple[str, str]],
             a: torch.Tensor) -> list[torch.Tensor]:
    """[a_0, z_1, ..., z_L] for the flattened inputs a_0 = ``a`` (B, n, in)."""
    out = [a]
    for k, (w, c) in enumerate(layers):
        z = torch.baddbmm(params[c].unsqueeze(1), a, params[w].transpose(1, 2))
        out.append(z)
        a = torch.relu(z) if k < len(layers) - 1 else z
    return out


def logits(params: Mapping[str, torch.Tensor], x: torch.Tensor, *,
           layers: Sequence[tuple[str, str]]) -> torch.Tensor:
    """(B, n, C): every row's model on the same inputs x (n, *shape)."""
    flat = x.reshape(1, x.shape[0], -1).expand(params[layers[0][0]].shape[0], -1, -1)
    return _forward(params, layers, flat)[-1]


def grads(params: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
          layers: Sequence[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """{name: (B, *shape)}: each row's gradient of its mean cross-entropy on its own
    minibatch x (B, n, *shape), y (B, n)."""
    b, n = y.shape
    acts = _forward(params, layers, x.reshape(b, n, -1))
    dz = torch.softmax(acts[-1], dim=-1)
    dz.scatter_add_(2, y.unsqueeze(2), torch.full((b, n, 1), -1.0, dtype=dz.dtype))
    dz /= n
    out: dict[str, torch.Tensor] = {}
    for k in range(len(layers) - 1, -1, -1):
        w, c = layers[k]
        a_prev = acts[k] if k == 0 else torch.relu(acts[k])
        out[w] = torch.bmm(dz.transpose(1, 2), a_prev)
        out[c] = dz.sum(dim=1)
        if k > 0:
            dz = torch.bmm(dz, params[w]) * (acts[k] > 0)
    return out
