"""The flags of `fabric up` and their validation into `UpSettings` (no processes, no I/O).

Kept apart from the supervisor so `fabric --help` stays quick to start.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from actors.runtime.settings import add_logging_flags, positive_float
from actors.up.layout import Layout, from_caller


@dataclass(frozen=True, slots=True)
class UpSettings:
    layout: Layout
    api_port: int | None
    clusters: tuple[str, ...]
    external_kubeconfigs: Mapping[str, Path]
    legacy_dsn: str | None
    resync_seconds: str
    log_format: str

CLUSTER_NAME_MAX = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--port", type=int, default=env("FABRIC_UP_PORT"),
                        help="API port (default 8080, then whatever the state dir used)")
    parser.add_argument("--clusters", default=env("FABRIC_CLUSTERS", "local"),
                        help="comma-separated cluster names (default: local)")
    parser.add_argument("--kubeconfig", action="append", default=[], metavar="NAME=PATH",
                        help="run NAME's daemon against a real cluster (repeatable)")
    parser.add_argument("--restart-backoff-max", type=positive_float,
                        default=env("FABRIC_UP_RESTART_BACKOFF_MAX", "5"),
                        help="longest wait before restarting a dead child, seconds (default 5)")
    parser.add_argument("--stop-timeout", type=positive_float,
                        default=env("FABRIC_UP_STOP_TIMEOUT", "10"),
                        help="how long a child may take to stop before SIGKILL, seconds")
    add_logging_flags(parser)


def settings_from(args: argparse.Namespace, state_dir: str) -> UpSettings:
    """Validate the flags; raise ValueError with one clear sentence."""
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
    if args.port is not None and not 0 < args.port < 65536:
        raise ValueError("--port: must be between 1 and 65535")
    resync = os.environ.get("FABRIC_RESYNC_SECONDS", "30")
    try:
        positive_float(resync)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"FABRIC_RESYNC_SECONDS: {exc}")
    return UpSettings(
        layout=Layout.at(state_dir),
        api_port=args.port,
        clusters=clusters,
        external_kubeconfigs=external,
        legacy_dsn=os.environ.get("FABRIC_LEGACY_DSN") or None,
        resync_seconds=resync,
        log_format=args.log_format,
    )


def _is_label(name: str) -> bool:
    return len(name) <= CLUSTER_NAME_MAX and re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", name) is not None


