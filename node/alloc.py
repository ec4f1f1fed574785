"""Keep freed heap memory in the process (glibc), for runtimes that reallocate the same
large buffers every round (the simulator).

On a VM a page the process touches for the first time costs far more than the
arithmetic on it (measured here: filling a fresh 200 MB array 0.43-0.77 s, refilling
it 0.03 s), and glibc returns freed memory to the kernel (top-of-heap trims, and every
allocation above the mmap threshold is an mmap of its own), so each round pays those
faults again. ``keep_freed_memory()`` sets M_MMAP_THRESHOLD to its maximum (32 MiB on
64-bit: smaller blocks come from the heap and are reused) and M_TRIM_THRESHOLD to
``trim_above`` bytes (default 2 GiB, mallopt's int maximum: freed heap memory
stays mapped for reuse). RSS then stays at its
peak instead of following the working set; the peak itself does not grow. A no-op
(False) where glibc's ``mallopt`` is not available.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
BLOCK_BYTES = 24 * 1024 * 1024  # work buffers below MMAP_THRESHOLD_MAX come from the heap

_done = False


def keep_freed_memory(trim_above: int = 2**31 - 1) -> bool:
    """Tune glibc's malloc once per process (module docstring); True when it took."""
    global _done
    if _done:
        return True
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(
        mallopt(M_TRIM_THRESHOLD, trim_above))
    return _done


def block_rows(d: int) -> int:
    """Rows of d float32 per work block: BLOCK_BYTES, so blocks come from the heap."""
    return max(1, BLOCK_BYTES // (4 * max(d, 1)))
