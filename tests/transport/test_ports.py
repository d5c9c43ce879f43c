"""Ports for our servers come from below the ephemeral range, so a restarted server gets its
address back even after outgoing connections have come and gone (transport/ports.py)."""

from __future__ import annotations

import socket

import pytest

from transport import ports
from transport.ports import bindable, ephemeral_range, free_port


def test_ports_lie_below_the_ephemeral_range_and_never_repeat_within_a_process() -> None:
    low, _ = ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(1024 <= port < low for port in ports)


def test_consecutive_ports_are_all_free_and_a_bound_port_is_never_handed_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start = free_port(count=3)
    assert all(bindable(port) for port in range(start, start + 3))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        # As our servers bind: a connection of an earlier test in TIME_WAIT on this port
        # would refuse a plain bind, though the port is free for a server.
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", start))
        held.listen()
        assert not bindable(start)
        # The sequence arrives at the held port: it is passed over.
        monkeypatch.setattr(ports, "_next", start)
        assert free_port() == start + 1


def test_a_port_to_avoid_is_passed_over_though_nothing_has_bound_it_yet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start = free_port(count=3)
    monkeypatch.setattr(ports, "_next", start)
    assert free_port(avoid={start}) == start + 1
    # A span that would cover an avoided port is passed over whole.
    monkeypatch.setattr(ports, "_next", start)
    assert free_port(count=2, avoid={start + 1}) == start + 2
