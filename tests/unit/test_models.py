"""Models: shapes on digits and 28x28, the flat vector, its layout, seeded init."""

from __future__ import annotations

import itertools

import pytest
import torch

from rumor.node.models import (
    MODEL_NAMES,
    build_model,
    flatten_params,
    init_params,
    init_params_stack,
    num_params,
    param_layout,
    unflatten_into,
)
from rumor.protocols.errors import ConfigError

SHAPES = [(1, 8, 8), (1, 28, 28)]


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("shape", SHAPES)
def test_every_model_maps_images_to_logits(name: str, shape: tuple[int, ...]) -> None:
    model = build_model(name, shape, 10)
    assert model(torch.zeros(3, *shape)).shape == (3, 10)
    assert not list(model.buffers())


def test_mlp_on_digits_is_64_32_10_and_lenet5_on_mnist_is_classic() -> None:
    assert num_params(build_model("mlp", (1, 8, 8), 10)) == 64 * 32 + 32 + 32 * 10 + 10
    assert num_params(build_model("lenet5", (1, 28, 28), 10)) == 61706


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(ConfigError) as err:
        build_model("resnet", (1, 8, 8), 10)
    assert all(n in str(err.value) for n in MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_flatten_unflatten_round_trip(name: str) -> None:
    a = build_model(name, (1, 8, 8), 10)
    b = build_model(name, (1, 8, 8), 10)
    vec = flatten_params(a)
    assert vec.shape == (num_params(a),) and vec.dtype == torch.float32
    unflatten_into(b, vec)
    assert torch.equal(flatten_params(b), vec)
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(a(x), b(x))
    with pytest.raises(ValueError):
        unflatten_into(b, vec[:-1])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_layout_covers_the_vector_and_marks_biases(name: str) -> None:
    model = build_model(name, (1, 28, 28), 10)
    layout = param_layout(model)
    assert layout[0].start == 0 and layout[-1].stop == num_params(model)
    for prev, cur in itertools.pairwise(layout):
        assert prev.stop == cur.start
    for sl in layout:
        assert sl.stop - sl.start == torch.Size(sl.shape).numel()
        assert sl.is_weight == (not sl.name.endswith("bias"))


def test_init_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = init_params("lenet5", (1, 8, 8), 10, seed=5)
    assert torch.equal(torch.rand(1), before)
    assert torch.equal(a, init_params("lenet5", (1, 8, 8), 10, seed=5))
    assert not torch.equal(a, init_params("lenet5", (1, 8, 8), 10, seed=6))
    stack = init_params_stack("mlp", (1, 8, 8), 10, [1, 2])
    assert stack.shape == (2, 2410) and torch.equal(stack[1], init_params("mlp", (1, 8, 8), 10, 2))


@pytest.mark.parametrize("name", ["mlp", "lenet5", "cnn"])
def test_init_params_is_exactly_torch_manual_seed_then_build_model(name: str) -> None:
    """Seeding only the CPU generator gives the values torch.manual_seed gives."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        want = flatten_params(build_model(name, (1, 28, 28), 10))
    assert torch.equal(init_params(name, (1, 28, 28), 10, seed=11), want)
