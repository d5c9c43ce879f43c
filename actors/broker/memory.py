"""Handing freed heap back to the system after a cleaning round.

A long-running CPython process keeps the heap its peaks grew (a cleaning round,
a burst of large frames): glibc returns only the top of the heap on its own.
`malloc_trim(0)` also returns whole free pages from the middle of it, so the
broker's resident size follows its live state instead of its busiest moment.
Where the C library has no `malloc_trim` (not glibc), this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

_trim: Callable[[int], int] | None = None


def _load() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def release_free_heap() -> None:
    global _trim
    if _trim is None:
        _trim = _load() or (lambda _pad: 0)
    _trim(0)
