"""The adversary library: each attack crafts what its papers describe."""

from __future__ import annotations

import pytest
import torch

from rumor.node.attacks import AttackContext, alie_z, craft, label_map, parse_attack
from rumor.protocols.errors import ConfigError


def ctx(**kw: object) -> AttackContext:
    base = torch.zeros(4)
    honest = torch.tensor([[1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 1.0, 0.0]])
    args: dict[str, object] = dict(base=base, trained=torch.ones(4), honest=honest, n=9, f=2,
                                   generator=torch.Generator().manual_seed(0))
    args.update(kw)
    return AttackContext(**args)  # type: ignore[arg-type]


def test_sign_flip_reverses_and_scales_the_update() -> None:
    out = craft(parse_attack("sign-flip:scale=3"), ctx())
    assert torch.equal(out, torch.full((4,), -3.0))


def test_alie_sits_z_standard_deviations_below_the_honest_mean() -> None:
    out = craft(parse_attack("alie:z=1"), ctx())
    assert torch.allclose(out, torch.tensor([1.0, 2.0, 1.0, 0.0]))
    assert alie_z(9, 2) == pytest.approx(0.4307, abs=1e-3)  # s = 3, Phi^-1(6/9)


def test_ipm_points_against_the_honest_mean() -> None:
    out = craft(parse_attack("ipm:epsilon=0.5"), ctx())
    assert torch.allclose(out, -0.5 * torch.tensor([2.0, 2.0, 2.0, 2.0]))


def test_gaussian_is_seeded_and_free_riding_sends_the_stale_model() -> None:
    a = craft(parse_attack("gaussian:sigma=2"), ctx())
    b = craft(parse_attack("gaussian:sigma=2"), ctx())
    assert torch.equal(a, b) and not torch.equal(a, torch.ones(4))
    assert torch.equal(craft(parse_attack("free-ride"), ctx()), torch.zeros(4))


def test_label_flip_maps() -> None:
    assert label_map(parse_attack("label-flip:pairs=0-1"), 10) == {0: 1, 1: 0}
    assert label_map(parse_attack("label-flip"), 10)[0] == 9


@pytest.mark.parametrize("bad", ["nope", "alie:z", "label-flip:pairs=0-99"])
def test_bad_attack_specs_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError):
        label_map(parse_attack(bad), 10)
