"""MoNNA: NNA on the received vectors, and the trainer's persistent Polyak momentum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rumor.aggregation import REGISTRY, make_defense
from rumor.aggregation.monna import MoNNA
from rumor.node.data import load_dataset, split_indices
from rumor.node.models import init_params
from rumor.node.trainer import BatchedTrainer, batch_schedule, peer_generator
from rumor.protocols.errors import ConfigError

D = 32


def test_monna_drops_the_f_farthest_vectors_and_averages_the_rest_with_own() -> None:
    gen = torch.Generator().manual_seed(0)
    own = torch.zeros(D)
    near = 0.1 * torch.randn(4, D, generator=gen)
    far = 100.0 + torch.randn(2, D, generator=gen)
    updates = torch.cat([near[:2], far[:1], near[2:], far[1:]])
    senders = ["a", "b", "evil1", "c", "d", "evil2"]
    m = make_defense("monna")
    out = m.merge(own, updates, senders, round=0, f=2)
    torch.testing.assert_close(out, (own + near.sum(0)) / 5)
    assert isinstance(m, MoNNA) and m.last_dropped == ["evil1", "evil2"]
    torch.testing.assert_close(out, REGISTRY["nna"](updates, own=own, f=2))


def test_monna_with_fewer_updates_than_f_keeps_own_and_state_round_trips() -> None:
    m = make_defense("monna", f=3)
    own = torch.randn(D)
    assert torch.equal(m.merge(own, torch.randn(2, D), ["a", "b"], round=0, f=0), own)
    assert torch.equal(m.merge(own, torch.zeros(0, D), [], round=1, f=0), own)
    m2 = make_defense("monna")
    m2.load_state_dict(m.state_dict())
    assert m2.state_dict() == {"params": {"f": 3}}


@pytest.fixture(scope="module")
def trainer_and_data() -> tuple[BatchedTrainer, list[np.ndarray], torch.Tensor]:
    ds = load_dataset("digits")
    tr = BatchedTrainer("mlp", ds.input_shape, ds.num_classes, ds, lr=0.1, batch_size=8,
                        local_steps=3)
    parts = split_indices(ds.y_train.numpy(), 3, "iid", 1)
    params = torch.stack([init_params("mlp", ds.input_shape, ds.num_classes, s)
                          for s in range(3)])
    return tr, parts, params


def test_polyak_momentum_follows_its_formula_and_persists_across_rounds(
    trainer_and_data: tuple[BatchedTrainer, list[np.ndarray], torch.Tensor],
) -> None:
    tr, parts, params = trainer_and_data
    beta, lr = 0.9, tr.lr
    state = torch.zeros_like(params)
    # reference with the same batches; the gradient is one SGD step at lr 1 on that batch
    ref = BatchedTrainer("mlp", tr.input_shape, tr.num_classes, load_dataset("digits"),
                         lr=1.0, batch_size=8, local_steps=1)
    w = params.clone()
    m = torch.zeros_like(params)
    for rnd in range(2):
        steps = tr.local_steps or 0
        scheds = [batch_schedule(parts[p], steps, 8, peer_generator(1, rnd, p))
                  for p in range(3)]
        for s in range(steps):
            g = torch.stack([
                w[p] - ref.train(w[p:p + 1], [scheds[p][s]], seed=0, round=0)[0]
                for p in range(3)
            ])  # one SGD step at lr 1 on exactly that batch = the gradient
            m = beta * m + (1 - beta) * g
            w = w - lr * m
    out = params
    for rnd in range(2):
        out = tr.train(out, parts, seed=1, round=rnd, momentum_state=state, polyak_beta=beta)
    torch.testing.assert_close(out, w, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(state, m, atol=1e-5, rtol=1e-4)


def test_default_training_is_unchanged_and_bad_polyak_arguments_are_rejected(
    trainer_and_data: tuple[BatchedTrainer, list[np.ndarray], torch.Tensor],
) -> None:
    tr, parts, params = trainer_and_data
    plain = tr.train(params, parts, seed=1, round=0)
    zero_beta = tr.train(params, parts, seed=1, round=0,
                         momentum_state=torch.zeros_like(params), polyak_beta=0.0)
    torch.testing.assert_close(plain, zero_beta)  # beta = 0: m = g, plain SGD
    with pytest.raises(ConfigError):
        tr.train(params, parts, seed=1, momentum_state=torch.zeros_like(params))
    with pytest.raises(ConfigError):
        tr.train(params, parts, seed=1, momentum_state=torch.zeros_like(params),
                 polyak_beta=1.0)
