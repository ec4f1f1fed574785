"""Bounded fuzzing of codec.decode + Validator.check: 20,000 seeded inputs in CI.

Every input must be accepted or refused with a counted reason; no other exception, and
no single input may take long (the decoder's cost is linear in the input). For millions
of inputs run ``python -m benchmarks.fuzz_decoder --inputs 2000000``.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter

import pytest

from tests.adversarial.fuzz import check_one, inputs, validator

INPUTS = 20_000


@pytest.mark.timeout(120)
def test_twenty_thousand_hostile_inputs_are_accepted_or_refused_with_a_counted_reason() -> None:
    v = validator()
    outcomes: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    slowest = 0.0
    for i, (category, raw) in enumerate(itertools.islice(inputs(seed=9), INPUTS)):
        t0 = time.perf_counter()
        outcomes[check_one(v, raw, now=float(i))] += 1
        slowest = max(slowest, time.perf_counter() - t0)
        categories[category] += 1
    assert sum(outcomes.values()) == INPUTS
    assert v.accepted + sum(v.rejects.values()) == INPUTS
    # the generator reaches deep checks, not only the parser
    assert outcomes["accepted"] > 0
    for reason in ("malformed", "bad_signature", "replay", "bad_tensor"):
        assert outcomes[reason] > 0, (reason, outcomes)
    assert min(categories.values()) > INPUTS // 20
    assert slowest < 2.0, f"one input took {slowest:.2f} s"
