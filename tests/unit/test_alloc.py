"""rumor.node.alloc: heap-sized work blocks and glibc's malloc tuning."""

from __future__ import annotations

import platform

import pytest

from rumor.node.alloc import BLOCK_BYTES, MMAP_THRESHOLD_MAX, block_rows, keep_freed_memory


@pytest.mark.parametrize("d", [1, 2_410, 25_450, 61_706, BLOCK_BYTES])
def test_blocks_stay_below_the_mmap_threshold(d: int) -> None:
    rows = block_rows(d)
    assert rows >= 1
    assert rows == 1 or rows * 4 * d <= BLOCK_BYTES < MMAP_THRESHOLD_MAX
    assert (rows + 1) * 4 * d > BLOCK_BYTES  # as many rows as fit


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_malloc_tuning_takes_on_glibc_and_is_idempotent() -> None:
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True
