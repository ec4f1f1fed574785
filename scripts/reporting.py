"""What the run commands share: the round progress bar, the run files, plots, consoles.

``write_run`` writes the files every simulated run leaves behind (metrics.csv,
summary.json, events.jsonl, layer_variance.csv, accuracy.png, layer_variance.png);
``round_progress`` is the rich bar with one text column of task fields and an ETA (once
a round is done); ``plot_accuracy`` / ``plot_layer_variance`` draw a run's curves;
``pyplot`` imports matplotlib on the headless Agg backend, lazily, so commands that do
not plot do not pay for it; ``console`` is a rich Console that does not wrap lines
when its output is a pipe or a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rumor.node.results import (
    LayerVariance,
    RoundMetrics,
    summary,
    write_json,
    write_layer_variance_csv,
    write_metrics_csv,
)
from rumor.node.simulation import Simulation
from rumor.scripts.tables import PIPE_WIDTH, console

__all__ = ["PIPE_WIDTH", "console", "plot_accuracy", "plot_layer_variance", "pyplot",
           "round_progress", "run_title", "write_run"]


def round_progress(console: Console, fields: str, *, label: str = "{task.description}",
                   disable: bool = False) -> Progress:
    """A progress bar over rounds; ``fields`` formats the task's fields, for example
    ``"acc {task.fields[acc]:.3f}"``."""
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(fields),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    console=console, disable=disable)


def write_run(out: Path, sim: Simulation, rows: list[RoundMetrics], *, title: str = "",
              accuracy_plot: bool = True, **extra: Any) -> dict[str, Any]:
    """Write OUT/{metrics.csv, summary.json, events.jsonl, layer_variance.csv} of one run
    and, with at least one row, layer_variance.png and (``accuracy_plot``) accuracy.png;
    returns the summary.

    The summary holds the final figures, the full config, the reject counts, the
    attack success rate (None without an attack) and the Byzantine peers, plus ``extra``
    (an interrupted run passes ``interrupted=True``).
    """
    out.mkdir(parents=True, exist_ok=True)
    write_metrics_csv(out / "metrics.csv", rows)
    done = {0} | {m.round for m in rows}
    variances = [v for v in sim.layer_variances if v.round in done]
    write_layer_variance_csv(out / "layer_variance.csv", variances)
    if rows:
        name = title or run_title(sim)
        if accuracy_plot:
            plot_accuracy(rows, out / "accuracy.png", name)
        if variances:
            plot_layer_variance(variances, out / "layer_variance.png", name)
    cfg = sim.config
    s = summary(rows, sim.config_dict(), peers=cfg.peers, seed=cfg.seed,
                rejects=sim.reject_counts(), dimension=sim.d,
                attack_success=sim.attack_success(), byzantine=sorted(sim.byzantine),
                byzantine_views=sim.view_stats(), protocol_events=sim.protocol_events(),
                final_all_peers=sim.final_evaluation(), **sim.completion(),
                **sim.comm_report(), **extra)
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


def run_title(sim: Simulation) -> str:
    c = sim.config
    return (f"{c.peers} peers, {c.aggregator}, {c.model} on {c.dataset}, "
            f"{c.topology if not sim.fedavg else 'star (FedAvg)'}")


def plot_accuracy(rows: list[RoundMetrics], path: Path, title: str) -> None:
    """accuracy.png: mean test accuracy per round with the min-max band over peers, and
    the consensus distance on a second (log) axis."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    x = [m.round for m in rows]
    ax.plot(x, [m.acc_mean for m in rows], color="C0", label="mean accuracy")
    ax.fill_between(x, [m.acc_min for m in rows], [m.acc_max for m in rows], color="C0",
                    alpha=0.2, label="min-max over peers")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    cd = [m.consensus_distance for m in rows]
    if any(v > 0 for v in cd):
        ax2 = ax.twinx()
        ax2.plot(x, cd, color="C1", ls="--", label="consensus distance")
        ax2.set_yscale("log")
        ax2.set_ylabel("consensus distance (log)")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_layer_variance(rows: list[LayerVariance], path: Path, title: str) -> None:
    """layer_variance.png: per weight tensor, the variance of a model's own weights
    (solid) and across peers (dashed) per round, log scale: variance collapse is the
    solid lines falling by orders of magnitude."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    layers = list(dict.fromkeys(r.layer for r in rows if r.is_weight)) or \
        list(dict.fromkeys(r.layer for r in rows))
    for k, name in enumerate(layers):
        mine = [r for r in rows if r.layer == name]
        x = [r.round for r in mine]
        ax.plot(x, [max(r.weight_variance, 1e-30) for r in mine], color=f"C{k % 10}",
                label=f"{name}: within model")
        ax.plot(x, [max(r.peer_variance, 1e-30) for r in mine], color=f"C{k % 10}",
                ls="--", label=f"{name}: across peers")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("weight variance (log)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", ncol=2 if len(layers) > 3 else 1)
    ax.set_title(f"per-layer variance: {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
