"""`fabric nats config`: one node's nats-server configuration for an operator's own NATS cluster.

    fabric nats config --clusters a,b --server-name n1 [--listen 0.0.0.0:4222]
        [--monitor-port 8222] [--store-dir /var/lib/nats] [--cluster-listen 0.0.0.0:6222]
        [--routes nats://n2:6222,nats://n3:6222] [--out FILE] [--state-dir DIR]

Every node of a cluster must know the same users (`api`, `cluster-NAME`) with
the same passwords and permissions. The passwords are the ones `fabric up
--bus jetstream` uses, in `DIR/keys/IDENTITY.nats`: made once when missing,
never replaced, so running this for each node (or again later) gives the same
users. The text is `transport.jetstream.server.server_config`'s, the renderer
`fabric up` uses for its local nats-server. Without `--routes` and
`--cluster-listen` it is a single node's config.

It holds passwords: `--out` writes it atomically with mode 0600; printed to a
terminal, a line on stderr says so. Exit codes: 0 written, 1 the keys or the
file could not be written (reason on stderr), 2 a flag is wrong (one line).
"""

from __future__ import annotations

import argparse
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TextIO

from actors.runtime.files import write_atomic
from actors.runtime.settings import host_port
from actors.up.layout import Layout, ensure_nats_credentials, from_caller
from actors.up.options import CLUSTER_NAME_MAX
from transport.curve import IDENTITY, cluster_identity
from transport.jetstream.server import server_config

PROG = "fabric nats config"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
DEFAULT_LISTEN = "0.0.0.0:4222"
DEFAULT_MONITOR_PORT = "8222"
DEFAULT_STORE_DIR = "/var/lib/nats"
DEFAULT_CLUSTER_PORT = 6222
ROUTE_SCHEMES = ("nats", "nats-route")
# nats-server refuses a server name with spaces; the rest keeps it a plain word in logs and URLs.
SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One node's validated flags."""

    clusters: tuple[str, ...]
    server_name: str
    host: str
    port: int
    monitor_port: int
    store_dir: PurePosixPath  # a path on the NATS node, not on this machine: never resolved here
    cluster_port: int | None
    routes: tuple[str, ...]
    out: Path | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags as plain strings: `node_config` checks them, so a bad one is one line, exit 2."""
    parser.add_argument("--clusters", required=True, metavar="A,B",
                        help="comma-separated cluster names, as given to `fabric up --clusters`")
    parser.add_argument("--server-name", required=True, metavar="NAME",
                        help="this node's name, unique in the cluster")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help=f"HOST:PORT for clients (default {DEFAULT_LISTEN}); "
                        "HOST also serves monitoring and routes")
    parser.add_argument("--monitor-port", default=DEFAULT_MONITOR_PORT, metavar="PORT",
                        help=f"HTTP monitoring port, /healthz (default {DEFAULT_MONITOR_PORT})")
    parser.add_argument("--store-dir", default=DEFAULT_STORE_DIR, metavar="DIR",
                        help=f"JetStream's store on the node, absolute (default {DEFAULT_STORE_DIR})")
    parser.add_argument("--cluster-listen", metavar="HOST:PORT",
                        help=f"HOST:PORT for routes from the other nodes (default with --routes: "
                        f"--listen's host, port {DEFAULT_CLUSTER_PORT})")
    parser.add_argument("--routes", metavar="URL,URL",
                        help="comma-separated nats://HOST:PORT of the other nodes' routes")
    parser.add_argument("--out", metavar="FILE", help="write the config here (mode 0600) instead of stdout")


def node_config(args: argparse.Namespace) -> NodeConfig:
    """Validate the flags; ValueError with one sentence naming the flag."""
    clusters = _clusters(str(args.clusters))
    server_name = str(args.server_name)
    if not SERVER_NAME.fullmatch(server_name):
        raise ValueError(f"--server-name: {server_name!r} is not a name of letters, digits, "
                         "'.', '_' and '-' (at most 64)")
    host, port = _host_port("--listen", str(args.listen))
    monitor_port = _port("--monitor-port", str(args.monitor_port))
    store_dir = PurePosixPath(str(args.store_dir))
    if not store_dir.is_absolute():
        raise ValueError(f"--store-dir: {str(store_dir)!r} is not an absolute path "
                         "(a relative one would depend on the server's working directory)")
    routes = _routes(str(args.routes)) if args.routes is not None else ()
    cluster_port: int | None = None
    if args.cluster_listen is not None:
        cluster_host, cluster_port = _host_port("--cluster-listen", str(args.cluster_listen))
        if cluster_host != host:
            # `server_config` binds clients, monitoring and routes to one host.
            raise ValueError(f"--cluster-listen: its host must be --listen's ({host}), "
                             f"not {cluster_host}")
    elif routes:
        cluster_port = DEFAULT_CLUSTER_PORT
    ports = [port, monitor_port, *([] if cluster_port is None else [cluster_port])]
    if len(set(ports)) != len(ports):
        raise ValueError("--listen, --monitor-port and --cluster-listen: each needs its own port")
    return NodeConfig(
        clusters=clusters, server_name=server_name, host=host, port=port,
        monitor_port=monitor_port, store_dir=store_dir, cluster_port=cluster_port,
        routes=routes, out=from_caller(str(args.out)) if args.out else None,
    )


def render(node: NodeConfig, users: dict[str, str]) -> str:
    # An IPv6 host goes back into brackets: the renderer writes HOST:PORT as given.
    host = f"[{node.host}]" if ":" in node.host else node.host
    return server_config(
        host=host, port=node.port, store_dir=Path(node.store_dir), users=users,
        server_name=node.server_name, cluster_port=node.cluster_port, routes=node.routes,
        monitor_port=node.monitor_port,
    )


def config(args: argparse.Namespace, layout: Layout, out: TextIO, err: TextIO) -> int:
    """`fabric nats config`: ensure the users' passwords under `layout`, print or write the config."""
    try:
        node = node_config(args)
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=err)
        return EXIT_USAGE
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
        users = ensure_nats_credentials(layout, node.clusters)
    except (OSError, ValueError) as exc:
        print(f"{PROG}: cannot prepare the NATS passwords in {layout.keys_dir}: {exc}", file=err)
        return EXIT_FAILED
    text = render(node, users)
    if node.out is None:
        out.write(text)
        if _is_terminal(out):
            print(f"{PROG}: this config holds the NATS users' passwords (from {layout.keys_dir}); "
                  "keep it private, or write it with --out FILE (mode 0600)", file=err)
        return EXIT_OK
    try:
        node.out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(node.out, text, mode=0o600)
    except OSError as exc:
        print(f"{PROG}: cannot write {node.out}: {exc.strerror or exc}", file=err)
        return EXIT_FAILED
    print(f"{PROG}: wrote {node.out} (mode 0600: it holds the NATS users' passwords)", file=err)
    return EXIT_OK


def _clusters(text: str) -> tuple[str, ...]:
    clusters = tuple(c.strip() for c in text.split(",") if c.strip())
    if not clusters:
        raise ValueError("--clusters: give at least one cluster name")
    for name in clusters:
        # The identity's pattern is the cluster name rule `fabric up --clusters` applies.
        if not IDENTITY.fullmatch(cluster_identity(name)):
            raise ValueError(f"--clusters: {name!r} is not a DNS-1123 label of at most "
                             f"{CLUSTER_NAME_MAX} characters")
    if len(set(clusters)) != len(clusters):
        raise ValueError("--clusters: a name is repeated")
    return clusters


def _port(flag: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{flag}: expected a port between 1 and 65535, got {text!r}")
    return int(text)


def _host_port(flag: str, text: str) -> tuple[str, int]:
    try:
        host, port = host_port(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"{flag}: {exc}") from None
    if not host:
        raise ValueError(f"{flag}: expected HOST:PORT, got {text!r}")
    return host, _port(flag, str(port))


def _routes(text: str) -> tuple[str, ...]:
    routes = tuple(r.strip() for r in text.split(",") if r.strip())
    if not routes:
        raise ValueError("--routes: give at least one nats://HOST:PORT")
    for route in routes:
        try:
            parts = urllib.parse.urlsplit(route)
            port = parts.port
        except ValueError:
            port = None
            parts = urllib.parse.urlsplit("")
        if (parts.scheme not in ROUTE_SCHEMES or not parts.hostname or port is None
                or not 0 < port < 65536 or parts.path not in ("", "/") or parts.query
                or parts.fragment):
            raise ValueError(f"--routes: expected nats://HOST:PORT, got {route!r}")
    return routes


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False
