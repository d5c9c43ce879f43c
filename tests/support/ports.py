"""Free loopback ports for servers started by tests (the same choice `fabric up` makes)."""

from __future__ import annotations

from transport.ports import free_port

__all__ = ["free_port", "free_tcp_endpoint"]


def free_tcp_endpoint() -> str:
    return f"tcp://127.0.0.1:{free_port()}"
