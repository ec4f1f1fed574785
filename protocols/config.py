"""The one protocol configuration: every setting that decides how a peer behaves.

``ProtocolConfig`` holds one set of defaults used by the simulator and the real mesh
alike. Where a runtime must differ, the difference is named here, with its reason, in
``RUNTIME_DIFFERENCES`` and applied by ``for_runtime``; results (summary.json) record
``differences(runtime)`` so a reader sees exactly what was not the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from rumor.protocols.schedule import RoundPlan

#: The default Polyak momentum of MoNNA (Farhadkhani et al. 2023).
MONNA_BETA = 0.99


@dataclass(frozen=True)
class ProtocolConfig:
    """How a peer behaves (see rumor.protocols.peer for the state machine)."""

    swarm: str = "rumor"
    aggregator: str = "variance-corrected"
    f: int = 0  # Byzantine peers a robust rule assumes per view
    rule_params: dict[str, Any] = field(default_factory=dict)
    rounds: int | None = None
    round_timeout: float = 10.0  # seconds (virtual in the simulator)
    min_updates: int | None = None  # None: every current neighbour
    fanout: int | None = None  # None: push to every neighbour
    max_lag: int = 5  # accept updates up to this many rounds old (peers run async)
    max_ahead: int = 1000  # reject rounds further ahead than this (not STATE)
    flood_rate: float = 50.0  # messages per second per sender (updates + history)
    flood_burst: float = 100.0
    sign: bool = True
    adopt_senders: bool = True  # take valid senders as neighbours (bounded)
    max_adopted: int = 8
    max_neighbours: int | None = 64  # peers taken from discovery; None: no cap
    evict_after: int | None = 20  # hostile rejects before a neighbour is dropped
    wait_when_alone: bool = True  # a peer without neighbours waits for the deadline
    catch_up: bool = True  # PULL/STATE catch-up of peers that fell behind
    catch_up_gap: int = 2  # 2, not 3: a peer 2 rounds behind halved its mesh's round rate
    polyak_beta: float | None = None  # None: MONNA_BETA for "monna", else plain SGD
    max_abs: float = 1e6  # a merge result with |x| above this is not adopted
    attack: str | None = None  # this peer is Byzantine with this attack spec
    # the round plan (rumor.protocols.schedule): which training rounds communicate, how
    # many exchange+merge steps each has, how many averaging rounds end the run
    schedule: str = "constant"
    gossip_steps: int = 1
    final_merge: int = 0

    def plan(self) -> RoundPlan:
        """The round plan of ``rounds`` training rounds (ConfigError when invalid)."""
        return RoundPlan(self.schedule, self.rounds, self.gossip_steps, self.final_merge)

    def protocol_rounds(self) -> int | None:
        """Protocol rounds in all (metrics rows): ``rounds`` unless a plan adds some."""
        return self.plan().total
    compress: str | None = None  # compressed gossip spec ("topk:ratio=0.01,feedback=ef")

    def effective_polyak_beta(self) -> float | None:
        if self.polyak_beta is not None:
            return self.polyak_beta
        return MONNA_BETA if self.aggregator == "monna" else None


#: runtime -> {field: (value, why)}; everything not listed is the same everywhere.
RUNTIME_DIFFERENCES: dict[str, dict[str, tuple[Any, str]]] = {
    "sim": {
        "sign": (False, "signatures cost time and are tested on their own; always on "
                        "on the mesh"),
        "adopt_senders": (False, "the scenario's topology is the whole truth"),
        "max_neighbours": (None, "the scenario's topology is the whole truth (hubs of "
                                 "large graphs have more than 64 neighbours)"),
        "wait_when_alone": (False, "in a fixed topology nobody will appear: train alone"),
    },
    "real": {
        "min_updates": (2, "a discovered mesh has more neighbours than a round can wait "
                           "for; merge once 2 arrived (or at the round timeout)"),
        "fanout": (8, "push to 8 random neighbours of a large discovered view"),
    },
    "real-topology": {  # a scenario imposed on real peers: the scenario's own values, and
        "max_neighbours": (None, "the scenario's topology is the whole truth"),
        "wait_when_alone": (False, "as in the simulator: in the scenario's fixed graph "
                                   "nobody else will appear"),
    },
}


def for_runtime(config: ProtocolConfig, runtime: str,
                explicit: frozenset[str] = frozenset()) -> ProtocolConfig:
    """``config`` with the runtime's named differences applied, except for the fields
    in ``explicit`` (the user set them)."""
    diffs = RUNTIME_DIFFERENCES[runtime]
    return replace(config, **{k: v for k, (v, _) in diffs.items() if k not in explicit})


def differences(runtime: str) -> dict[str, dict[str, Any]]:
    """What summary.json records: field -> {value, default, why}."""
    defaults = {f.name: f.default for f in fields(ProtocolConfig)}
    return {k: {"value": v, "default": defaults.get(k), "why": why}
            for k, (v, why) in RUNTIME_DIFFERENCES[runtime].items()}
