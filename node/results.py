"""Per-round metrics and the files every run writes: metrics.csv and summary.json.

metrics.csv columns (one row per completed round, in order)::

    round, time, acc_mean, acc_min, acc_max, acc_std, consensus_distance,
    messages, bytes_sent, rejects, timeouts, peers_alive

acc_* are test accuracies of the peers' models right after their merge of that
round; consensus_distance = sqrt(mean_i ||x_i - x̄||²) over the same models;
messages / bytes_sent count what was sent during that round; rejects and timeouts
are cumulative counts up to the end of the round.

layer_variance.csv (the Vanishing Variance diagnostic; one row per round and parameter
tensor)::

    round, layer, is_weight, weight_variance, peer_variance

for the same models x_1..x_P (rows of the (P, d) matrix) restricted to the tensor's
slice L: weight_variance = mean_i Var_{j in L}(x_ij), the spread of a model's own weights
(averaging independently initialised models shrinks it: the collapse that variance
correction undoes); peer_variance = mean_{j in L} Var_i(x_ij), how far the peers'
copies of that tensor disagree (0 at consensus). Both are population variances. It is
an observer's metric: computed by the runtime from the models it records, it changes
nothing a peer does.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from rumor.aggregation.layout import Layout


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


@dataclass(frozen=True)
class LayerVariance:
    round: int
    layer: str
    is_weight: bool
    weight_variance: float
    peer_variance: float


LAYER_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LayerVariance))


_CHUNK = 1 << 22  # elements of float64 scratch at a time (32 MB), whatever P and d


def layer_variance(round_: int, models: np.ndarray, layout: Layout) -> list[LayerVariance]:
    """One LayerVariance per tensor of ``layout`` over the rows of ``models`` (P, d);
    [] when the layout does not fit. float64 arithmetic in bounded chunks."""
    x = np.asarray(models)
    if x.ndim != 2 or not layout or x.shape[1] != layout[-1].stop or x.shape[0] < 1:
        return []
    p = x.shape[0]
    out = []
    for s in layout:
        n = s.stop - s.start
        rows_at = max(1, _CHUNK // max(1, n))
        within = np.concatenate([
            x[i:i + rows_at, s.start:s.stop].astype(np.float64).var(axis=1)
            for i in range(0, p, rows_at)])
        cols_at = max(1, _CHUNK // p)
        across = sum(float(x[:, j:min(j + cols_at, s.stop)].astype(np.float64)
                           .var(axis=0).sum()) for j in range(s.start, s.stop, cols_at))
        out.append(LayerVariance(round_, s.name, s.is_weight, float(within.mean()),
                                 across / n))
    return out


def write_layer_variance_csv(path: Path, rows: Iterable[LayerVariance]) -> None:
    """layer_variance.csv, atomically, %.6e floats (variances span many decades)."""
    _write_csv_atomically(path, LAYER_COLUMNS, (
        [r.round, r.layer, int(r.is_weight), f"{r.weight_variance:.6e}",
         f"{r.peer_variance:.6e}"] for r in rows))


def _write_csv_atomically(path: Path, header: Sequence[str],
                          rows: Iterable[Sequence[object]]) -> None:
    """header + rows to a temp file, then renamed over ``path`` (never half a file)."""
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


class MetricsAppender:
    """metrics.csv written as rounds complete (header first, one flushed line a row), so
    an interrupted run leaves every finished round on disk."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("w", newline="")
        self._w = csv.writer(self._fh, lineterminator="\n")
        self._w.writerow(COLUMNS)
        self._fh.flush()

    def add(self, r: RoundMetrics) -> None:
        self._w.writerow([_fmt(getattr(r, c)) for c in COLUMNS])
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _fmt(v: Any) -> str:
    return f"{v:.6f}" if isinstance(v, float) else str(v)


def write_metrics_csv(path: Path, rows: Iterable[RoundMetrics]) -> None:
    """Write rows atomically (temp file + rename) with fixed float formatting."""
    _write_csv_atomically(path, COLUMNS, ([_fmt(getattr(r, c)) for c in COLUMNS] for r in rows))


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


def final_merge_report(rows: list[RoundMetrics], final_rounds: int) -> dict[str, Any] | None:
    """What the final merge did (summary.json ``final_merge``): accuracy and consensus
    distance at the end of training (the row before the ``final_rounds`` averaging rows)
    and after them, with the rounds and bytes the averaging cost. None without one or
    when the run did not get that far."""
    if final_rounds <= 0 or len(rows) <= final_rounds:
        return None
    before, after = rows[-final_rounds - 1], rows[-1]
    return {
        "rounds": final_rounds,
        "method": "gossip averaging (plain mean of own + neighbours' models)",
        "acc_before": before.acc_mean, "acc_after": after.acc_mean,
        "acc_min_after": after.acc_min, "acc_max_after": after.acc_max,
        "consensus_before": before.consensus_distance,
        "consensus_after": after.consensus_distance,
        "bytes": sum(r.bytes_sent for r in rows[-final_rounds:]),
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
