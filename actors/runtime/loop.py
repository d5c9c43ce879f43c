"""The one way a Fabric process runs its event loop: `run(main())`, on uvloop.

uvloop (libuv under asyncio's API) is a drop-in loop whose sockets, timers and
callbacks cost a fraction of the standard loop's: measured on `account.get`
through the API, 6.5k/s on the standard loop and 7.3k/s on uvloop, the same
code. Every process runs on it, so the daemons' Kubernetes calls, the broker's
sockets and the API share the gain, and tests run what production runs.

A process whose worker threads run Python for long stretches (the broker's log cleaner)
asks for a short GIL switch interval, so its event loop gets the GIL back within that
instead of Python's 5 ms.

Before the loop starts, every object the imports made is frozen out of the
garbage collector (`gc.freeze`): they live as long as the process, and a full
collection would otherwise walk all of them again (kubernetes-asyncio alone is
tens of thousands of objects). The youngest generation is collected every
GEN0_THRESHOLD allocations instead of Python 3.11's 700 (3.13 raised its own
to 2,000): a daemon catching up made ~490 young collections in a figure's
run, ~0.12 s of its ~4.2 s of CPU, and its whole collector ~0.24 s; at 7,000
from process start, 22 young collections and ~0.11 s in all; as set here
(after the imports, which make ~180 young collections first), 205 and
0.13-0.15 s in all. What a young collection finds is
the same garbage either way; it lives a few thousand allocations longer.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")

GEN0_THRESHOLD = 7000


def run(main: Coroutine[Any, Any, T], *, switch_interval: float | None = None) -> T:
    """`switch_interval`: how long a thread may hold the GIL while another waits (Python's
    default is 5 ms), for a process whose loop must not wait behind a busy worker thread."""
    gc.collect()  # what the imports left as garbage is collected, not frozen
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, older, oldest)
    if switch_interval is not None:
        sys.setswitchinterval(switch_interval)
    return uvloop.run(main)
