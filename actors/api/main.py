"""`bin/api` (`python -m actors.api`): settings from flags or FABRIC_* env vars, then run the actors.

Flags win over environment variables. A bad setting exits 2 with one line
(argparse's error). SIGTERM/SIGINT stop the actors in order and exit 0.
The broker is reached over CURVE only (`--broker-key`, `--broker-public-key`);
a broker that refuses our key exits 2 with one line (`transport.access`).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from actors.api.access import AccessSettings
from actors.api.app import CACHE_FILE, ApiSettings, start_api
from actors.api.auth import load_or_create_admin_key
from actors.api.driver import CACHE_CONSUMER
from actors.api.rebuild import rebuild_cache
from actors.api.relay import RelaySettings
from actors.runtime import ActorSystem, run_until_signalled
from actors.runtime.logging import configure_logging
from actors.runtime.settings import (
    add_logging_flags,
    broker_endpoints,
    env,
    host_port,
    positive_float,
    positive_int,
)
from transport.access import BusRefused, check_access
from transport.connector import BrokerConnector
from transport.curve import KeyFileError, KeyFiles
from transport.sockets import ClientKeys, close_context, new_context


def _workers(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"expected an integer in 1..64, got {text!r}")
    return int(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bin/api",
        description="Fabric management API: JSON-RPC on POST /rpc, /healthz, /readyz, /metrics.",
    )
    p.add_argument("--listen", type=host_port, default=env("FABRIC_API_LISTEN", "127.0.0.1:8080"),
                   help="HOST:PORT to serve on (FABRIC_API_LISTEN, default 127.0.0.1:8080)")
    p.add_argument("--legacy-dsn", default=env("FABRIC_LEGACY_DSN"),
                   help="PostgreSQL DSN of the legacy database (FABRIC_LEGACY_DSN)")
    p.add_argument("--broker", type=broker_endpoints, default=env("FABRIC_BROKER"),
                   help="broker CONTROL,EVENTS,ACKS addresses (FABRIC_BROKER)")
    p.add_argument("--broker-key", type=Path, default=env("FABRIC_BROKER_KEY"),
                   help="this process's CURVE certificate with its secret key, e.g. "
                        "DIR/keys/api.key_secret (FABRIC_BROKER_KEY)")
    p.add_argument("--broker-public-key", type=Path, default=env("FABRIC_BROKER_PUBLIC_KEY"),
                   help="the broker's public CURVE certificate, e.g. DIR/keys/broker.key "
                        "(FABRIC_BROKER_PUBLIC_KEY)")
    p.add_argument("--state-dir", type=Path, default=env("FABRIC_STATE_DIR"),
                   help="directory for the query cache and admin.key (FABRIC_STATE_DIR)")
    p.add_argument("--admin-key", default=env("FABRIC_ADMIN_KEY"),
                   help="admin API key (FABRIC_ADMIN_KEY; else STATE_DIR/admin.key)")
    p.add_argument("--keys-file", type=Path, default=env("FABRIC_API_KEYS_FILE"),
                   help="the API keys besides the admin key, as `fabric keys` writes them "
                        "(FABRIC_API_KEYS_FILE, default STATE_DIR/keys.json)")
    p.add_argument("--key-rate", type=positive_float, default=env("FABRIC_API_KEY_RATE", "200"),
                   help="calls per second each API key may make (FABRIC_API_KEY_RATE, default 200)")
    p.add_argument("--key-burst", type=positive_int, default=env("FABRIC_API_KEY_BURST", "400"),
                   help="calls a key may save up and make at once (FABRIC_API_KEY_BURST, default 400)")
    p.add_argument("--auth-fail-rate", type=positive_float,
                   default=env("FABRIC_API_AUTH_FAIL_RATE", "10"),
                   help="requests with a wrong key per second per remote address before it gets "
                        "429 (FABRIC_API_AUTH_FAIL_RATE, default 10)")
    p.add_argument("--auth-fail-burst", type=positive_int,
                   default=env("FABRIC_API_AUTH_FAIL_BURST", "100"),
                   help="wrong-key requests an address may make at once (FABRIC_API_AUTH_FAIL_BURST, "
                        "default 100)")
    p.add_argument("--relay-poll", type=positive_float,
                   default=env("FABRIC_RELAY_POLL_SECONDS", "1.0"),
                   help="outbox safety-net poll interval in seconds (FABRIC_RELAY_POLL_SECONDS)")
    p.add_argument("--retry-backoff-max", type=positive_float,
                   default=env("FABRIC_RETRY_BACKOFF_MAX", "2.0"),
                   help="cap of the retry backoff in seconds (FABRIC_RETRY_BACKOFF_MAX)")
    p.add_argument("--directory-interval", type=positive_float,
                   default=env("FABRIC_DIRECTORY_INTERVAL", "2.0"),
                   help="how often to refresh the cluster list from the broker (FABRIC_DIRECTORY_INTERVAL)")
    p.add_argument("--workers", type=_workers, default=env("FABRIC_API_WORKERS", "4"),
                   help="domain+legacy actor pairs, i.e. creates in flight at once (FABRIC_API_WORKERS)")
    p.add_argument("--no-relay", action="store_true",
                   default=env("FABRIC_API_NO_RELAY", "") in ("1", "true", "yes"),
                   help="do not run the outbox relay in this process (FABRIC_API_NO_RELAY=1)")
    p.add_argument("--rebuild-cache", action="store_true",
                   help="read the whole bus log into a fresh query cache before serving")
    add_logging_flags(p)
    return p


def settings_from(args: list[str] | None = None) -> tuple[argparse.Namespace, ApiSettings]:
    p = parser()
    ns = p.parse_args(args)
    # argparse runs string defaults (the env values) through `type` too, so both are checked.
    if not ns.legacy_dsn:
        p.error("--legacy-dsn (or FABRIC_LEGACY_DSN) is required")
    if not ns.legacy_dsn.startswith(("postgresql://", "postgres://")):
        p.error("--legacy-dsn: expected a postgresql:// URL")
    if ns.broker is None:
        p.error("--broker (or FABRIC_BROKER) is required")
    if ns.state_dir is None:
        p.error("--state-dir (or FABRIC_STATE_DIR) is required")
    try:
        ns.state_dir.mkdir(parents=True, exist_ok=True)
        admin_key = ns.admin_key or load_or_create_admin_key(ns.state_dir)
    except OSError as exc:
        p.error(f"--state-dir {ns.state_dir}: {exc.strerror or exc}")
    host, port = ns.listen
    problem = _cannot_bind(host, port)
    if problem:
        p.error(f"--listen {host}:{port}: {problem}")
    if ns.broker_key is None or ns.broker_public_key is None:
        p.error("--broker-key and --broker-public-key (or FABRIC_BROKER_KEY and "
                "FABRIC_BROKER_PUBLIC_KEY) are required: the broker takes CURVE clients only")
    try:
        ns.broker_keys = KeyFiles(ns.broker_key, ns.broker_public_key).load()
    except KeyFileError as exc:
        p.error(str(exc))
    settings = ApiSettings(
        legacy_dsn=ns.legacy_dsn,
        state_dir=ns.state_dir,
        admin_key=admin_key,
        host=host,
        port=port,
        relay=RelaySettings(poll_interval=ns.relay_poll, backoff_max=ns.retry_backoff_max),
        directory_interval=ns.directory_interval,
        relay_enabled=not ns.no_relay,
        workers=ns.workers,
        access=AccessSettings(
            keys_file=ns.keys_file,
            key_rate=ns.key_rate,
            key_burst=ns.key_burst,
            fail_rate=ns.auth_fail_rate,
            fail_burst=ns.auth_fail_burst,
        ),
    )
    return ns, settings


def _cannot_bind(host: str, port: int) -> str | None:
    """Why host:port cannot be served on (in use, unknown host), checked before any actor starts."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def main(args: list[str] | None = None) -> None:
    ns, settings = settings_from(args)
    configure_logging(ns.log_format, ns.log_level, process="api")
    keys: ClientKeys = ns.broker_keys
    connector = BrokerConnector(ns.broker, keys=keys)

    async def setup(system: ActorSystem) -> None:
        # In setup, not before: a SIGTERM during the (bounded) check still stops us cleanly.
        await _check_broker(ns, keys)
        if ns.rebuild_cache:
            await rebuild_cache(connector, settings.state_dir / CACHE_FILE)
        await start_api(system, settings, connector)

    sys.exit(asyncio.run(_run(setup)))


async def _run(setup: Callable[[ActorSystem], Awaitable[None]]) -> int:
    code = 2
    try:
        code = await run_until_signalled(setup)
    except* BusRefused as group:
        print(f"bin/api: {group.exceptions[0]}", file=sys.stderr)
    return code


async def _check_broker(ns: argparse.Namespace, keys: ClientKeys) -> None:
    """Raise `BusRefused` when the broker refuses our key or the `cache` consumer to it."""
    ctx = new_context()
    try:
        _ = await check_access(ctx, ns.broker, keys, consumer=CACHE_CONSUMER)
    finally:
        close_context(ctx)
