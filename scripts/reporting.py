"""What the simulation commands share: the round progress bar, the run files, plots.

``write_run`` writes the files every simulated run leaves behind (metrics.csv,
summary.json, events.jsonl); ``round_progress`` is the rich bar with one text column of
task fields; ``pyplot`` imports matplotlib on the headless Agg backend, lazily, so
commands that do not plot do not pay for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rumor.node.results import RoundMetrics, summary, write_json, write_metrics_csv
from rumor.node.simulation import Simulation


def round_progress(console: Console, fields: str, *, label: str = "{task.description}",
                   disable: bool = False) -> Progress:
    """A progress bar over rounds; ``fields`` formats the task's fields, for example
    ``"acc {task.fields[acc]:.3f}"``."""
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(fields),
                    TimeElapsedColumn(), console=console, disable=disable)


def write_run(out: Path, sim: Simulation, rows: list[RoundMetrics],
              **extra: Any) -> dict[str, Any]:
    """Write OUT/{metrics.csv, summary.json, events.jsonl} of one run; returns the summary.

    The summary holds the final figures, the full config, the reject counts, the
    attack success rate (None without an attack) and the Byzantine peers, plus ``extra``.
    """
    out.mkdir(parents=True, exist_ok=True)
    write_metrics_csv(out / "metrics.csv", rows)
    cfg = sim.config
    s = summary(rows, sim.config_dict(), peers=cfg.peers, seed=cfg.seed,
                rejects=sim.reject_counts(), dimension=sim.d,
                attack_success=sim.attack_success(), byzantine=sorted(sim.byzantine),
                byzantine_views=sim.view_stats(), protocol_events=sim.protocol_events(),
                **sim.completion(), **sim.comm_report(), **extra)
    write_json(out / "summary.json", s)
    (out / "events.jsonl").write_text(
        "".join(json.dumps(e, default=str) + "\n" for e in sim.events))
    return s


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
