"""The broker's settings: flags, then FABRIC_* environment variables, then defaults.

Durations are written `500ms`, `30s`, `10m`, `24h` or `7d` (a bare number is
seconds); `--dedup-window` is a count of records (`100000`) or a duration.

Security has no off switch: `--curve-secret` (the broker's own certificate,
`broker.key_secret`) and `--curve-clients` (the directory of client public
certificates, `api.key`, `cluster-NAME.key`: the allow-list) are required, and
every socket is a CURVE server behind the ZAP allow-list.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from actors.broker.index import DedupWindow
from actors.runtime.settings import add_logging_flags, broker_endpoints, positive_float, positive_int
from transport.endpoints import BrokerEndpoints

SEGMENT_BYTES = 4 * 1024 * 1024
DEDUP_COUNT = 100_000
TOMBSTONE_RETENTION = 24 * 3600.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


@dataclass(frozen=True, slots=True)
class DedupSetting:
    """The dedup window: the last `count` records, or those stored in the last `seconds`."""

    count: int | None = DEDUP_COUNT
    seconds: float | None = None

    def window(self) -> DedupWindow:
        return DedupWindow(count=self.count, seconds=self.seconds)

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{self.seconds}s"


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    data_dir: Path
    endpoints: BrokerEndpoints
    curve_secret: Path  # the broker's certificate with its secret key
    curve_clients: Path  # the allow-list: a directory of client public certificates
    heartbeat_interval: float = 1.0
    consumer_timeout: float = 10.0
    flush_interval: float = 0.05
    segment_bytes: int = SEGMENT_BYTES
    dedup: DedupSetting = field(default_factory=DedupSetting)
    tombstone_retention: float = TOMBSTONE_RETENTION
    clean_interval: float = 1.0
    log_format: str = "json"
    log_level: str = "info"


def duration(text: str) -> float:
    """Seconds from `30s`, `10m`, `24h`, `500ms`, `7d` or a bare number of seconds (>= 0)."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"not a duration (e.g. 30s, 10m, 24h): {text!r}")
    value = float(found.group(1)) * _UNITS[found.group(2)]
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"duration out of range: {text!r}")
    return value


def dedup_window(text: str) -> DedupSetting:
    """A count of records (`100000`) or a duration (`10m`)."""
    text = text.strip()
    if text.isdigit():
        count = int(text)
        if count < 1:
            raise argparse.ArgumentTypeError(f"a dedup window holds at least 1 record: {text!r}")
        return DedupSetting(count=count)
    seconds = duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"a dedup window must be longer than 0: {text!r}")
    return DedupSetting(count=None, seconds=seconds)


def parse_settings(argv: Sequence[str] | None = None) -> BrokerSettings:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="broker",
        description="The durable event broker: a compacted keyed log (fsync before confirming) "
        "delivered to durable consumers, which ack cumulatively.",
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
        "--curve-secret",
        type=Path,
        default=env.get("FABRIC_BROKER_CURVE_SECRET") or None,
        metavar="PATH",
        help="the broker's CURVE certificate with its secret key, e.g. DIR/keys/broker.key_secret "
        "(env FABRIC_BROKER_CURVE_SECRET)",
    )
    parser.add_argument(
        "--curve-clients",
        type=Path,
        default=env.get("FABRIC_BROKER_CURVE_CLIENTS") or None,
        metavar="DIR",
        help="the allow-list: a directory of client public certificates, NAME.key where NAME is "
        "the client's identity (api, cluster-NAME); re-read when it changes "
        "(env FABRIC_BROKER_CURVE_CLIENTS)",
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
        default=env.get("FABRIC_BROKER_SEGMENT_BYTES", str(SEGMENT_BYTES)),
        help="roll to a new log segment past this size; cleaning merges segments up to it "
        f"(default {SEGMENT_BYTES}; env FABRIC_BROKER_SEGMENT_BYTES)",
    )
    parser.add_argument(
        "--dedup-window",
        type=dedup_window,
        default=env.get("FABRIC_BROKER_DEDUP_WINDOW", str(DEDUP_COUNT)),
        help="a publish whose event id was stored within this many records (e.g. 100000) or "
        f"this long (e.g. 10m) is a duplicate (default {DEDUP_COUNT}; env FABRIC_BROKER_DEDUP_WINDOW)",
    )
    parser.add_argument(
        "--tombstone-retention",
        type=duration,
        default=env.get("FABRIC_BROKER_TOMBSTONE_RETENTION", "24h"),
        help="keep a deleted key's tombstone at least this long, and until every consumer has "
        "passed it (default 24h; env FABRIC_BROKER_TOMBSTONE_RETENTION)",
    )
    parser.add_argument(
        "--clean-interval",
        type=_positive_duration,
        default=env.get("FABRIC_BROKER_CLEAN_INTERVAL", "1s"),
        help="how often to check whether a compaction round is due (default 1s; "
        "env FABRIC_BROKER_CLEAN_INTERVAL)",
    )
    add_logging_flags(parser)
    args = parser.parse_args(argv)
    if args.data_dir is None:
        parser.error("--data-dir (or FABRIC_BROKER_DATA_DIR) is required")
    if args.bind is None:
        parser.error("--bind (or FABRIC_BROKER_BIND) is required")
    if args.curve_secret is None or args.curve_clients is None:
        parser.error(
            "--curve-secret PATH and --curve-clients DIR (or FABRIC_BROKER_CURVE_SECRET and "
            "FABRIC_BROKER_CURVE_CLIENTS) are required: every broker socket requires CURVE"
        )
    # argparse runs string defaults (the env values) through `type` too, so both are checked.
    return BrokerSettings(
        data_dir=Path(args.data_dir),
        endpoints=args.bind,
        curve_secret=args.curve_secret,
        curve_clients=args.curve_clients,
        heartbeat_interval=args.heartbeat_interval,
        consumer_timeout=args.consumer_timeout,
        segment_bytes=args.segment_bytes,
        dedup=args.dedup_window,
        tombstone_retention=args.tombstone_retention,
        clean_interval=args.clean_interval,
        log_format=args.log_format,
        log_level=args.log_level,
    )


def _positive_duration(text: str) -> float:
    value = duration(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be longer than 0: {text!r}")
    return value
