"""Per-round metrics and the files every run writes: metrics.csv and summary.json.

metrics.csv columns (one row per completed round, in order)::

    round, time, acc_mean, acc_min, acc_max, acc_std, consensus_distance,
    messages, bytes_sent, rejects, timeouts, peers_alive

acc_* are test accuracies of the peers' models right after their merge of that
round; consensus_distance = sqrt(mean_i ||x_i - x̄||²) over the same models;
messages / bytes_sent count what was sent during that round; rejects and timeouts
are cumulative counts up to the end of the round.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RoundMetrics:
    round: int
    time: float
    acc_mean: float
    acc_min: float
    acc_max: float
    acc_std: float
    consensus_distance: float
    messages: int
    bytes_sent: int
    rejects: int
    timeouts: int
    peers_alive: int


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RoundMetrics))


def _fmt(v: Any) -> str:
    return f"{v:.6f}" if isinstance(v, float) else str(v)


def write_metrics_csv(path: Path, rows: Iterable[RoundMetrics]) -> None:
    """Write rows atomically (temp file + rename) with fixed float formatting."""
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([_fmt(getattr(r, c)) for c in COLUMNS])
    os.replace(tmp, path)


def read_metrics_csv(path: Path) -> list[dict[str, float]]:
    with path.open() as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically, keys sorted, so that identical runs give identical files."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def summary(rows: list[RoundMetrics], config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """summary.json content: final figures + the full config that produced them."""
    last = rows[-1] if rows else None
    return {
        "final_acc_mean": last.acc_mean if last else None,
        "final_acc_min": last.acc_min if last else None,
        "final_acc_max": last.acc_max if last else None,
        "final_consensus_distance": last.consensus_distance if last else None,
        "best_acc_mean": max((r.acc_mean for r in rows), default=None),
        "rounds": len(rows),
        "bytes_sent": sum(r.bytes_sent for r in rows),
        "config": config,
        "rounds_to": {
            str(t): next((r.round for r in rows if r.acc_mean >= t), None)
            for t in (0.8, 0.85, 0.9)
        },
        **extra,
    }


def as_dict(m: RoundMetrics) -> dict[str, Any]:
    return asdict(m)


def cumulative_mb(rows: list[RoundMetrics]) -> list[float]:
    """Bytes sent up to and including each round, in MB (10**6 bytes)."""
    out, total = [], 0
    for r in rows:
        total += r.bytes_sent
        out.append(total / 1e6)
    return out


def bytes_to_accuracy(rows: list[RoundMetrics], target: float) -> int | None:
    """Cumulative bytes sent when the mean accuracy first reached ``target`` (None:
    never)."""
    total = 0
    for r in rows:
        total += r.bytes_sent
        if r.acc_mean >= target:
            return total
    return None
