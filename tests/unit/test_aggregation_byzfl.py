"""Our rules against byzfl 0.0.11 (a dev extra) on shared random inputs.

``import byzfl`` imports torchvision and seaborn (for its benchmark module only); where
they are missing or do not load, stand-in modules are put in sys.modules just for the
import and removed again. byzfl runs on float64 numpy arrays here (its torch path casts
to float32), our rules on float64 tensors.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

import numpy as np
import pytest
import torch

from rumor.aggregation import REGISTRY


class _Anything:
    def __call__(self, *args: object, **kwargs: object) -> _Anything:
        return _Anything()

    def __getattr__(self, name: str) -> _Anything:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()


def _stub(name: str) -> types.ModuleType:
    module = types.ModuleType(name)

    def getattr_(attr: str) -> _Anything:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Anything()

    module.__getattr__ = getattr_  # type: ignore[method-assign]
    return module


def _import_byzfl() -> Any:
    if importlib.util.find_spec("byzfl") is None:
        pytest.skip("byzfl 0.0.11 is a dev extra (test oracle)", allow_module_level=True)
    stubbed: list[str] = []
    for name in ("torchvision", "seaborn"):
        try:
            importlib.import_module(name)
        except Exception:
            sys.modules.pop(name, None)
            stubbed.append(name)
    for name in list(stubbed):
        sys.modules[name] = _stub(name)
        if name == "torchvision":
            for sub in ("datasets", "transforms"):
                sys.modules[f"torchvision.{sub}"] = _stub(f"torchvision.{sub}")
                setattr(sys.modules[name], sub, sys.modules[f"torchvision.{sub}"])
                stubbed.append(f"torchvision.{sub}")
    try:
        return importlib.import_module("byzfl")
    finally:
        for name in stubbed:
            sys.modules.pop(name, None)


byzfl = _import_byzfl()

SHAPES = [(7, 5, 1), (10, 33, 2), (12, 100, 3), (20, 257, 4), (9, 16, 0)]


def vectors(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=(n, 1))
    x[: n // 4] += 10.0 * rng.normal(size=(n // 4, d))  # a few outliers
    return x


def ours(name: str, x: np.ndarray, f: int, **params: Any) -> np.ndarray:
    t = torch.from_numpy(x.copy())
    return REGISTRY[name](t, f=f, **params).numpy()


@pytest.mark.parametrize(("n", "d", "f"), SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_mean_median_trimmed_mean_match_byzfl(n: int, d: int, f: int, seed: int) -> None:
    x = vectors(n, d, seed)
    np.testing.assert_allclose(ours("mean", x, f), byzfl.Average()(x.copy()), rtol=1e-12)
    np.testing.assert_allclose(ours("median", x, f), byzfl.Median()(x.copy()), rtol=1e-12)
    np.testing.assert_allclose(
        ours("median", x[1:], f), byzfl.Median()(x[1:].copy()), rtol=1e-12
    )  # the other parity of n
    np.testing.assert_allclose(
        ours("trimmed-mean", x, f), byzfl.TrMean(f=f)(x.copy()), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize(("n", "d", "f"), SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_krum_and_multi_krum_match_byzfl_with_its_neighbour_count(
    n: int, d: int, f: int, seed: int
) -> None:
    x = vectors(n, d, seed)
    np.testing.assert_allclose(
        ours("krum", x, f, neighbours="byzfl"), byzfl.Krum(f=f)(x.copy()), rtol=1e-12
    )
    np.testing.assert_allclose(
        ours("multi-krum", x, f, neighbours="byzfl"), byzfl.MultiKrum(f=f)(x.copy()), rtol=1e-10
    )


def test_paper_krum_can_differ_from_byzfl_krum() -> None:
    # n=5, f=1: the paper scores by 2 neighbours (1.0: .01 + 1 beats 1.1: .01 + 1.21),
    # byzfl by 3 (1.1: .01 + 1.21 + 3.61 beats 1.0: .01 + 1 + 4)
    x = np.array([[0.0], [1.0], [1.1], [3.0], [3.05]])
    np.testing.assert_allclose(byzfl.Krum(f=1)(x.copy()), [1.1])
    np.testing.assert_allclose(ours("krum", x, 1, neighbours="byzfl"), [1.1])
    np.testing.assert_allclose(ours("krum", x, 1), [1.0])


@pytest.mark.parametrize(("n", "d", "f"), SHAPES)
def test_geometric_median_matches_byzfl_with_its_start_and_steps(n: int, d: int, f: int) -> None:
    x = vectors(n, d, 5)
    expected = byzfl.GeometricMedian(nu=0.1, T=3)(x.copy())
    got = ours("geometric-median", x, f, start="zero", eps=0.1, max_iter=3, tol=0.0)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("n", "d", "f"), SHAPES)
def test_converged_geometric_median_beats_byzfls_three_steps(n: int, d: int, f: int) -> None:
    x = vectors(n, d, 6)
    cost = lambda z: float(np.linalg.norm(x - z, axis=1).sum())  # noqa: E731
    assert cost(ours("geometric-median", x, f)) <= cost(byzfl.GeometricMedian()(x.copy()))


@pytest.mark.parametrize(("n", "d", "f"), SHAPES)
def test_nna_matches_byzfl_monna_and_nnm_row_of_own(n: int, d: int, f: int) -> None:
    x = vectors(n, d, 2)
    own, updates = torch.from_numpy(x[0].copy()), torch.from_numpy(x[1:].copy())
    got = REGISTRY["nna"](updates, own=own, f=f).numpy()
    np.testing.assert_allclose(got, byzfl.MoNNA(f=f, idx=0)(x.copy()), rtol=1e-12)
    np.testing.assert_allclose(got, byzfl.NNM(f=f)(x.copy())[0], rtol=1e-12)


@pytest.mark.parametrize(("n", "d", "f"), SHAPES)
@pytest.mark.parametrize(("tau", "iters"), [(100.0, 1), (1.0, 3), (5.0, 2)])
def test_centered_clipping_matches_a_fresh_byzfl_instance(
    n: int, d: int, f: int, tau: float, iters: int
) -> None:
    x = vectors(n, d, 3)
    expected = byzfl.CenteredClipping(tau=tau, L=iters)(x.copy())
    got = ours("centered-clipping", x, f, start="zero", tau=tau, iters=iters)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
