"""Prometheus metrics of one real peer, through prometheus_client, in a registry of its own.

Several peers share a process in ``rumor launch`` (K per worker), so every NodeRuntime
owns a ``CollectorRegistry`` (never the process-global one) and ``/metrics`` serves
``generate_latest(registry)``. Every sample carries the label ``peer`` (its PeerID).

Instrumented where it happens (the runtime calls ``observe_*`` / ``count_*``):

===================================  =========  ==========================================
rumor_round_duration_seconds         histogram  one round: previous merge -> this merge
rumor_merge_seconds                  histogram  one Merge command (rule + defenses)
rumor_train_seconds                  histogram  one local training step
rumor_messages_sent_total            counter    messages the transport accepted
rumor_bytes_sent_total               counter    their bytes
rumor_messages_received_total        counter    messages delivered by the transport
rumor_bytes_received_total           counter    their bytes
rumor_send_failures_total            counter    sends that failed (a lost neighbour)
===================================  =========  ==========================================

Read from the peer's state at each scrape (``StateCollector``; the counts live in the
Peer and its validator, so they are never counted twice):

===================================  =========  ==========================================
rumor_round                          gauge      current round
rumor_accuracy                       gauge      test accuracy after the last merge (NaN
                                                before the first)
rumor_neighbours                     gauge      current number of neighbours
rumor_rejects_total{reason}          counter    messages rejected, by reason (every
                                                validation reason, 0 if never seen, plus
                                                ``frame_*`` rejects of the transport)
rumor_accepted_total                 counter    messages that passed validation
rumor_round_timeouts_total           counter    rounds merged on timeout
===================================  =========  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rumor.protocols.validation import REJECT_REASONS

__all__ = ["CONTENT_TYPE", "NodeMetrics", "StateCollector"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# seconds; rounds on loopback take ~0.1-30 s, merges ~1 ms-5 s
ROUND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
MERGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                 2.5, 5.0)

StatusFn = Callable[[], Mapping[str, Any]]


class StateCollector(Collector):
    """Gauges and counters read from ``status()`` (a NodeRuntime.status() dict) at
    each scrape."""

    def __init__(self, peer_id: str, status: StatusFn) -> None:
        self.peer_id = peer_id
        self.status = status

    def collect(self) -> Iterator[Metric]:
        s = self.status()
        pid = [self.peer_id]
        acc = s.get("last_accuracy")

        def gauge(name: str, doc: str, value: float) -> Metric:
            g = GaugeMetricFamily(name, doc, labels=["peer"])
            g.add_metric(pid, value)
            return g

        def counter(name: str, doc: str, value: float) -> Metric:
            c = CounterMetricFamily(name, doc, labels=["peer"])
            c.add_metric(pid, value)
            return c

        yield gauge("rumor_round", "Current round of this peer.", float(s.get("round", 0)))
        yield gauge("rumor_accuracy", "Test accuracy after the last merge.",
                    float("nan") if acc is None else float(acc))
        yield gauge("rumor_neighbours", "Current number of neighbours.",
                    float(len(s.get("neighbours", ()))))
        rejects: Mapping[str, int] = s.get("rejects", {})
        fam = CounterMetricFamily("rumor_rejects", "Messages rejected, by reason.",
                                  labels=["peer", "reason"])
        for reason in sorted(set(REJECT_REASONS) | set(rejects)):
            fam.add_metric([self.peer_id, reason], float(rejects.get(reason, 0)))
        yield fam
        yield counter("rumor_accepted", "Messages that passed validation.",
                      float(s.get("accepted", 0)))
        yield counter("rumor_round_timeouts", "Rounds merged on timeout.",
                      float(s.get("timeouts", 0)))


class NodeMetrics:
    """One peer's registry: histograms and I/O counters it updates, plus its state."""

    def __init__(self, peer_id: str, status: StatusFn | None = None) -> None:
        self.peer_id = peer_id
        self.registry = CollectorRegistry(auto_describe=True)
        reg, lab = self.registry, ("peer",)

        def hist(name: str, doc: str, buckets: tuple[float, ...]) -> Any:
            return Histogram(name, doc, lab, registry=reg, buckets=buckets).labels(peer_id)

        def count(name: str, doc: str) -> Any:
            return Counter(name, doc, lab, registry=reg).labels(peer_id)

        self.round_duration = hist("rumor_round_duration_seconds",
                                   "Duration of a round (previous merge to this merge).",
                                   ROUND_BUCKETS)
        self.merge_time = hist("rumor_merge_seconds",
                               "Time of one merge (aggregation rule and defenses).",
                               MERGE_BUCKETS)
        self.train_time = hist("rumor_train_seconds", "Time of one local training step.",
                               ROUND_BUCKETS)
        self.messages_sent = count("rumor_messages_sent", "Messages sent.")
        self.bytes_sent = count("rumor_bytes_sent", "Bytes sent.")
        self.messages_received = count("rumor_messages_received",
                                       "Messages received from the transport.")
        self.bytes_received = count("rumor_bytes_received",
                                    "Bytes received from the transport.")
        self.send_failures = count("rumor_send_failures", "Sends that failed.")
        if status is not None:
            reg.register(StateCollector(peer_id, status))

    def count_sent(self, nbytes: int) -> None:
        self.messages_sent.inc()
        self.bytes_sent.inc(nbytes)

    def count_received(self, nbytes: int) -> None:
        self.messages_received.inc()
        self.bytes_received.inc(nbytes)

    def text(self) -> bytes:
        """The /metrics body (Prometheus text exposition format 0.0.4)."""
        return bytes(generate_latest(self.registry))
