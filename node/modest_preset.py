"""The ``rumor modest`` preset: MoDeST sampled rounds under churn as a SimulationConfig.

``ModestConfig`` holds the preset's knobs; ``simulation()`` turns them into the one
engine's config (``mode = "modest"``, a ``complete`` topology, a shared initial model,
FedAvg's sample-weighted mean at the aggregators, topology.crash_every as the timeline);
``run_modest`` runs it and returns one ``ModestRound`` per aggregated round.
"""

from __future__ import annotations

from dataclasses import dataclass

from rumor.node.simulation import Simulation, SimulationConfig, run_simulation
from rumor.protocols.errors import ConfigError
from rumor.protocols.modest import AGGREGATORS, SAMPLE_SIZE
from rumor.topology import RemovePeers, crash_every

__all__ = ["ModestConfig", "ModestRound", "run_modest"]


@dataclass(frozen=True)
class ModestConfig:
    """The preset's knobs (the churn test's values by default)."""

    peers: int = 100
    s: int = SAMPLE_SIZE
    a: int = AGGREGATORS
    duration: float = 1200.0
    max_rounds: int | None = None
    crash_count: int = 5
    crash_every: float = 60.0
    crash_until: float = 0.8
    dataset: str = "digits"
    model: str = "mlp"
    split: str = "iid"
    lr: float = 0.1
    batch_size: int = 8
    local_epochs: int = 1
    train_time: float = 5.0
    latency: float = 0.05
    agg_timeout: float = 10.0
    ack_timeout: float = 15.0
    round_timeout: float = 30.0
    test_subset: int | None = None
    seed: int = 1
    data_dir: str | None = None

    def validate(self) -> None:
        if self.peers < 1 or self.s < 1 or not 1 <= self.a <= self.s:
            raise ConfigError("need peers >= 1, s >= 1 and 1 <= a <= s")
        if self.duration <= 0 or self.train_time <= 0 or self.latency < 0:
            raise ConfigError("duration and train_time must be > 0, latency >= 0")
        if min(self.agg_timeout, self.ack_timeout, self.round_timeout) <= 0:
            raise ConfigError("timeouts must be > 0")
        if self.crash_count < 0 or not 0.0 <= self.crash_until <= 1.0:
            raise ConfigError("crash_count >= 0 and crash_until in [0, 1]")

    def simulation(self) -> SimulationConfig:
        """The one engine's config for this preset."""
        timeline: tuple[RemovePeers, ...] = ()
        if self.crash_count:
            timeline = tuple(crash_every(range(self.peers), self.crash_count,
                                         self.crash_every, self.crash_until, self.seed))
        return SimulationConfig(
            peers=self.peers, rounds=self.max_rounds or 1_000_000, topology="complete",
            split=self.split, aggregator="fedavg", model=self.model, dataset=self.dataset,
            seed=self.seed, lr=self.lr, batch_size=self.batch_size,
            local_epochs=self.local_epochs, init="same", train_time=self.train_time,
            latency=self.latency, test_subset=self.test_subset, data_dir=self.data_dir,
            timeline=timeline, mode="modest", modest_sample=self.s,
            modest_aggregators=self.a, modest_agg_timeout=self.agg_timeout,
            modest_ack_timeout=self.ack_timeout, modest_round_timeout=self.round_timeout,
            duration=self.duration)


@dataclass(frozen=True)
class ModestRound:
    """One aggregated round: the model's test accuracy and who took part."""

    round: int
    time: float
    acc: float
    trainers: int  # updates averaged into this model
    alive: int  # peers alive (ground truth, an observer's number) at that time
    view: int  # peers active in the aggregator's own view
    aggregator: int


def run_modest(cfg: ModestConfig) -> tuple[Simulation, list[ModestRound], float]:
    """Run the preset; (simulation, its aggregated rounds, wall seconds)."""
    sim, _, wall = run_simulation(cfg.simulation())
    return sim, [ModestRound(**r) for r in sim.modest_rounds], wall
