"""Codec benchmark: encode + sign + verify + decode of a 10 MB update vs pickle.

Run: python -m benchmarks.codec [--mb 10] [--repeat 7]
Prints the median time of each and their ratio (ours / pickle round-trip), both
measured in this process on the same tensor. No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import time
from collections.abc import Callable

import numpy as np

from rumor.protocols import codec
from rumor.protocols.identity import Identity
from rumor.protocols.messages import Kind, ModelBody, TensorPayload


def _median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    n = int(args.mb * 1024 * 1024 / 4)
    vec = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    me = Identity.from_seed(b"\x01" * 32)

    def ours() -> None:
        raw = codec.encode(Kind.UPDATE, swarm="bench", sender=me, round_=1, seq=1, sent_at=0.0,
                           body=ModelBody(TensorPayload.from_array(vec), 100))
        env = codec.decode(raw, swarm="bench", verify_signature=True,
                           limits=codec.Limits(max_elements=n + 1))
        env.body.tensor.to_array()

    def ours_unsigned() -> None:
        raw = codec.encode(Kind.UPDATE, swarm="bench", sender=me, round_=1, seq=1, sent_at=0.0,
                           body=ModelBody(TensorPayload.from_array(vec), 100), sign=False)
        codec.decode(raw, swarm="bench", verify_signature=False,
                     limits=codec.Limits(max_elements=n + 1)).body.tensor.to_array()

    def baseline() -> None:
        pickle.loads(pickle.dumps({"round": 1, "seq": 1, "tensor": vec}, protocol=5))

    ours()
    t_ours = _median_time(ours, args.repeat)
    t_unsigned = _median_time(ours_unsigned, args.repeat)
    t_pickle = _median_time(baseline, args.repeat)
    mb = n * 4 / 1e6
    print(f"update size: {mb:.1f} MB ({n} float32)")
    print(f"pickle round-trip (baseline, unsafe):     {t_pickle * 1e3:8.1f} ms "
          f"({mb / t_pickle:7.0f} MB/s)")
    print(f"rumor encode+sign+verify+decode:          {t_ours * 1e3:8.1f} ms "
          f"({mb / t_ours:7.0f} MB/s)   ratio vs pickle {t_ours / t_pickle:5.2f}x")
    print(f"rumor encode+decode, unsigned (sim mode): {t_unsigned * 1e3:8.1f} ms "
          f"({mb / t_unsigned:7.0f} MB/s)   ratio vs pickle {t_unsigned / t_pickle:5.2f}x")


if __name__ == "__main__":
    main()
