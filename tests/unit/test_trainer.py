"""The batched trainer: vmap over peers equals training each peer alone."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rumor.node.data import Dataset, load_dataset, split_indices
from rumor.node.models import build_model, flatten_params, init_params, unflatten_into
from rumor.node.trainer import (
    BatchedTrainer,
    batch_schedule,
    confusion_matrices,
    label_map_tensor,
    peer_generator,
)
from rumor.protocols.errors import ConfigError


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny batched ops are fastest on one thread (and CI machines are shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _reference_sgd(
    ds: Dataset, name: str, vec: torch.Tensor, idx: np.ndarray, peer: int, *, seed: int,
    rnd: int, steps: int, bs: int, lr: float, momentum: float, wd: float,
    label_map: torch.Tensor | None = None,
) -> torch.Tensor:
    """One peer with an nn.Module and torch.optim.SGD on the documented batches."""
    model = unflatten_into(build_model(name, ds.input_shape, 10), vec)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    sched = batch_schedule(idx, steps, bs, peer_generator(seed, rnd, peer))
    for s in range(steps):
        b = torch.from_numpy(sched[s])
        y = ds.y_train[b] if label_map is None else label_map[ds.y_train[b]]
        opt.zero_grad()
        torch.autograd.backward(F.cross_entropy(model(ds.x_train[b]), y))
        opt.step()
    return flatten_params(model)


@pytest.mark.parametrize("name", ["mlp", "lenet5"])
def test_vmap_training_equals_training_each_peer_alone(digits: Dataset, name: str) -> None:
    peers = 6
    parts = split_indices(digits.y_train.numpy(), peers, "dirichlet:0.5", seed=0)
    params = torch.stack([init_params(name, digits.input_shape, 10, s) for s in range(peers)])
    flips = {2: {0: 1, 1: 0}}
    tr = BatchedTrainer(name, digits.input_shape, 10, digits, lr=0.05, batch_size=8,
                        local_steps=5, momentum=0.9, weight_decay=1e-3, chunk_size=4)
    out = tr.train(params, parts, seed=11, round=3, label_maps=flips)
    assert out.shape == params.shape and not torch.equal(out, params)
    for p in range(peers):
        lm = label_map_tensor(flips.get(p), 10)
        ref = _reference_sgd(digits, name, params[p], parts[p], p, seed=11, rnd=3, steps=5,
                             bs=8, lr=0.05, momentum=0.9, wd=1e-3, label_map=lm)
        torch.testing.assert_close(out[p], ref, rtol=1e-4, atol=1e-5)
        alone = tr.train(params, parts, seed=11, round=3, rows=[p], label_maps=flips)
        torch.testing.assert_close(out[p:p + 1], alone, rtol=1e-5, atol=1e-6)


def test_train_one_runs_the_same_code_as_a_batched_peer(digits: Dataset) -> None:
    parts = split_indices(digits.y_train.numpy(), 4, "iid", seed=0)
    params = init_params("mlp", digits.input_shape, 10, 0).repeat(4, 1)
    tr = BatchedTrainer("mlp", digits.input_shape, 10, digits, lr=0.1, batch_size=16)
    steps = tr.steps_per_round([len(p) for p in parts])
    batched = tr.train(params, parts, seed=5, round=1)
    module = build_model("mlp", digits.input_shape, 10)
    unflatten_into(module, params[2])
    one = tr.train_one(module, parts[2], seed=5, round=1, peer=2, steps=steps)
    torch.testing.assert_close(one, batched[2], rtol=1e-5, atol=1e-6)
    assert torch.equal(flatten_params(module), one)


def test_training_is_bit_identical_across_runs(digits: Dataset) -> None:
    parts = split_indices(digits.y_train.numpy(), 8, "iid", seed=0)
    params = torch.stack([init_params("cnn", digits.input_shape, 10, s) for s in range(8)])
    tr = BatchedTrainer("cnn", digits.input_shape, 10, digits, lr=0.05, batch_size=16,
                        local_steps=4, momentum=0.5, chunk_size=3)
    a = tr.train(params, parts, seed=9)
    b = tr.train(params.clone(), parts, seed=9)
    assert torch.equal(a, b)
    assert not torch.equal(a, tr.train(params, parts, seed=10))


def test_ten_iid_peers_with_averaging_learn_digits(digits: Dataset) -> None:
    peers = 10
    parts = split_indices(digits.y_train.numpy(), peers, "iid", seed=0)
    params = init_params("mlp", digits.input_shape, 10, 0).repeat(peers, 1)
    tr = BatchedTrainer("mlp", digits.input_shape, 10, digits, lr=0.1, batch_size=16,
                        local_epochs=2)
    for rnd in range(5):
        params = tr.train(params, parts, seed=0, round=rnd).mean(0, keepdim=True)
        params = params.repeat(peers, 1)
    acc = tr.evaluate(params, digits.x_test, digits.y_test)
    assert acc.shape == (peers,) and acc.min() > 0.8


def test_predict_and_confusion_agree_with_single_models(digits: Dataset) -> None:
    params = torch.stack([init_params("lenet5", digits.input_shape, 10, s) for s in range(3)])
    tr = BatchedTrainer("lenet5", digits.input_shape, 10, digits, lr=0.1)
    x, y = digits.x_test, digits.y_test
    pred = tr.predict(params, x, chunk_size=2, max_examples=100)
    for p in range(3):
        model = unflatten_into(build_model("lenet5", digits.input_shape, 10), params[p])
        with torch.no_grad():
            assert torch.equal(pred[p], model(x).argmax(1))
    cm = confusion_matrices(pred, y, 10)
    assert cm.shape == (3, 10, 10) and (cm.sum(axis=(1, 2)) == len(y)).all()
    acc = tr.evaluate(params, x, y)
    np.testing.assert_allclose(acc, np.trace(cm, axis1=1, axis2=2) / len(y))


def test_empty_peers_are_returned_unchanged(digits: Dataset) -> None:
    parts = [np.arange(20), np.array([], dtype=np.int64), np.arange(20, 25)]
    params = init_params("mlp", digits.input_shape, 10, 0).repeat(3, 1)
    tr = BatchedTrainer("mlp", digits.input_shape, 10, digits, lr=0.1, batch_size=4)
    assert tr.steps_per_round([20, 0, 5]) == 4  # median of non-empty sizes (12.5) / 4
    out = tr.train(params, parts, seed=0, rows=[1, 2])
    assert torch.equal(out[0], params[1]) and not torch.equal(out[1], params[2])


def test_batch_schedule_is_without_replacement_within_a_pass() -> None:
    idx = np.arange(100, 110)
    sched = batch_schedule(idx, steps=5, batch_size=4, rng=peer_generator(0, 0, 0))
    flat = sched.reshape(-1)
    assert sorted(flat[:10].tolist()) == idx.tolist()
    assert sorted(flat[10:20].tolist()) == idx.tolist()


def test_bad_arguments_are_rejected(digits: Dataset) -> None:
    with pytest.raises(ConfigError):
        BatchedTrainer("mlp", digits.input_shape, 10, digits, lr=0.0)
    with pytest.raises(ConfigError):
        BatchedTrainer("mlp", (1, 28, 28), 10, digits, lr=0.1)
    with pytest.raises(ConfigError):
        label_map_tensor([0, 1], 10)
    tr = BatchedTrainer("mlp", digits.input_shape, 10, digits, lr=0.1)
    with pytest.raises(ValueError):
        tr.train(torch.zeros(2, 5), [np.arange(3)] * 2, seed=0)


def test_one_trainer_used_by_two_threads_at_once_trains_and_evaluates_correctly(
        digits: Dataset) -> None:
    """A real peer evaluates a merge (engine thread) while a training runs (another
    thread), and a catch-up starts a new training while the old one is in flight:
    functional_call swaps tensors into the shared module, so without the trainer's
    lock the other thread's grad saw non-grad tensors ("One of the differentiated
    Tensors does not require grad"; a late joiner crashed with it on the mesh)."""
    import threading

    parts = split_indices(digits.y_train.numpy(), 4, "iid", seed=0)
    tr = BatchedTrainer("mlp", digits.input_shape, 10, digits, lr=0.1, batch_size=8)
    params = init_params("mlp", digits.input_shape, 10, 0)[None]
    expected = tr.train(params, parts[:1], seed=1, round=0)
    errors: list[BaseException] = []
    results: list[torch.Tensor] = []
    stop = threading.Event()

    def train() -> None:
        try:
            for _ in range(60):
                results.append(tr.train(params, parts[:1], seed=1, round=0))
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def evaluate() -> None:
        try:
            while not stop.is_set():
                tr.evaluate(params, digits.x_test, digits.y_test)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=train), threading.Thread(target=train),
               threading.Thread(target=evaluate)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len(results) == 120 and all(torch.equal(r, expected) for r in results)


def test_warm_up_pays_torch_funcs_first_call_imports_in_a_fresh_process() -> None:
    """Launch workers call warm_up() before ready; it is only worth it while torch.func's
    first grad imports torch._dynamo, which this checks in a fresh interpreter."""
    import subprocess
    import sys

    code = ("import sys\nfrom rumor.node.trainer import warm_up\n"
            "assert 'torch._dynamo' not in sys.modules\nwarm_up()\n"
            "assert 'torch._dynamo' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr
