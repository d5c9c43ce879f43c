"""The daemon's settings: flags, FABRIC_* environment variables (flags win), and the tenancy policy.

`parse_settings(argv, env)` returns a `DaemonSettings` or exits through
argparse with one clear line. Every desired-object setting lives in
`core.tenancy.TenancyPolicy`; a cluster overrides it with `--tenancy FILE`
(`key = value` lines; `actors/daemon/tenancy.example` lists every key with its
default) and/or repeated `--tenancy-set key=value` flags.
Timers tests compress (resync, retry backoff, request timeout) are settings
too. The bus (`--bus`, `transport.bus_choice`) is our broker, reached over
CURVE only: `--broker-key` (this daemon's certificate, `cluster-NAME.key_secret`)
and `--broker-public-key` (the broker's `broker.key`) are required; or NATS
JetStream: `--nats-url` and `--nats-password-file` are required, the user
defaults to `cluster-NAME`. `main` reads the credential files.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from actors.runtime.settings import (
    HEARTBEAT,
    LOG_SETTINGS,
    METRICS_LISTEN,
    RESYNC,
    Setting,
    SettingsParser,
    bus_settings,
    one_of,
    positive_float,
    positive_int,
    settings_parser,
)
from core.tenancy import InvalidOverride, TenancyPolicy, parse_overrides
from transport.bus_choice import BusSettings, ZmqBus, bus_from_args
from transport.curve import cluster_identity
from transport.endpoints import BrokerEndpoints

CRASH_POINTS = ("after_store", "after_create", "after_publish")
_CLUSTER_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    cluster: str
    kubeconfig: Path | None
    broker: BrokerEndpoints | None  # on the zmq bus (also in `bus`), for the log
    state_dir: Path
    resync_seconds: float
    policy: TenancyPolicy
    kube_context: str | None = None
    backoff_initial: float = 0.2
    backoff_cap: float = 30.0
    request_timeout: float = 10.0
    heartbeat_interval: float = 1.0
    failed_after: int = 5
    crash_at: str | None = None  # test hook: SIGKILL ourselves at a named point
    metrics_listen: tuple[str, int] | None = None  # where /metrics is served; None: not served
    max_parallel: int = 8
    log_format: str = "json"
    log_level: str = "info"
    # Required by `parse_settings`; only in-process tests, whose bus is a fake, leave it out.
    bus: BusSettings | None = None

    @property
    def consumer(self) -> str:
        return f"cluster:{self.cluster}"


def cluster_name(text: str) -> str:
    if not _CLUSTER_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a DNS-1123 label of at most 40 chars: {text!r}")
    return text


SETTINGS = (
    Setting("--cluster", "FABRIC_CLUSTER", "cluster name", type=cluster_name,
            required="the cluster this daemon provisions (a DNS-1123 label)"),
    Setting("--kubeconfig", "FABRIC_KUBECONFIG", "kubeconfig path; omit for in-cluster config"),
    Setting("--kube-context", "FABRIC_KUBE_CONTEXT",
            "kubeconfig context to use; default its current-context"),
    *bus_settings("cluster-NAME"),
    Setting("--state-dir", "FABRIC_STATE_DIR", "where the desired-state store lives",
            required="the daemon's desired-state store lives there"),
    RESYNC,
    Setting("--tenancy", "FABRIC_TENANCY_FILE",
            "file of 'key = value' overrides of the per-account objects"),
    Setting("--tenancy-set", None,
            "one override of the per-account objects, e.g. quota.pods=20 (repeatable)",
            repeat=True, metavar="KEY=VALUE"),
    Setting("--retry-initial", "FABRIC_RETRY_INITIAL_SECONDS", "first retry backoff in seconds",
            type=positive_float, default="0.2"),
    Setting("--retry-cap", "FABRIC_RETRY_CAP_SECONDS", "retry backoff cap in seconds",
            type=positive_float, default="30"),
    Setting("--request-timeout", "FABRIC_KUBE_TIMEOUT_SECONDS",
            "timeout of one Kubernetes request, seconds", type=positive_float, default="10"),
    HEARTBEAT,
    Setting("--max-parallel", "FABRIC_DAEMON_PARALLEL", "accounts reconciled at once",
            type=positive_int, default="8"),
    Setting("--failed-after", "FABRIC_DAEMON_FAILED_AFTER",
            "consecutive temporary failures of one account before it is reported failed; "
            "retries go on", type=positive_int, default="5"),
    Setting("--crash-at", "FABRIC_DAEMON_CRASH_AT",
            "for fault tests only: SIGKILL the daemon at this point (after recording a batch, "
            "after changing the cluster, after publishing a report), once per state dir",
            type=one_of(*CRASH_POINTS), metavar="{" + ",".join(CRASH_POINTS) + "}"),
    METRICS_LISTEN,
    *LOG_SETTINGS,
)


def build_parser(env: Mapping[str, str]) -> SettingsParser:
    return settings_parser(
        "daemon",
        "One cluster's daemon: keeps every account's desired state from the bus, provisions "
        "namespaces in its Kubernetes cluster, and reports back.",
        SETTINGS, env,
    )


def parse_settings(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> DaemonSettings:
    parser = build_parser(os.environ if env is None else env)
    args = parser.parse_settings(argv)
    try:
        bus = bus_from_args(args, identity=cluster_identity(args.cluster))
    except ValueError as exc:
        parser.error(str(exc))
    policy = TenancyPolicy()
    try:
        if args.tenancy:
            try:
                text = Path(args.tenancy).read_text(encoding="utf-8")
            except OSError as exc:
                parser.error(f"--tenancy: cannot read {args.tenancy}: {exc.strerror}")
            policy = parse_overrides(text.splitlines(), policy)
        if args.tenancy_set:
            policy = parse_overrides(args.tenancy_set, policy)
    except InvalidOverride as exc:
        parser.error(f"tenancy override: {exc}")
    if args.retry_cap < args.retry_initial:
        parser.error("--retry-cap must be at least --retry-initial")
    return DaemonSettings(
        cluster=args.cluster,
        kubeconfig=Path(args.kubeconfig) if args.kubeconfig else None,
        kube_context=args.kube_context or None,
        broker=bus.endpoints if isinstance(bus, ZmqBus) else None,
        state_dir=Path(args.state_dir),
        resync_seconds=args.resync,
        policy=policy,
        backoff_initial=args.retry_initial,
        backoff_cap=args.retry_cap,
        request_timeout=args.request_timeout,
        max_parallel=args.max_parallel,
        heartbeat_interval=args.heartbeat_interval,
        failed_after=args.failed_after,
        crash_at=args.crash_at,
        metrics_listen=args.metrics_listen,
        log_format=args.log_format,
        log_level=args.log_level,
        bus=bus,
    )

