"""The flags of `fabric up` and their validation into `UpSettings` (no processes, no I/O).

Kept apart from the supervisor so `fabric --help` stays quick to start.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from actors.runtime.settings import (
    LOG_SETTINGS,
    RESYNC,
    Setting,
    add_settings,
    positive_float,
    positive_int,
)
from actors.up.layout import Layout, from_caller
from transport.bus_choice import BusName, bus_name, nats_servers, replicas


@dataclass(frozen=True, slots=True)
class UpSettings:
    layout: Layout
    api_port: int | None
    clusters: tuple[str, ...]
    external_kubeconfigs: Mapping[str, Path]
    legacy_dsn: str | None
    resync_seconds: str
    log_format: str
    bus: BusName = "zmq"
    # An outside NATS cluster (FABRIC_NATS_URL); None: `up` runs a local nats-server.
    nats_servers: tuple[str, ...] | None = None
    nats_replicas: int = 1
    api_replicas: int = 1
    # The query cache's PostgreSQL (given); None: SQLite, or with replicas `up` picks one.
    cache_dsn: str | None = None

CLUSTER_NAME_MAX = 40


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"must be between 1 and 65535: {text!r}")
    return int(text)


SETTINGS = (
    Setting("--port", "FABRIC_UP_PORT",
            "API port (default 8080, then whatever the state dir used)", type=_port),
    Setting("--clusters", "FABRIC_CLUSTERS", "comma-separated cluster names", default="local"),
    Setting("--kubeconfig", None, "run NAME's daemon against a real cluster (repeatable)",
            repeat=True, metavar="NAME=PATH"),
    Setting("--restart-backoff-max", "FABRIC_UP_RESTART_BACKOFF_MAX",
            "longest wait before restarting a dead child, seconds", type=positive_float, default="5"),
    Setting("--stop-timeout", "FABRIC_UP_STOP_TIMEOUT",
            "how long a child may take to stop before SIGKILL, seconds", type=positive_float,
            default="10"),
    Setting("--bus", "FABRIC_BUS", "the event bus: zmq (our broker) or jetstream (NATS)",
            type=bus_name, default="zmq", metavar="{zmq,jetstream}"),
    Setting("--nats-url", "FABRIC_NATS_URL",
            "with --bus jetstream: an existing NATS cluster's servers, comma-separated "
            "(unset: a local nats-server under DIR/nats)"),
    Setting("--nats-replicas", "FABRIC_NATS_REPLICAS", "copies JetStream keeps of the stream",
            default="1"),
    Setting("--api-replicas", "FABRIC_API_REPLICAS",
            "API processes on consecutive ports from --port; they share a PostgreSQL query cache",
            type=positive_int, default="1"),
    Setting("--cache-dsn", "FABRIC_CACHE_DSN",
            "PostgreSQL DSN of the query cache (unset, with --api-replicas > 1: database "
            "fabric_cache on the legacy PostgreSQL)"),
    RESYNC,
    # No default: unset lets `up` log for people on a terminal (logging.resolve_format) while
    # its children, which log to files, keep JSON (settings_from).
    replace(LOG_SETTINGS[0], default=None),
    LOG_SETTINGS[1],
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, SETTINGS)


def settings_from(args: argparse.Namespace, state_dir: str) -> UpSettings:
    """Validate the flags; raise ValueError with one clear sentence."""
    for error in getattr(args, "settings_errors", None) or ():
        raise ValueError(error)
    clusters = tuple(c.strip() for c in str(args.clusters).split(",") if c.strip())
    if not clusters:
        raise ValueError("--clusters: give at least one cluster name")
    for name in clusters:
        if not _is_label(name):
            raise ValueError(f"--clusters: {name!r} is not a DNS-1123 label of at most "
                             f"{CLUSTER_NAME_MAX} characters")
    if len(set(clusters)) != len(clusters):
        raise ValueError("--clusters: a name is repeated")
    external: dict[str, Path] = {}
    for item in args.kubeconfig:
        name, sep, path = str(item).partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--kubeconfig: expected NAME=PATH, got {item!r}")
        if name not in clusters:
            raise ValueError(f"--kubeconfig: {name!r} is not in --clusters")
        resolved = from_caller(path).resolve()
        if not resolved.is_file():
            raise ValueError(f"--kubeconfig: {resolved} does not exist")
        external[name] = resolved
    if args.port is not None and args.port + args.api_replicas - 1 > 65535:
        raise ValueError("--api-replicas: the API ports would run past 65535")
    servers: tuple[str, ...] | None = None
    copies = 1
    # On the zmq bus the NATS settings are ignored, even when inherited malformed.
    if args.bus == "jetstream":
        try:
            servers = nats_servers(args.nats_url) if args.nats_url else None
            copies = replicas(str(args.nats_replicas))
        except argparse.ArgumentTypeError as exc:
            raise ValueError(f"--nats-url/--nats-replicas: {exc}")
        if servers is None and copies > 1:
            raise ValueError("--nats-replicas: the local nats-server is one node; more copies "
                             "need a NATS cluster (--nats-url)")
    cache_dsn = args.cache_dsn or None
    if cache_dsn is not None and not cache_dsn.startswith(("postgresql://", "postgres://")):
        raise ValueError("--cache-dsn: expected a postgresql:// URL")
    # Passed on to every daemon as FABRIC_RESYNC_SECONDS, in the form it was given.
    resync = f"{args.resync:g}"
    return UpSettings(
        layout=Layout.at(state_dir),
        api_port=args.port,
        clusters=clusters,
        external_kubeconfigs=external,
        legacy_dsn=os.environ.get("FABRIC_LEGACY_DSN") or None,
        resync_seconds=resync,
        log_format=args.log_format or "json",
        bus=args.bus,
        nats_servers=servers,
        nats_replicas=copies,
        api_replicas=args.api_replicas,
        cache_dsn=cache_dsn,
    )


def _is_label(name: str) -> bool:
    return len(name) <= CLUSTER_NAME_MAX and re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", name) is not None


