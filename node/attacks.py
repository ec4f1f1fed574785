"""The adversary library: named, parameterised behaviours of Byzantine peers.

An attack changes what a Byzantine peer sends (model poisoning) or what it trains
on (data poisoning). Spec strings: ``NAME[:param=value,...]``, e.g. ``alie``,
``sign-flip:scale=4``, ``gaussian:sigma=1``, ``label-flip:pairs=0-1``. Model-poisoning
attacks are omniscient, as in the papers: they see the honest peers' trained models of
the same round (``AttackContext.honest``).

| name        | what the attacker does                                                  |
|-------------|-------------------------------------------------------------------------|
| sign-flip   | base - scale * (trained - base)   (the update reversed and scaled)      |
| gaussian    | trained + N(0, sigma^2) per coordinate                                  |
| alie        | mu - z * sigma (coordinate-wise over honest), z = ``z=`` or from n, f:  |
|             | s = floor(n/2 + 1) - f, z = Phi^-1((n - s) / n)  (Baruch et al.)       |
| ipm         | -epsilon * mean(honest)  on the update, i.e. base - eps * mean(honest - base) |
| free-ride   | base: the model it had before training (stale, no work)                 |
| label-flip  | honest training on flipped labels (pairs=a-b;c-d, or all: y -> C-1-y)   |
| backdoor    | honest training where a fraction (``fraction=0.5``) of its samples carry  |
|             | a trigger (bottom-right ``size`` x ``size`` patch set to the max pixel)   |
|             | and the label ``target=0``                                              |
| sybil       | k Sybil identities echo one poisoned vector + N(0, noise^2)            |

``base`` is the attacker's model before local training; updates are vectors relative to
it. All randomness comes from the generator passed in (seeded by the simulator).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist

import torch
from torch import Tensor

from rumor.protocols.errors import ConfigError


@dataclass(frozen=True)
class AttackSpec:
    name: str
    params: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: float) -> float:
        try:
            return float(self.params.get(key, default))
        except ValueError:
            raise ConfigError(f"attack {self.name}: {key} must be a number") from None


@dataclass(frozen=True)
class AttackContext:
    """What a Byzantine peer knows when it crafts its vector for one round."""

    base: Tensor  # its model before local training
    trained: Tensor  # its model after honest local training
    honest: Tensor  # (h, d) honest peers' trained models this round (omniscient)
    n: int  # peers in a typical view (neighbours + 1)
    f: int  # Byzantine peers assumed per view
    generator: torch.Generator


Crafter = Callable[[AttackSpec, AttackContext], Tensor]
DATA_ATTACKS = ("label-flip", "backdoor")


def alie_z(n: int, f: int) -> float:
    """z of "A Little Is Enough": s = floor(n/2 + 1) - f, z = Phi^-1((n - s) / n)."""
    s = math.floor(n / 2 + 1) - f
    p = (n - s) / n
    p = min(max(p, 1e-6), 1 - 1e-6)
    return NormalDist().inv_cdf(p)


def _sign_flip(spec: AttackSpec, c: AttackContext) -> Tensor:
    return c.base - spec.get("scale", 1.0) * (c.trained - c.base)


def _gaussian(spec: AttackSpec, c: AttackContext) -> Tensor:
    noise = torch.randn(c.trained.shape, generator=c.generator, dtype=c.trained.dtype)
    return c.trained + spec.get("sigma", 1.0) * noise


def _alie(spec: AttackSpec, c: AttackContext) -> Tensor:
    z = spec.get("z", float("nan"))
    if math.isnan(z):
        z = alie_z(c.n, c.f)
    mu = c.honest.mean(0)
    sigma = c.honest.std(0, unbiased=False) if c.honest.shape[0] > 1 else torch.zeros_like(mu)
    return mu - z * sigma


def _ipm(spec: AttackSpec, c: AttackContext) -> Tensor:
    return c.base - spec.get("epsilon", 0.5) * (c.honest.mean(0) - c.base)


def _free_ride(spec: AttackSpec, c: AttackContext) -> Tensor:
    return c.base.clone()


MODEL_ATTACKS: dict[str, Crafter] = {
    "sign-flip": _sign_flip,
    "gaussian": _gaussian,
    "alie": _alie,
    "ipm": _ipm,
    "free-ride": _free_ride,
}
ATTACK_NAMES = (*MODEL_ATTACKS, *DATA_ATTACKS)
# The parameters each attack reads (AttackSpec.get / .params); any other key is a typo.
ATTACK_PARAMS: dict[str, tuple[str, ...]] = {
    "sign-flip": ("scale",),
    "gaussian": ("sigma",),
    "alie": ("z",),
    "ipm": ("epsilon",),
    "free-ride": (),
    "label-flip": ("pairs",),
    "backdoor": ("fraction", "target", "size"),
}
_TEXT_PARAMS = {"pairs"}  # parsed later (label_map); every other parameter is a number


def parse_attack(text: str) -> AttackSpec:
    """``NAME[:k=v,...]`` -> AttackSpec; ConfigError naming the choices otherwise.

    Unknown parameters of an attack, repeated ones and numbers that are not finite are
    rejected here, before a run starts, with the attack's known parameters listed.
    """
    name, _, rest = text.strip().partition(":")
    if name not in ATTACK_NAMES:
        raise ConfigError(f"unknown attack {name!r}; choose one of: {', '.join(ATTACK_NAMES)}")
    known = ATTACK_PARAMS[name]
    params: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        k, sep, v = item.partition("=")
        k, v = k.strip(), v.strip()
        if not sep or not k:
            raise ConfigError(f"attack parameter {item!r} must be key=value")
        if k not in known:
            raise ConfigError(
                f"attack {name} has no parameter {k!r}; known: {', '.join(known) or 'none'}"
            )
        if k in params:
            raise ConfigError(f"attack {name}: parameter {k!r} given twice")
        if k not in _TEXT_PARAMS:
            try:
                number = float(v)
            except ValueError:
                raise ConfigError(f"attack {name}: {k} must be a number, got {v!r}") from None
            if not math.isfinite(number):
                raise ConfigError(f"attack {name}: {k} must be a finite number, got {v!r}")
        params[k] = v
    return AttackSpec(name, params)


def craft(spec: AttackSpec, ctx: AttackContext) -> Tensor:
    """The vector a Byzantine peer sends this round (model-poisoning attacks)."""
    fn = MODEL_ATTACKS.get(spec.name)
    if fn is None:  # data attacks send their honestly trained (poisoned-data) model
        return ctx.trained
    out = fn(spec, ctx)
    return out.to(ctx.trained.dtype)


def label_map(spec: AttackSpec, num_classes: int) -> dict[int, int]:
    """Label flipping: ``pairs=0-1;2-3`` swaps each pair; default all: y -> C-1-y."""
    pairs = spec.params.get("pairs")
    if pairs is None:
        return {y: num_classes - 1 - y for y in range(num_classes)}
    out: dict[int, int] = {}
    for pair in pairs.replace(";", " ").split():
        a, sep, b = pair.partition("-")
        try:
            x, y = int(a), int(b)
        except ValueError:
            raise ConfigError(f"label-flip pairs look like 0-1;2-3, got {pair!r}") from None
        if not sep or not (0 <= x < num_classes and 0 <= y < num_classes):
            raise ConfigError(f"label-flip pair {pair!r} out of range")
        out[x], out[y] = y, x
    return out


def flip_target(spec: AttackSpec, num_classes: int) -> tuple[int, int]:
    """(source, target) classes whose confusion measures attack success."""
    m = label_map(spec, num_classes)
    src = min(m)
    return src, m[src]


def add_trigger(x: Tensor, size: int) -> Tensor:
    """A copy of images ``x`` (N, C, H, W) with the bottom-right size x size patch set to
    the maximum pixel value found in ``x`` (the backdoor trigger)."""
    out = x.clone()
    out[..., -size:, -size:] = x.max()
    return out


def trigger_size(spec: AttackSpec, height: int) -> int:
    return int(spec.get("size", max(2, height // 7)))
