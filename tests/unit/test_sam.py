"""DFedSAM's local step: w' = w + rho g/||g||, then SGD with the gradient at w'."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from rumor.node.data import load_dataset
from rumor.node.models import init_params
from rumor.node.optimizers import parse_optimizer
from rumor.node.trainer import BatchedTrainer, batch_schedule, peer_generator, sam_ascent
from rumor.protocols.errors import ConfigError


def test_ascent_point_by_hand() -> None:
    # loss 0.5 ||w||^2 has g = w. w = (3, 4): ||g|| = 5, rho = 0.5:
    # w' = (3, 4) + 0.5 * (0.6, 0.8) = (3.3, 4.4); SGD with lr 0.1 at g(w') = w':
    # w_new = (3, 4) - 0.1 * (3.3, 4.4) = (2.67, 3.56)
    w = {"a": torch.tensor([[3.0]]), "b": torch.tensor([[4.0]])}
    up = sam_ascent(w, w, 0.5)
    assert up["a"].item() == pytest.approx(3.3) and up["b"].item() == pytest.approx(4.4)
    new = {k: w[k] - 0.1 * up[k] for k in w}
    assert new["a"].item() == pytest.approx(2.67) and new["b"].item() == pytest.approx(3.56)
    # rows are normalised separately; a zero gradient stays put
    two = {"a": torch.tensor([[3.0], [0.0]]), "b": torch.tensor([[4.0], [0.0]])}
    up2 = sam_ascent(two, two, 0.5)
    assert up2["a"][1].item() == 0.0 and up2["a"][0].item() == pytest.approx(3.3)


def _manual_sam(trainer: BatchedTrainer, w: torch.Tensor, indices: torch.Tensor,
                steps: int, seed: int, lr: float, rho: float) -> torch.Tensor:
    """The SAM update written out with autograd, one step at a time."""
    module = trainer.module
    sched = batch_schedule(indices.numpy(), steps, trainer.batch_size,
                           peer_generator(seed, 0, 0))
    w = w.clone()
    for s in range(steps):
        idx = torch.from_numpy(sched[s])
        x, y = trainer.x_train[idx], trainer.y_train[idx]

        def grad_at(v: torch.Tensor, x: torch.Tensor = x, y: torch.Tensor = y
                    ) -> torch.Tensor:
            v = v.clone().requires_grad_(True)
            params = {sl.name: v[sl.start:sl.stop].view(sl.shape) for sl in trainer.layout}
            loss = F.cross_entropy(functional_call(module, params, (x,)), y)
            (g,) = torch.autograd.grad(loss, v)
            return g

        g = grad_at(w)
        g2 = grad_at(w + rho * g / g.norm())
        w = w - lr * g2
    return w


def test_trainer_sam_matches_the_formula_in_the_single_and_batched_paths() -> None:
    ds = load_dataset("digits")
    kw = {"lr": 0.1, "batch_size": 8, "local_steps": 3}
    sam = BatchedTrainer("mlp", ds.input_shape, ds.num_classes, ds, sam_rho=0.05, **kw)
    sgd = BatchedTrainer("mlp", ds.input_shape, ds.num_classes, ds, **kw)
    w0 = init_params("mlp", ds.input_shape, ds.num_classes, 3)
    idx = torch.arange(40)
    want = _manual_sam(sam, w0, idx, 3, seed=7, lr=0.1, rho=0.05)
    one = sam.train_one(w0, idx.numpy(), seed=7, peer=0)
    torch.testing.assert_close(one, want, rtol=1e-4, atol=1e-5)
    # batched: peer 0 among others gets the same update as alone
    rows = torch.stack([w0, init_params("mlp", ds.input_shape, ds.num_classes, 4)])
    both = sam.train(rows, [idx.numpy(), torch.arange(40, 90).numpy()], seed=7)
    torch.testing.assert_close(both[0], want, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(sgd.train_one(w0, idx.numpy(), seed=7), want, atol=1e-4)


def test_optimizer_specs() -> None:
    assert parse_optimizer("sgd").sam_rho == 0.0
    assert parse_optimizer("sam").sam_rho == 0.05
    assert parse_optimizer("sam:rho=0.2").sam_rho == 0.2
    for bad in ("adam", "sam:rho=-1", "sam:rho=inf", "sam:r=1", "sam:rho", "sgd:rho=1"):
        with pytest.raises(ConfigError):
            parse_optimizer(bad)
