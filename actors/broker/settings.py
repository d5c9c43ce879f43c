"""The broker's settings: flags, then FABRIC_* environment variables, then defaults."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from actors.runtime.settings import add_logging_flags, broker_endpoints, positive_float, positive_int
from transport.endpoints import BrokerEndpoints


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    data_dir: Path
    endpoints: BrokerEndpoints
    heartbeat_interval: float = 1.0
    consumer_timeout: float = 10.0
    flush_interval: float = 0.05
    segment_bytes: int = 64 * 1024 * 1024
    log_format: str = "json"
    log_level: str = "info"


def parse_settings(argv: Sequence[str] | None = None) -> BrokerSettings:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="broker",
        description="The durable event broker: stores events (fsync before confirming), "
        "delivers them to durable consumers, records their acks.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=env.get("FABRIC_BROKER_DATA_DIR"),
        help="where the log segments and consumer positions live (env FABRIC_BROKER_DATA_DIR)",
    )
    parser.add_argument(
        "--bind",
        type=broker_endpoints,
        default=env.get("FABRIC_BROKER_BIND"),
        help="CONTROL,EVENTS,ACKS zmq addresses, e.g. tcp://127.0.0.1:7101,tcp://127.0.0.1:7102,"
        "tcp://127.0.0.1:7103 (env FABRIC_BROKER_BIND)",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=positive_float,
        default=env.get("FABRIC_BROKER_HEARTBEAT_SECONDS", "1.0"),
        help="seconds between heartbeats on the event stream (env FABRIC_BROKER_HEARTBEAT_SECONDS)",
    )
    parser.add_argument(
        "--consumer-timeout",
        type=positive_float,
        default=env.get("FABRIC_BROKER_CONSUMER_TIMEOUT", "10"),
        help="seconds without a sign of life before a consumer counts as offline "
        "(env FABRIC_BROKER_CONSUMER_TIMEOUT)",
    )
    parser.add_argument(
        "--segment-bytes",
        type=positive_int,
        default=env.get("FABRIC_BROKER_SEGMENT_BYTES", str(64 * 1024 * 1024)),
        help="roll to a new log segment past this size (env FABRIC_BROKER_SEGMENT_BYTES)",
    )
    add_logging_flags(parser)
    args = parser.parse_args(argv)
    if args.data_dir is None:
        parser.error("--data-dir (or FABRIC_BROKER_DATA_DIR) is required")
    if args.bind is None:
        parser.error("--bind (or FABRIC_BROKER_BIND) is required")
    # argparse runs string defaults (the env values) through `type` too, so both are checked.
    return BrokerSettings(
        data_dir=Path(args.data_dir),
        endpoints=args.bind,
        heartbeat_interval=args.heartbeat_interval,
        consumer_timeout=args.consumer_timeout,
        segment_bytes=args.segment_bytes,
        log_format=args.log_format,
        log_level=args.log_level,
    )
