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
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from actors.broker.index import DedupWindow
from actors.runtime.settings import (
    HEARTBEAT,
    LOG_SETTINGS,
    METRICS_LISTEN,
    Setting,
    broker_endpoints,
    positive_float,
    positive_int,
    settings_parser,
)
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
    metrics_listen: tuple[str, int] | None = None  # where /metrics is served; None: not served
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


def _positive_duration(text: str) -> float:
    value = duration(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be longer than 0: {text!r}")
    return value


SETTINGS = (
    Setting("--data-dir", "FABRIC_BROKER_DATA_DIR",
            "where the log segments and consumer positions live", type=Path,
            required="the broker's log lives there"),
    Setting("--bind", "FABRIC_BROKER_BIND",
            "CONTROL,EVENTS,ACKS zmq addresses, e.g. tcp://127.0.0.1:7101,tcp://127.0.0.1:7102,"
            "tcp://127.0.0.1:7103", type=broker_endpoints, required="the broker's three sockets"),
    Setting("--curve-secret", "FABRIC_BROKER_CURVE_SECRET",
            "the broker's CURVE certificate with its secret key, e.g. DIR/keys/broker.key_secret",
            type=Path, metavar="PATH", required="every broker socket requires CURVE"),
    Setting("--curve-clients", "FABRIC_BROKER_CURVE_CLIENTS",
            "the allow-list: a directory of client public certificates, NAME.key where NAME is "
            "the client's identity (api, cluster-NAME); re-read when it changes",
            type=Path, metavar="DIR", required="every broker socket requires CURVE"),
    replace(HEARTBEAT, aliases=("FABRIC_BROKER_HEARTBEAT_SECONDS",)),
    Setting("--consumer-timeout", "FABRIC_BROKER_CONSUMER_TIMEOUT",
            "seconds without a sign of life before a consumer counts as offline",
            type=positive_float, default="10"),
    Setting("--segment-bytes", "FABRIC_BROKER_SEGMENT_BYTES",
            "roll to a new log segment past this size; cleaning merges segments up to it",
            type=positive_int, default=str(SEGMENT_BYTES)),
    Setting("--dedup-window", "FABRIC_BROKER_DEDUP_WINDOW",
            "a publish whose event id was stored within this many records (e.g. 100000) or this "
            "long (e.g. 10m) is a duplicate", type=dedup_window, default=str(DEDUP_COUNT)),
    Setting("--tombstone-retention", "FABRIC_BROKER_TOMBSTONE_RETENTION",
            "keep a deleted key's tombstone at least this long, and until every consumer has "
            "passed it", type=duration, default="24h"),
    Setting("--clean-interval", "FABRIC_BROKER_CLEAN_INTERVAL",
            "how often to check whether a compaction round is due", type=_positive_duration,
            default="1s"),
    METRICS_LISTEN,
    *LOG_SETTINGS,
)


def parse_settings(argv: Sequence[str] | None = None) -> BrokerSettings:
    args = settings_parser(
        "broker",
        "The durable event broker: a compacted keyed log (fsync before confirming) delivered to "
        "durable consumers, which ack cumulatively.",
        SETTINGS,
    ).parse_settings(argv)
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
        metrics_listen=args.metrics_listen,
        log_format=args.log_format,
        log_level=args.log_level,
    )

