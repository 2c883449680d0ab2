"""How freed memory goes back to the OS (glibc's malloc; elsewhere its own policy stands).

The engine makes many short-lived arrays of 0.1-32 MB: freed memory is best kept for the
next one. A few large objects live only for a while (a big tokenizer, a blob's parsed
metadata): their memory is best given back at once, so the engine's run does not hold it
beside the weights.
"""

from __future__ import annotations

import ctypes
import sys
from functools import cache


@cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc has both
        return libc
    except (OSError, AttributeError):
        return None  # another C library


def keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the OS.

    By default glibc gives large freed blocks back (munmap, heap trimming) and the next
    array of the same size faults in fresh zeroed pages: 10x slower for two chained products
    of 27 x 4096 float64 (1.2 ms against 0.1 ms), 10-15 % of a small file's decode.
    Allocation only: no result changes.
    """
    if libc := _libc():
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: glibc's largest, 32 MiB on 64-bit
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of free heap


def release_freed_memory() -> None:
    """Give the heap's free memory back to the OS now (after dropping something large)."""
    if libc := _libc():
        libc.malloc_trim(0)
