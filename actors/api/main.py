"""`bin/api` (`python -m actors.api`): settings from flags or FABRIC_* env vars, then run the actors.

Flags win over environment variables. A bad setting exits 2 with one line
(argparse's error). SIGTERM/SIGINT stop the actors in order and exit 0.
The bus is our broker (`--bus zmq`, the default), reached over CURVE only
(`--broker-key`, `--broker-public-key`), or NATS JetStream (`--bus jetstream`,
`--nats-*`); `transport.bus_choice` makes the connector of either. A bus that
refuses our credentials exits 2 with one line.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from actors.api.access import AccessSettings
from actors.api.app import ApiSettings, start_api
from actors.api.auth import load_or_create_admin_key
from actors.api.cache_backends import rebuild_target
from actors.api.driver import CACHE_CONSUMER
from actors.api.rebuild import rebuild_cache
from actors.api.relay import RelaySettings
from actors.runtime import ActorSystem, run_until_signalled
from actors.runtime.logging import configure_logging
from actors.runtime.loop import run as run_loop
from actors.runtime.settings import (
    LOG_SETTINGS,
    Setting,
    SettingsParser,
    bus_settings,
    host_port,
    positive_float,
    positive_int,
    settings_parser,
)
from core.bus import BusConnector
from transport.access import BusRefused
from transport.bus_choice import (
    BusSettingError,
    BusSettings,
    bus_from_args,
    check_access,
    connector_for,
)
from transport.curve import API


def _workers(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"expected an integer in 1..64, got {text!r}")
    return int(text)


def _postgres_dsn(text: str) -> str:
    if not text.startswith(("postgresql://", "postgres://")):
        raise argparse.ArgumentTypeError(f"expected a postgresql:// URL, got {text[:40]!r}")
    return text


SETTINGS = (
    Setting("--listen", "FABRIC_API_LISTEN", "HOST:PORT to serve on", type=host_port,
            default="127.0.0.1:8080"),
    Setting("--legacy-dsn", "FABRIC_LEGACY_DSN", "PostgreSQL DSN of the legacy database",
            type=_postgres_dsn, required="accounts are written there"),
    *bus_settings(API),
    Setting("--state-dir", "FABRIC_STATE_DIR", "directory for the query cache and admin.key",
            type=Path, required="the query cache and admin key live there"),
    Setting("--admin-key", "FABRIC_ADMIN_KEY", "admin API key (default: STATE_DIR/admin.key)"),
    Setting("--keys-file", "FABRIC_API_KEYS_FILE",
            "the API keys besides the admin key, as `fabric keys` writes them "
            "(default STATE_DIR/keys.json)", type=Path),
    Setting("--key-rate", "FABRIC_API_KEY_RATE", "calls per second each API key may make",
            type=positive_float, default="200"),
    Setting("--key-burst", "FABRIC_API_KEY_BURST", "calls a key may save up and make at once",
            type=positive_int, default="400"),
    Setting("--auth-fail-rate", "FABRIC_API_AUTH_FAIL_RATE",
            "requests with a wrong key per second per remote address before it gets 429",
            type=positive_float, default="10"),
    Setting("--auth-fail-burst", "FABRIC_API_AUTH_FAIL_BURST",
            "wrong-key requests an address may make at once", type=positive_int, default="100"),
    Setting("--relay-poll", "FABRIC_RELAY_POLL_SECONDS",
            "outbox safety-net poll interval in seconds", type=positive_float, default="1.0"),
    Setting("--retry-backoff-max", "FABRIC_RETRY_BACKOFF_MAX",
            "cap of the retry backoff in seconds", type=positive_float, default="2.0"),
    Setting("--directory-interval", "FABRIC_DIRECTORY_INTERVAL",
            "how often to refresh the cluster list from the bus, seconds", type=positive_float,
            default="2.0"),
    Setting("--workers", "FABRIC_API_WORKERS",
            "domain+legacy actor pairs, i.e. account writes to PostgreSQL in flight at once "
            "(1..64)", type=_workers, default="4"),
    Setting("--no-relay", "FABRIC_API_NO_RELAY", "do not run the outbox relay in this process",
            switch=True),
    Setting("--rebuild-cache", None,
            "read the whole bus log into a fresh query cache before serving", switch=True),
    Setting("--cache-dsn", "FABRIC_CACHE_DSN",
            "keep the query cache in this PostgreSQL database, shared by several API processes "
            "(default: STATE_DIR/cache.sqlite3)", type=_postgres_dsn),
    *LOG_SETTINGS,
)


def parser() -> SettingsParser:
    return settings_parser(
        "bin/api",
        "Fabric management API: JSON-RPC on POST /rpc, /healthz, /readyz, /metrics, the console at /.",
        SETTINGS,
    )


def settings_from(args: list[str] | None = None) -> tuple[argparse.Namespace, ApiSettings]:
    p = parser()
    ns = p.parse_settings(args)
    try:
        ns.state_dir.mkdir(parents=True, exist_ok=True)
        admin_key = ns.admin_key or load_or_create_admin_key(ns.state_dir)
    except OSError as exc:
        p.error(f"--state-dir {ns.state_dir}: {exc.strerror or exc}")
    host, port = ns.listen
    problem = _cannot_bind(host, port)
    if problem:
        p.error(f"--listen {host}:{port}: {problem}")
    try:
        ns.bus_settings = bus_from_args(ns, identity=API)
    except ValueError as exc:
        p.error(str(exc))
    try:
        ns.connector = connector_for(ns.bus_settings)
    except BusSettingError as exc:
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
        cache_dsn=ns.cache_dsn or None,
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
    bus: BusSettings = ns.bus_settings
    connector: BusConnector = ns.connector

    async def setup(system: ActorSystem) -> None:
        # In setup, not before: a SIGTERM during the (bounded) check still stops us cleanly.
        await _check_bus(bus)
        if ns.rebuild_cache:
            await rebuild_cache(connector, rebuild_target(settings.state_dir, settings.cache_dsn))
        await start_api(system, settings, connector)

    sys.exit(run_loop(_run(setup)))


async def _run(setup: Callable[[ActorSystem], Awaitable[None]]) -> int:
    code = 2
    try:
        code = await run_until_signalled(setup)
    except* BusRefused as group:
        print(f"bin/api: {group.exceptions[0]}", file=sys.stderr)
    return code


async def _check_bus(bus: BusSettings) -> None:
    """Raise `BusRefused` when the bus refuses our credentials or the `cache` consumer to us."""
    _ = await check_access(bus, CACHE_CONSUMER)
