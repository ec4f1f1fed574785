"""rumor.node.prometheus: one registry per node, parsed back with prometheus_client."""

from __future__ import annotations

import math
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from rumor.node.prometheus import NodeMetrics
from rumor.protocols.validation import REJECT_REASONS


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def status(**kw: Any) -> dict[str, Any]:
    base = {"round": 4, "last_accuracy": 0.75, "neighbours": ["a", "b", "c"],
            "rejects": {"bad_signature": 2, "frame_oversize": 1}, "accepted": 9,
            "timeouts": 1}
    return {**base, **kw}


def test_state_is_read_at_each_scrape_with_every_reject_reason_labelled() -> None:
    st = status()
    m = NodeMetrics("peerA", lambda: st)
    got = samples(m.text())
    peer = (("peer", "peerA"),)
    assert got[("rumor_round", peer)] == 4
    assert got[("rumor_accuracy", peer)] == 0.75
    assert got[("rumor_neighbours", peer)] == 3
    assert got[("rumor_accepted_total", peer)] == 9
    assert got[("rumor_round_timeouts_total", peer)] == 1
    rejects = {dict(k[1])["reason"]: v for k, v in got.items()
               if k[0] == "rumor_rejects_total"}
    assert set(REJECT_REASONS) <= set(rejects)
    assert rejects["bad_signature"] == 2 and rejects["frame_oversize"] == 1
    assert sum(rejects.values()) == 3
    st["round"] = 5
    st["last_accuracy"] = None
    again = samples(m.text())
    assert again[("rumor_round", peer)] == 5
    assert math.isnan(again[("rumor_accuracy", peer)])


def test_histograms_and_io_counters_count_what_was_observed() -> None:
    m = NodeMetrics("p")
    for d in (0.2, 0.4, 3.0):
        m.round_duration.observe(d)
    m.merge_time.observe(0.002)
    m.count_sent(100)
    m.count_sent(50)
    m.count_received(70)
    got = samples(m.text())
    peer = (("peer", "p"),)
    assert got[("rumor_round_duration_seconds_count", peer)] == 3
    assert math.isclose(got[("rumor_round_duration_seconds_sum", peer)], 3.6)
    assert got[("rumor_round_duration_seconds_bucket", (("le", "0.5"), ("peer", "p")))] == 2
    assert got[("rumor_merge_seconds_count", peer)] == 1
    assert got[("rumor_messages_sent_total", peer)] == 2
    assert got[("rumor_bytes_sent_total", peer)] == 150
    assert got[("rumor_messages_received_total", peer)] == 1
    assert got[("rumor_bytes_received_total", peer)] == 70


def test_two_nodes_in_one_process_keep_separate_registries_off_the_global_one() -> None:
    a, b = NodeMetrics("a"), NodeMetrics("b")
    a.count_sent(10)
    got_a, got_b = samples(a.text()), samples(b.text())
    assert got_a[("rumor_bytes_sent_total", (("peer", "a"),))] == 10
    assert got_b[("rumor_bytes_sent_total", (("peer", "b"),))] == 0
    assert not any(k[1] == (("peer", "a"),) for k in got_b)
    assert REGISTRY.get_sample_value("rumor_bytes_sent_total", {"peer": "a"}) is None
