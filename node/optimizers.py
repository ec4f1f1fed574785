"""The local optimizer of a peer's training (``--optimizer``): plain SGD or SAM.

``sgd``: the trainer's SGD step (rumor.node.trainer). ``sam[:rho=R]`` (DFedSAM, Shi et
al. 2023): each step takes the gradient at the ascent point w + rho * g / ||g|| instead
of at w (``rho`` defaults to 0.05; 0 is plain SGD). A trainer choice of each peer, not
part of the protocol: peers with different optimizers interoperate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rumor.protocols.errors import ConfigError

OPTIMIZER_NAMES = ("sgd", "sam")
OPTIMIZER_HELP = "sgd | sam[:rho=0.05] (DFedSAM's local SAM step)"
DEFAULT_RHO = 0.05


@dataclass(frozen=True)
class OptimizerSpec:
    name: str = "sgd"
    rho: float = 0.0  # SAM's radius; 0 for sgd

    @property
    def sam_rho(self) -> float:
        return self.rho if self.name == "sam" else 0.0


def parse_optimizer(text: str) -> OptimizerSpec:
    """``sgd`` | ``sam`` | ``sam:rho=R`` (R finite, >= 0); ConfigError otherwise."""
    name, _, rest = text.strip().partition(":")
    if name == "sgd" and not rest:
        return OptimizerSpec()
    if name != "sam":
        raise ConfigError(f"unknown optimizer {text!r}; expected {OPTIMIZER_HELP}")
    rho = DEFAULT_RHO
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if key.strip() != "rho" or not eq:
            raise ConfigError(f"optimizer sam takes rho=R, got {item!r}")
        try:
            rho = float(value)
        except ValueError:
            raise ConfigError(f"optimizer sam: rho must be a number, got {value!r}") from None
        if not math.isfinite(rho) or rho < 0:
            raise ConfigError(f"optimizer sam: rho must be >= 0, got {value}")
    return OptimizerSpec("sam", rho)
