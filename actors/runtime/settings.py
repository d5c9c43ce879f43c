"""Process settings shared by every entry point: flags first, then `FABRIC_*` env, then defaults.

Every value type here is an argparse `type=` that raises `ArgumentTypeError`
with a reason, so a bad setting ends the process with one clear line (argparse
prints `prog: error: argument --x: reason` and exits 2), never a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping

from transport.client import BrokerEndpoints


def env(name: str, default: str | None = None) -> str | None:
    """An env var as a flag default; empty counts as unset."""
    return os.environ.get(name) or default


def positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more: {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def host_port(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 hosts in brackets)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def broker_endpoints(text: str) -> BrokerEndpoints:
    """`CONTROL,EVENTS,ACKS`, three ZeroMQ addresses."""
    try:
        endpoints = BrokerEndpoints.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    for address in (endpoints.control, endpoints.events, endpoints.acks):
        if "://" not in address:
            raise argparse.ArgumentTypeError(f"not a zmq address (tcp://HOST:PORT): {address!r}")
    return endpoints


LOG_FORMATS = ("json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")


def add_logging_flags(
    parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None
) -> None:
    """`--log-format json|console` and `--log-level`, the same in every process.

    Validated through `type=` rather than `choices=`: argparse runs string
    defaults (our env values) through `type` but checks `choices` for flags only.
    """
    source = os.environ if environ is None else environ
    parser.add_argument(
        "--log-format",
        type=_one_of(LOG_FORMATS),
        metavar="{json,console}",
        default=source.get("FABRIC_LOG_FORMAT") or "json",
        help="json lines (default) or console for people (FABRIC_LOG_FORMAT)",
    )
    parser.add_argument(
        "--log-level",
        type=_one_of(LOG_LEVELS),
        metavar="{debug,info,warning,error}",
        default=source.get("FABRIC_LOG_LEVEL") or "info",
        help="(FABRIC_LOG_LEVEL)",
    )


def _one_of(options: tuple[str, ...]) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in options:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(options)}: {text!r}")
        return text

    return check


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
    return value
