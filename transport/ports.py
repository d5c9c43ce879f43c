"""Free loopback ports for the servers we start, chosen below the kernel's ephemeral range.

Binding port 0 hands out a port from the ephemeral range, the same range every outgoing
connection draws its local port from. Once such a server dies, any connection made in the
meantime (to PostgreSQL, a broker, a cluster) may take its port, and the server, restarted
on its old address, cannot bind until that connection closes, which for a pooled or
long-lived connection is never. Ports below the range are never handed to connections, so a
restarted server always gets its address back.

Within one process the ports come out in sequence from a random start, so two calls never
return the same port even when the first has not been bound yet.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Collection
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000  # below this lie well-known services' ports
_next: int | None = None


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux's default elsewhere)."""
    try:
        low, high = (int(part) for part in _RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def bindable(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(
    count: int = 1, host: str = "127.0.0.1", *, avoid: Collection[int] = ()
) -> int:
    """A port `p` such that `p .. p + count - 1` are free now, outside the ephemeral range and
    not in `avoid` (`count` > 1 for servers that take consecutive ports, such as API replicas).

    `avoid`: ports another process was told to bind but may not have bound yet. A port is
    only free until somebody binds it, and sequences in different processes (a caller
    choosing `fabric up --port`, `up` choosing its children's) can meet."""
    global _next
    low, _high = ephemeral_range()
    if low - _LOWEST < 1000:
        # The ephemeral range leaves no room below it: fall back to what the kernel picks.
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
            if port not in avoid:
                return port
        raise OSError(f"the kernel kept handing out ports to avoid on {host}")
    if _next is None:
        _next = random.randrange(_LOWEST, low)
    for _ in range(low - _LOWEST):
        start = _next
        if start + count > low:
            start = _LOWEST
        _next = start + count
        span = range(start, start + count)
        if not any(port in avoid for port in span) and all(bindable(port, host) for port in span):
            return start
    raise OSError(f"no {count} free consecutive ports on {host} between {_LOWEST} and {low}")
