"""The experiments behind ``rumor comm-study``: schedules, the final merge and DFedSAM.

Three sections, every run a simulation of the same swarm (digits, MLP, 50 peers by
default) from one shared initial model (``init = "same"``, so FedAvg and gossip start
alike):

- ``final-merge``: gossip (plain mean, 8-regular) with and without ``final_merge``
  rounds of gossip averaging, against FedAvg on the same data and training rounds;
  IID and Dirichlet 0.1.
- ``schedule``: at equal total communications (every:2, late:0.5:2, late:0.25:2 all
  spend R/2 communicating rounds; constant spends R as the reference), each with the
  final merge; Dirichlet 0.1.
- ``dfedsam``: SGD vs SAM (rho 0.05) vs SAM with Q gossip steps (DFedSAM-MGS) on
  Dirichlet 0.1 over a ring and a 4-regular graph.

``study_runs`` lists the runs (validated before any compute), ``run_study`` runs them
one after the other and yields each finished one; nothing here prints.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rumor.node.results import RoundMetrics, final_merge_report, read_metrics_csv
from rumor.node.simulation import RoundCallback, Simulation, SimulationConfig

SECTIONS = ("final-merge", "schedule", "dfedsam")


@dataclass(frozen=True)
class StudyRun:
    section: str
    label: str
    config: SimulationConfig

    @property
    def name(self) -> str:
        """The run's directory name."""
        safe = self.label.replace(" ", "_").replace(":", "-").replace("/", "-")
        return f"{self.section}/{safe}-s{self.config.seed}"


@dataclass(frozen=True)
class StudyResult:
    """A finished run: its rows, and the simulation when it ran in this process (None
    when its files were reused, ``load_result``)."""

    run: StudyRun
    rows: list[RoundMetrics]
    wall: float
    complete: bool
    sim: Simulation | None = None

    def figures(self) -> dict[str, Any]:
        """What the tables show: final accuracy and consensus distance; before/after
        the final merge; communicating rounds and MB sent."""
        cfg = self.run.config
        last = self.rows[-1] if self.rows else None
        fm = final_merge_report(self.rows, cfg.final_merge)
        plan = cfg.protocol().plan() if cfg.aggregator != "fedavg" else None
        return {
            "acc": last.acc_mean if last else None,
            "acc_min": last.acc_min if last else None,
            "consensus": last.consensus_distance if last else None,
            "acc_before_merge": fm["acc_before"] if fm else None,
            "consensus_before_merge": fm["consensus_before"] if fm else None,
            "mb": sum(r.bytes_sent for r in self.rows) / 1e6,
            "communications": plan.communications if plan else cfg.rounds,
            "complete": self.complete,
        }

    def merge_curve(self, marks: Sequence[int] = (0, 1, 2, 5, 10, 20, 30)
                    ) -> list[tuple[int, float, float, float]]:
        """(t, acc, consensus distance, MB of the final merge so far) after t final-merge
        rounds, for the marks t <= T (t = 0: the end of training). The first t rounds
        of a T-round merge are what a t-round merge does, so one run gives them all."""
        t_max = self.run.config.final_merge
        end = len(self.rows) - t_max
        if t_max <= 0 or end < 1:
            return []
        out = []
        for t in (m for m in marks if m <= t_max):
            row = self.rows[end - 1 + t]
            mb = sum(r.bytes_sent for r in self.rows[end:end + t]) / 1e6
            out.append((t, row.acc_mean, row.consensus_distance, mb))
        return out


def load_result(run: StudyRun, folder: Path) -> StudyResult | None:
    """The run's result from its files (metrics.csv + summary.json in ``folder``) when
    they are there, complete and of the same config; else None."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
        rows = [_row(r) for r in read_metrics_csv(folder / "metrics.csv")]
    except (OSError, ValueError, TypeError):
        return None
    same = all(summary.get("config", {}).get(k) == v
               for k, v in dataclasses.asdict(run.config).items()
               if k not in ("timeline", "data_dir"))
    if not same or not summary.get("complete"):
        return None
    return StudyResult(run, rows, float(summary.get("wall_time", 0.0)), True)


_INTS = frozenset({"round", "messages", "bytes_sent", "rejects", "timeouts", "peers_alive"})


def _row(values: dict[str, float]) -> RoundMetrics:
    kw: dict[str, Any] = {k: int(v) if k in _INTS else v for k, v in values.items()}
    return RoundMetrics(**kw)


def study_runs(base: SimulationConfig, *, sections: Sequence[str] = SECTIONS,
               seeds: Sequence[int] = (1,), final_merge: int = 30,
               gossip_steps: int = 4, rho: float = 0.05) -> list[StudyRun]:
    """Every run of the chosen sections for every seed (ConfigError on a bad one)."""
    base = dataclasses.replace(base, init="same")
    runs: list[StudyRun] = []
    for seed in seeds:
        b = dataclasses.replace(base, seed=seed)
        if "final-merge" in sections:
            for split in ("iid", "dirichlet:0.1"):
                g = dataclasses.replace(b, split=split, aggregator="mean",
                                        topology="regular:8")
                runs += [
                    StudyRun("final-merge", f"{split} gossip", g),
                    StudyRun("final-merge", f"{split} gossip + final merge",
                             dataclasses.replace(g, final_merge=final_merge)),
                    StudyRun("final-merge", f"{split} fedavg",
                             dataclasses.replace(g, aggregator="fedavg")),
                ]
        if "schedule" in sections:
            g = dataclasses.replace(b, split="dirichlet:0.1", aggregator="mean",
                                    topology="regular:8", final_merge=final_merge)
            for spec in ("constant", "every:2", "late:0.5:2", "late:0.25:2"):
                runs.append(StudyRun("schedule", spec, dataclasses.replace(g, schedule=spec)))
        if "dfedsam" in sections:
            for topo in ("ring", "regular:4"):
                g = dataclasses.replace(b, split="dirichlet:0.1", aggregator="mean",
                                        topology=topo)
                runs += [
                    StudyRun("dfedsam", f"{topo} sgd", g),
                    StudyRun("dfedsam", f"{topo} sam", dataclasses.replace(
                        g, optimizer=f"sam:rho={rho:g}")),
                    StudyRun("dfedsam", f"{topo} sam Q={gossip_steps}", dataclasses.replace(
                        g, optimizer=f"sam:rho={rho:g}", gossip_steps=gossip_steps)),
                    StudyRun("dfedsam", f"{topo} sgd Q={gossip_steps}", dataclasses.replace(
                        g, gossip_steps=gossip_steps)),
                ]
    for r in runs:
        r.config.validate()
    return runs


def run_study(runs: Sequence[StudyRun],
              on_start: Callable[[StudyRun], RoundCallback | None] | None = None,
              reuse: Path | None = None) -> Iterator[StudyResult]:
    """Run every study run in order; yields each as it finishes. ``reuse``: a folder
    of earlier results; a run whose files there match (``load_result``) is not run
    again."""
    for run in runs:
        if reuse is not None:
            done = load_result(run, reuse / run.name)
            if done is not None:
                yield done
                continue
        on_round = on_start(run) if on_start is not None else None
        t0 = time.perf_counter()
        sim = Simulation(run.config)
        rows = sim.run(on_round)
        yield StudyResult(run, rows, time.perf_counter() - t0,
                          bool(sim.completion()["complete"]), sim)
