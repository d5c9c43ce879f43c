"""The daemon's settings: flags, FABRIC_* environment variables (flags win), and the tenancy policy.

`parse_settings(argv, env)` returns a `DaemonSettings` or exits through
argparse with one clear line. Every desired-object setting lives in
`core.tenancy.TenancyPolicy`; a cluster overrides it with `--tenancy FILE`
(`key = value` lines; `actors/daemon/tenancy.example` lists every key with its
default) and/or repeated `--tenancy-set key=value` flags.
Timers tests compress (resync, retry backoff, request timeout) are settings
too. The broker is reached over CURVE only: `--broker-key` (this daemon's
certificate, `cluster-NAME.key_secret`) and `--broker-public-key` (the broker's
`broker.key`) are required; `main` loads them.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from actors.runtime.settings import add_logging_flags, positive_float, positive_int
from core.tenancy import InvalidOverride, TenancyPolicy, parse_overrides
from transport.curve import KeyFiles
from transport.endpoints import BrokerEndpoints

CRASH_POINTS = ("after_store", "after_create", "after_publish")
_CLUSTER_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    cluster: str
    kubeconfig: Path | None
    broker: BrokerEndpoints
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
    max_parallel: int = 8
    log_format: str = "json"
    log_level: str = "info"
    # Required by `parse_settings`; only in-process tests, whose bus is a fake, leave it out.
    broker_keys: KeyFiles | None = None

    @property
    def consumer(self) -> str:
        return f"cluster:{self.cluster}"


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    e = env.get
    p = argparse.ArgumentParser(
        prog="daemon",
        description="One cluster's daemon: keeps every account's desired state from the broker, "
        "provisions namespaces in its Kubernetes cluster, and reports back. Every flag also reads "
        "the FABRIC_* variable named in its help; flags win.",
    )
    p.add_argument("--cluster", default=e("FABRIC_CLUSTER"), help="cluster name (FABRIC_CLUSTER)")
    p.add_argument(
        "--kubeconfig",
        default=e("FABRIC_KUBECONFIG"),
        help="kubeconfig path; omit for in-cluster config (FABRIC_KUBECONFIG)",
    )
    p.add_argument(
        "--kube-context",
        default=e("FABRIC_KUBE_CONTEXT"),
        help="kubeconfig context to use; default its current-context (FABRIC_KUBE_CONTEXT)",
    )
    p.add_argument(
        "--broker", default=e("FABRIC_BROKER"), help="CONTROL,EVENTS,ACKS addresses (FABRIC_BROKER)"
    )
    p.add_argument(
        "--broker-key",
        type=Path,
        default=e("FABRIC_BROKER_KEY") or None,
        metavar="PATH",
        help="this daemon's CURVE certificate with its secret key, e.g. DIR/keys/cluster-NAME.key_secret "
        "(FABRIC_BROKER_KEY)",
    )
    p.add_argument(
        "--broker-public-key",
        type=Path,
        default=e("FABRIC_BROKER_PUBLIC_KEY") or None,
        metavar="PATH",
        help="the broker's public CURVE certificate, e.g. DIR/keys/broker.key (FABRIC_BROKER_PUBLIC_KEY)",
    )
    p.add_argument("--state-dir", default=e("FABRIC_STATE_DIR"), help="state dir (FABRIC_STATE_DIR)")
    p.add_argument(
        "--resync",
        type=positive_float,
        default=e("FABRIC_RESYNC_SECONDS", "30"),
        help="seconds between resyncs of the cluster (FABRIC_RESYNC_SECONDS, default 30)",
    )
    p.add_argument(
        "--tenancy",
        default=e("FABRIC_TENANCY_FILE"),
        help="file of 'key = value' overrides of the per-account objects (FABRIC_TENANCY_FILE)",
    )
    p.add_argument(
        "--tenancy-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one override of the per-account objects, e.g. quota.pods=20 (repeatable)",
    )
    p.add_argument(
        "--retry-initial",
        type=positive_float,
        default=e("FABRIC_RETRY_INITIAL_SECONDS", "0.2"),
        help="first retry backoff in seconds (FABRIC_RETRY_INITIAL_SECONDS)",
    )
    p.add_argument(
        "--retry-cap",
        type=positive_float,
        default=e("FABRIC_RETRY_CAP_SECONDS", "30"),
        help="retry backoff cap in seconds (FABRIC_RETRY_CAP_SECONDS)",
    )
    p.add_argument(
        "--request-timeout",
        type=positive_float,
        default=e("FABRIC_KUBE_TIMEOUT_SECONDS", "10"),
        help="timeout of one Kubernetes request (FABRIC_KUBE_TIMEOUT_SECONDS)",
    )
    p.add_argument(
        "--heartbeat-interval",
        type=positive_float,
        default=e("FABRIC_HEARTBEAT_SECONDS", "1.0"),
        help="seconds between pings to the broker that keep this cluster online "
        "(FABRIC_HEARTBEAT_SECONDS)",
    )
    p.add_argument(
        "--max-parallel",
        type=positive_int,
        default=e("FABRIC_DAEMON_PARALLEL", "8"),
        help="accounts reconciled at once (FABRIC_DAEMON_PARALLEL)",
    )
    p.add_argument(
        "--failed-after",
        type=positive_int,
        default=e("FABRIC_DAEMON_FAILED_AFTER", "5"),
        help="consecutive temporary failures of one account before it is reported failed; "
        "retries go on (FABRIC_DAEMON_FAILED_AFTER)",
    )
    p.add_argument(
        "--crash-at",
        choices=CRASH_POINTS,
        default=e("FABRIC_DAEMON_CRASH_AT"),
        help="for fault tests only: SIGKILL the daemon at this point (after recording a batch, "
        "after changing the cluster, after publishing a report), once per state dir "
        "(FABRIC_DAEMON_CRASH_AT)",
    )
    add_logging_flags(p, env)
    return p


def parse_settings(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> DaemonSettings:
    environ = os.environ if env is None else env
    parser = build_parser(environ)
    args = parser.parse_args(argv)
    if not args.cluster or not _CLUSTER_NAME.fullmatch(args.cluster):
        parser.error("--cluster NAME is required: a DNS-1123 label of at most 40 chars")
    if not args.broker:
        parser.error("--broker CONTROL,EVENTS,ACKS is required")
    try:
        broker = BrokerEndpoints.parse(args.broker)
    except ValueError as exc:
        parser.error(str(exc))
    if args.broker_key is None or args.broker_public_key is None:
        parser.error("--broker-key PATH and --broker-public-key PATH are required: the broker "
                     "takes CURVE clients only")
    if not args.state_dir:
        parser.error("--state-dir DIR is required")
    # argparse applies `type` to string defaults from the environment too.
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
        broker=broker,
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
        log_format=args.log_format,
        log_level=args.log_level,
        broker_keys=KeyFiles(secret=args.broker_key, server_public=args.broker_public_key),
    )
