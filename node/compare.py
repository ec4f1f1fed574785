"""The experiment behind ``rumor compare``: one simulation under several aggregators
(and compressors).

``compare_configs`` builds (and validates, before any compute) one config per
(peers, aggregator, compressor); ``run_compare`` runs them in that order and yields each
finished run, so the caller writes its files and lets the simulation go before the
next one starts. Nothing here prints: ``on_start(cfg)`` may return a per-round
callback (a progress bar)::

    for run in run_compare(compare_configs(base, [50], ["mean", "variance-corrected"])):
        write_run(out / run.name, run.sim, run.rows)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rumor.node.merging import FEDAVG
from rumor.node.results import RoundMetrics
from rumor.node.simulation import RoundCallback, Simulation, SimulationConfig

__all__ = ["CompareRun", "compare_configs", "run_compare", "run_name"]


@dataclass(frozen=True)
class CompareRun:
    """One finished run of the comparison."""

    config: SimulationConfig
    sim: Simulation
    rows: list[RoundMetrics]
    wall: float
    completion: dict[str, Any]

    @property
    def peers(self) -> int:
        return self.config.peers

    @property
    def aggregator(self) -> str:
        return self.config.aggregator

    @property
    def compressor(self) -> str:
        """The run's ``--compress`` spec, ``none`` without one."""
        return self.config.compress or "none"

    @property
    def name(self) -> str:
        """``<peers>p-<aggregator>[-<compress>]``: the run's directory name."""
        return run_name(self.config)

    @property
    def complete(self) -> bool:
        return bool(self.completion["complete"])


def run_name(cfg: SimulationConfig) -> str:
    """``<peers>p-<aggregator>``, plus ``-<compress>`` (``:,=`` as ``_``) when compressed."""
    name = f"{cfg.peers}p-{cfg.aggregator}"
    if cfg.compress:
        name += "-" + "".join("_" if c in ":,=" else c for c in cfg.compress)
    return name


def compare_configs(base: SimulationConfig, peers: Sequence[int],
                    aggregators: Sequence[str],
                    compressors: Sequence[str | None] = (None,)) -> list[SimulationConfig]:
    """``base`` for every peer count x aggregator x compressor (peer count outermost;
    ``None`` or ``"none"``: uncompressed); ConfigError on the first invalid one. FedAvg
    runs drop the round plan (schedule, gossip steps, final merge: a server has none)
    and stay the plain baseline."""
    plain = dataclasses.replace(base, schedule="constant", gossip_steps=1, final_merge=0)
    cfgs = [dataclasses.replace(plain if a == FEDAVG else base, peers=p, aggregator=a,
                                compress=None if c in (None, "none") else c)
            for p in peers for a in aggregators for c in compressors]
    for cfg in cfgs:  # fail fast on bad names before hours of compute
        cfg.validate()
    return cfgs


def run_compare(
    configs: Sequence[SimulationConfig],
    on_start: Callable[[SimulationConfig], RoundCallback | None] | None = None,
) -> Iterator[CompareRun]:
    """Run every config in order; yields each run as it finishes."""
    for cfg in configs:
        on_round = on_start(cfg) if on_start is not None else None
        t0 = time.perf_counter()
        sim = Simulation(cfg)
        rows = sim.run(on_round)
        yield CompareRun(cfg, sim, rows, time.perf_counter() - t0, sim.completion())
