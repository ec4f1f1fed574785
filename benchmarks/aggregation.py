"""Time every aggregation rule against n and d; compare with mean and with byzfl.

    python -m benchmarks.aggregation            # n in 10..200, d in 1e3..1e6
    python -m benchmarks.aggregation --quick    # a subset that runs in about a minute
    python -m benchmarks.aggregation --n 200 --d 1000000 --rules mean,median,krum

Each rule gets n vectors: own plus n - 1 received, f = max(1, n // 10), float32. Times
are the best of up to 3 runs (one run when a call takes over a second). byzfl, when
importable (dev extra), runs on the same n stacked vectors as a float32 numpy array.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch

from rumor.aggregation import REGISTRY, names

LINEAR = ("nna", "median", "trimmed-mean")


def _stub(name: str) -> types.ModuleType:
    """A module whose every public attribute is a do-nothing callable."""
    module = types.ModuleType(name)

    def getattr_(attr: str) -> Callable[..., None]:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return lambda *args, **kwargs: None

    module.__getattr__ = getattr_  # type: ignore[method-assign]
    return module


def load_byzfl() -> Any:
    """byzfl with torchvision/seaborn stubbed if they do not import (see the oracle test)."""
    stubs = []
    for name in ("torchvision", "torchvision.datasets", "torchvision.transforms", "seaborn"):
        try:
            __import__(name)
        except Exception:
            sys.modules[name] = _stub(name)
            stubs.append(name)
            parent, _, child = name.rpartition(".")
            if parent in stubs:
                setattr(sys.modules[parent], child, sys.modules[name])
    try:
        import byzfl
    except Exception:
        return None
    finally:
        for name in stubs:
            sys.modules.pop(name, None)
    return byzfl


def byzfl_rules(byzfl: Any, f: int) -> dict[str, Callable[[np.ndarray], Any]]:
    if byzfl is None:
        return {}
    return {
        "mean": byzfl.Average(),
        "median": byzfl.Median(),
        "trimmed-mean": byzfl.TrMean(f=f),
        "krum": byzfl.Krum(f=f),
        "multi-krum": byzfl.MultiKrum(f=f),
        "geometric-median": byzfl.GeometricMedian(),
        "nna": byzfl.MoNNA(f=f, idx=0),
        "centered-clipping": lambda x: byzfl.CenteredClipping()(x),  # fresh state
    }


def best_time(fn: Callable[[], Any]) -> float:
    times: list[float] = []
    while len(times) < 3 and sum(times) < 1.0:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(ns: list[int], ds: list[int], rules: list[str], with_byzfl: bool) -> None:
    byzfl = load_byzfl() if with_byzfl else None
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"byzfl {'yes' if byzfl else 'no'}"
    )
    header = f"{'rule':18} {'n':>4} {'d':>8} {'ms':>10} {'x mean':>8}"
    print(header + (f" {'byzfl ms':>10} {'ours/byzfl':>10}" if byzfl else ""))
    times: dict[tuple[str, int, int], float] = {}
    for d in ds:
        for n in ns:
            gen = torch.Generator().manual_seed(n * 7 + d)
            x = torch.randn(n, d, generator=gen)
            own, updates = x[0].clone(), x[1:].clone()
            f = max(1, n // 10)
            theirs = byzfl_rules(byzfl, f)
            base = best_time(partial(REGISTRY["mean"], updates, own=own, f=f))
            for rule in rules:
                t = best_time(partial(REGISTRY[rule], updates, own=own, f=f))
                times[rule, n, d] = t
                line = f"{rule:18} {n:>4} {d:>8} {t * 1e3:>10.1f} {t / base:>8.1f}"
                if rule in theirs:
                    tb = best_time(partial(theirs[rule], x.numpy()))
                    line += f" {tb * 1e3:>10.1f} {t / tb:>10.2f}"
                print(line, flush=True)
            del x, own, updates
    if len(ns) > 1:
        lo, hi = ns[-2], ns[-1]
        print(f"\ngrowth from n={lo} to n={hi} at d={ds[-1]} (linear would be {hi / lo:.1f}):")
        for rule in (r for r in LINEAR if r in rules):
            print(f"  {rule:14} {times[rule, hi, ds[-1]] / times[rule, lo, ds[-1]]:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n in 10,50,100; d in 1e3,1e5")
    parser.add_argument("--n", type=int, nargs="*", help="override the list of n")
    parser.add_argument("--d", type=int, nargs="*", help="override the list of d")
    parser.add_argument("--rules", help="comma-separated subset of rules")
    parser.add_argument("--no-byzfl", action="store_true", help="skip the byzfl columns")
    parser.add_argument("--threads", type=int, help="torch threads (byzfl/numpy uses 1)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ns = [10, 50, 100] if args.quick else [10, 50, 100, 200]
    ds = [1_000, 100_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
    rules = args.rules.split(",") if args.rules else names()
    run(args.n or ns, args.d or ds, rules, not args.no_byzfl)


if __name__ == "__main__":
    main()
