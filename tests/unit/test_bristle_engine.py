"""Bristle on the one engine: the defense, the evaluator of local data, the head model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rumor import aggregation
from rumor.aggregation.bristle import merge_per_class
from rumor.aggregation.layout import LayerSlice
from rumor.node.data import load_dataset, split_indices
from rumor.node.engine import LocalEvaluator, build_peer
from rumor.node.models import build_model, init_params, num_params
from rumor.node.trainer import BatchedTrainer
from rumor.node.transfer import frozen_extractor, public_slice
from rumor.protocols.config import ProtocolConfig
from rumor.protocols.errors import AggregationError, ConfigError
from rumor.protocols.identity import Identity

C, H = 3, 2
LAYOUT = (LayerSlice("head.weight", 0, C * H, (C, H), True),
          LayerSlice("head.bias", C * H, C * H + C, (C,), False))


class FakeEvaluator:
    """F1 = 1 on the familiar classes for vectors whose first entry is >= 0, else 0."""

    def __init__(self, familiar: list[bool]) -> None:
        self._familiar = np.array(familiar)

    @property
    def familiar(self) -> np.ndarray:
        return self._familiar

    def per_class_f1(self, vectors: np.ndarray) -> np.ndarray:
        good = (vectors[:, 0] >= 0).astype(np.float64)[:, None]
        return good * self._familiar[None, :].astype(np.float64)


def test_unfamiliar_columns_are_taken_from_senders_by_weight() -> None:
    own = torch.tensor([[1.0, 1.0], [-9.0, -9.0]])
    others = torch.tensor([[[3.0, 3.0], [4.0, 4.0]], [[3.0, 3.0], [8.0, 8.0]]])
    f1_own, f1 = np.array([1.0, 0.0]), np.array([[1.0, 0.0], [1.0, 0.0]])
    out = merge_per_class(own, others, f1_own, f1, [1.0, 3.0], familiar=[True, False])
    assert torch.allclose(out[1], torch.tensor([7.0, 7.0]))  # (4 + 3*8) / 4, own left out
    assert torch.allclose(out[0], torch.tensor([(1 + 3 + 9) / 5] * 2))
    none = merge_per_class(own, others, f1_own, f1, [0.0, 0.0], familiar=[True, False])
    assert torch.equal(none, own)


def test_bristle_defense_distrusts_a_bad_sender_and_merges_the_head_per_class() -> None:
    d = aggregation.make_defense("bristle", evaluator=FakeEvaluator([True, True, False]),
                                 layout=LAYOUT, seed=3)
    own = torch.zeros(C * H + C)
    good = torch.ones(C * H + C)
    bad = -5 * torch.ones(C * H + C)
    out = d.merge(own, torch.stack([good, bad]), ["good", "bad"], round=0, f=0)
    assert d.state_dict()["scores"]["bad"] < 0 <= d.state_dict()["scores"]["good"]
    assert float(out.min()) >= 0.0  # nothing of the bad sender
    w = out[: C * H].reshape(C, H)
    assert torch.allclose(w[2], torch.ones(H))  # unfamiliar class 2: the good sender's
    again = aggregation.make_defense("bristle", evaluator=FakeEvaluator([True, True, False]))
    again.load_state_dict(d.state_dict())
    assert again.state_dict() == d.state_dict()


def test_bristle_without_an_evaluator_fails_at_merge_and_build_peer_refuses_it() -> None:
    d = aggregation.make_defense("bristle", layout=LAYOUT)
    with pytest.raises(AggregationError):
        d.merge(torch.zeros(9), torch.zeros(2, 9), ["a", "b"], round=0, f=0)
    with pytest.raises(ConfigError):
        build_peer(Identity.from_seed(b"\x01" * 32), ProtocolConfig(aggregator="bristle"),
                   dimension=9, layout=LAYOUT)


def test_bristle_head_exchanges_only_the_head_over_a_frozen_seeded_extractor() -> None:
    ds = load_dataset("digits")
    ext = frozen_extractor(ds)
    assert frozen_extractor(ds) is ext  # computed once per process
    assert ext.test_acc > 0.85
    assert np.array_equal(ext.public, public_slice(ds))
    model = build_model("bristle-head", ds.input_shape, ds.num_classes, ds)
    assert num_params(model) == 10 * 65 == init_params(
        "bristle-head", ds.input_shape, 10, 0).numel()
    assert not list(model.buffers())
    tr = BatchedTrainer("bristle-head", ds.input_shape, ds.num_classes, ds, lr=0.1)
    assert [s.name for s in tr.layout] == ["head.weight", "head.bias"]


def test_the_evaluator_validates_on_the_peers_own_data_only() -> None:
    ds = load_dataset("digits")
    tr = BatchedTrainer("bristle-head", ds.input_shape, ds.num_classes, ds, lr=0.1)
    parts = split_indices(ds.y_train.numpy(), 10, "dirichlet:0.1", 1)
    own = parts[0]
    ev = LocalEvaluator(tr, own, val_size=20, seed=5)
    assert set(ev.indices.tolist()) <= set(own.tolist())
    held = np.unique(ds.y_train.numpy()[own])
    assert set(np.flatnonzero(ev.familiar).tolist()) <= set(held.tolist())
    assert not ev.familiar.all()  # a non-IID peer cannot validate every class
    vecs = torch.stack([init_params("bristle-head", ds.input_shape, 10, s) for s in (1, 2)])
    f1 = ev.per_class_f1(vecs.numpy())
    assert f1.shape == (2, 10)
    assert (f1[:, ~ev.familiar] == 0).all()  # no sample of a class it never held
    slow = LocalEvaluator(tr, own, val_size=20, seed=5)
    slow._feats = None  # the generic path (trainer.predict) agrees with the fast one
    assert np.allclose(slow.per_class_f1(vecs.numpy()), f1)
