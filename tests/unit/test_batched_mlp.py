"""rumor.node.batched_mlp: the MLP's batched gradients and logits by hand equal
torch.func's vmap(grad(cross_entropy o functional_call)) and vmap(functional_call)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call, grad, vmap

from rumor.node import batched_mlp
from rumor.node.models import MLP, LeNet5


@settings(max_examples=25, deadline=None)
@given(hidden=st.lists(st.integers(1, 12), min_size=0, max_size=3),
       rows=st.integers(1, 5), batch=st.integers(1, 9), classes=st.integers(2, 6),
       seed=st.integers(0, 2**31 - 1))
def test_gradients_and_logits_equal_torch_funcs(hidden: list[int], rows: int, batch: int,
                                                 classes: int, seed: int) -> None:
    torch.manual_seed(seed)
    module = MLP((2, 3), classes, hidden=tuple(hidden))
    layers = batched_mlp.linear_layers(module)
    assert layers is not None and len(layers) == len(hidden) + 1
    params = {k: torch.randn(rows, *v.shape) for k, v in module.named_parameters()}
    x = torch.randn(rows, batch, 2, 3)
    y = torch.randint(0, classes, (rows, batch))

    def loss(p: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(module, p, (xb,)), yb)

    want = vmap(grad(loss))(params, x, y)
    got = batched_mlp.grads(params, x, y, layers=layers)
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
    xs = torch.randn(7, 2, 3)
    want_logits = vmap(lambda p, xb: functional_call(module, p, (xb,)),
                       in_dims=(0, None))(params, xs)
    torch.testing.assert_close(batched_mlp.logits(params, xs, layers=layers), want_logits,
                               rtol=1e-5, atol=1e-6)


def test_other_models_keep_torch_func() -> None:
    assert batched_mlp.linear_layers(LeNet5((1, 28, 28), 10)) is None
