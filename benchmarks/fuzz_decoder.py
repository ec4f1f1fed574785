"""Fuzz codec.decode + Validator.check with millions of seeded inputs (issue 9).

Run: python -m benchmarks.fuzz_decoder [--inputs 1000000] [--seed 1]

Inputs come from tests/adversarial/fuzz.py: random bytes, mutations of valid signed
messages of every kind, hostile structures (nested containers, lying lengths, deep
nesting, random msgpack trees) and well-typed field maps. Every input must be accepted
or refused with a counted reason; anything else stops the run with the seed, the input
number and the input in hex. Prints inputs/s, peak RSS, the slowest input and the
outcome counts. The CI tier runs 20,000 of the same inputs.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import Counter

from tests.adversarial.fuzz import check_one, inputs, validator


def _peak_rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--report-every", type=int, default=100_000)
    args = ap.parse_args()
    v = validator()
    outcomes: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    slowest = (0.0, "", 0, 0)
    t_start = time.perf_counter()
    stream = itertools.islice(inputs(args.seed), args.inputs)
    for i, (category, raw) in enumerate(stream):
        t0 = time.perf_counter()
        try:
            outcome = check_one(v, raw, now=float(i))
        except BaseException:
            print(f"seed {args.seed} input {i} ({category}) failed: {raw.hex()[:2000]}",
                  file=sys.stderr)
            raise
        dt = time.perf_counter() - t0
        if dt > slowest[0]:
            slowest = (dt, category, i, len(raw))
        outcomes[outcome] += 1
        categories[category] += 1
        if args.report_every and (i + 1) % args.report_every == 0:
            rate = (i + 1) / (time.perf_counter() - t_start)
            print(f"{i + 1:>10,} inputs  {rate:,.0f}/s  peak RSS {_peak_rss_mib():.0f} MiB",
                  flush=True)
    elapsed = time.perf_counter() - t_start
    n = sum(outcomes.values())
    print(f"inputs: {n:,} in {elapsed:.1f} s = {n / elapsed:,.0f} inputs/s (seed {args.seed})")
    print(f"peak RSS: {_peak_rss_mib():.0f} MiB")
    print(f"slowest input: {slowest[0] * 1e3:.2f} ms (#{slowest[2]}, {slowest[1]}, "
          f"{slowest[3]:,} bytes)")
    print("categories: " + ", ".join(f"{k} {c:,}" for k, c in sorted(categories.items())))
    print("outcomes:   " + ", ".join(f"{k} {c:,}" for k, c in outcomes.most_common()))


if __name__ == "__main__":
    main()
