"""torch's thread count: chosen once, at the edge, before any work.

torch defaults to one intra-op thread per core. On a small shared machine that is the
wrong choice for this project's workloads (many small matrix products per message,
per merge, per training batch): with 2 threads on 2 loaded cores every parallel region
waits for a core the other process holds, so whole runs got 2.5-3.6x slower than with
one thread, and single calls varied up to 100x between repeats (issue 13). Results do
not depend on the count (the runs were byte-identical); only the time does.

``DEFAULT_THREADS`` is 1: on the project's loaded 2-core box it was the fastest, idle
and under a parallel load (numbers in docs/results.md, "Threads"). Where cores are free,
``--threads N`` gives more to one process.
"""

from __future__ import annotations

import contextlib

from rumor.protocols.errors import ConfigError

DEFAULT_THREADS = 1


def apply_threads(n: int) -> None:
    """Use ``n`` intra-op threads (``torch.set_num_threads``) and, where the process
    has not started inter-op work yet, ``n`` inter-op threads (torch fixes that pool at
    its first use; later calls keep it as it is). Raises ConfigError for ``n < 1``."""
    if n < 1:
        raise ConfigError(f"threads must be >= 1, got {n}")
    import torch

    torch.set_num_threads(n)
    if torch.get_num_interop_threads() != n:
        # once the pool has started torch refuses; then only the intra-op count moves
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(n)
