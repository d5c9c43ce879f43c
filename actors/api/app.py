"""Wiring of the API process: which actors exist, in what order, with what settings.

`start_api(system, settings, connector)` spawns, in order: cache, cluster
directory, outbox relay, `workers` pairs of legacy + domain actors, event
driver, HTTP. The system stops them in reverse, so the HTTP server stops taking
requests first and the stores close last. Each domain actor handles one
command at a time up to its legacy write's commit (its reply then waits for
the cache, the actor does not); several pairs let creates overlap their
database round trips (slug uniqueness is the database's, so they need not
coordinate).
API keys: the admin key plus those of the key file (`access.keys_file`,
default STATE_DIR/keys.json), followed live; `key.*` methods manage them.
The operator console (actors/api/console/) is mounted on the same HTTP
server; its sessions authenticate like their keys.
The main and the in-process tests both use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from actors.api.access import AccessSettings, Gate
from actors.api.auth import Clock, KeyRing
from actors.api.cache import CacheActor, CacheMessage, PingCache
from actors.api.cache_backends import CACHE_FILE as CACHE_FILE  # where main and tests find it
from actors.api.cache_backends import cache_opener
from actors.api.cache_memo import ReadMemo
from actors.api.clusters import ClusterDirectoryActor, DirectoryMessage, GetDirectory
from actors.api.console import Console, ConsoleSettings, Feeds, SessionStore
from actors.api.cursors import CursorCodec
from actors.api.domain import DomainActor, DomainMessage
from actors.api.driver import DriverMessage, EventDriverActor
from actors.api.http import GetAddress, HttpActor, HttpMessage, build_app
from actors.api.jsonrpc import Dispatcher, Method
from actors.api.key_methods import build_key_methods
from actors.api.keystore import KEYS_FILE
from actors.api.methods import Deps, build_table
from actors.api.metrics import ApiMetrics
from actors.api.relay import OutboxRelayActor, RelayMessage, RelaySettings
from actors.legacy.actor import LegacyActor, LegacyMessage, PingLegacy
from actors.runtime import ActorRef, ActorSystem, RestartPolicy
from core.bus import BusConnector


@dataclass(frozen=True, slots=True)
class ApiSettings:
    legacy_dsn: str
    state_dir: Path
    admin_key: str
    host: str = "127.0.0.1"
    port: int = 8080
    relay: RelaySettings = field(default_factory=RelaySettings)
    directory_interval: float = 2.0
    rpc_timeout: float = 10.0
    legacy_timeout: float = 5.0
    max_batch: int = 100
    relay_enabled: bool = True
    workers: int = 4
    access: AccessSettings = field(default_factory=AccessSettings)
    cache_dsn: str | None = None  # a shared PostgreSQL cache; None: STATE_DIR/cache.sqlite3
    console: ConsoleSettings = field(default_factory=ConsoleSettings)

    @property
    def keys_file(self) -> Path:
        return self.access.keys_file or self.state_dir / KEYS_FILE


@dataclass(frozen=True, slots=True)
class ApiHandles:
    http: ActorRef[HttpMessage]
    domain: ActorRef[DomainMessage]
    cache: ActorRef[CacheMessage]
    legacy: ActorRef[LegacyMessage]
    directory: ActorRef[DirectoryMessage]
    driver: ActorRef[DriverMessage]
    relay: ActorRef[RelayMessage] | None
    metrics: ApiMetrics
    gate: Gate
    methods: Mapping[str, Method]

    async def address(self) -> tuple[str, int]:
        return await self.http.ask(GetAddress())

    async def url(self) -> str:
        host, port = await self.address()
        return f"http://{host}:{port}"


async def start_api(
    system: ActorSystem, settings: ApiSettings, connector: BusConnector, *, clock: Clock = time.monotonic
) -> ApiHandles:
    """`clock` drives the rate limits and the key-file polling (tests pass a fake one)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    metrics = ApiMetrics()
    keys = KeyRing(settings.admin_key, settings.keys_file,
                   reload_interval=settings.access.reload_interval, clock=clock)
    sessions = SessionStore(keys, settings.console, clock=clock)
    gate = Gate(keys, settings.access, clock=clock, sessions=sessions)
    # Stores are restarted a few times quickly; past the budget the process exits non-zero.
    policy = RestartPolicy(max_restarts=10, window=30.0, backoff_initial=0.1, backoff_max=2.0)
    open_cache = cache_opener(settings.state_dir, settings.cache_dsn)
    memo = ReadMemo()
    cache = system.spawn(lambda: CacheActor(open_cache, memo), name="cache", policy=policy)
    directory = system.spawn(
        lambda: ClusterDirectoryActor(connector, metrics, interval=settings.directory_interval),
        name="directory", policy=policy,
    )
    relay = None
    if settings.relay_enabled:
        # Before the domain actors, which hand it each create, and stopped after them.
        relay = system.spawn(
            lambda: OutboxRelayActor(settings.legacy_dsn, connector, metrics, settings.relay),
            name="outbox-relay", policy=policy,
        )
    legacies: list[ActorRef[LegacyMessage]] = []
    domains: list[ActorRef[DomainMessage]] = []
    for i in range(max(1, settings.workers)):
        legacy_i = system.spawn(
            lambda: LegacyActor(settings.legacy_dsn, timeout=settings.legacy_timeout, pool_size=2),
            name=f"legacy-{i}", policy=policy,
        )
        legacies.append(legacy_i)
        domains.append(system.spawn(
            _domain_factory(legacy_i, cache, relay, settings.rpc_timeout), name=f"domain-{i}",
            policy=policy,
        ))
    legacy, domain = legacies[0], domains[0]
    driver = system.spawn(
        lambda: EventDriverActor(connector, cache, metrics, backoff_max=settings.relay.backoff_max,
                                 directory=directory),
        name="event-driver", policy=policy,
    )
    deps = Deps(tuple(domains), cache, directory, CursorCodec(keys.secret("cursor")),
                settings.rpc_timeout, memo)
    table = build_table(deps)
    table.update(build_key_methods(keys))  # rpc.discover documents the table it was built into
    dispatcher = Dispatcher(table, max_batch=settings.max_batch, observe=metrics.rpc.observe)

    async def readiness() -> dict[str, str]:
        checks: dict[str, str] = {}
        for name, probe in (("legacy", legacy.ask(PingLegacy(), timeout=2.0)),
                            ("cache", cache.ask(PingCache(), timeout=2.0))):
            try:
                await probe
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"down: {type(exc).__name__}"
        try:
            d = await directory.ask(GetDirectory(), timeout=2.0)
            checks["broker"] = "ok" if d.reachable else "down: not answering"
        except Exception as exc:
            checks["broker"] = f"down: {type(exc).__name__}"
        return checks

    console = Console(sessions, gate, Feeds(cache, directory, table, settings.rpc_timeout),
                      settings.console, settings.directory_interval)
    http = system.spawn(
        lambda: HttpActor(lambda: console.mount(build_app(dispatcher, gate, metrics, readiness)),
                          settings.host, settings.port),
        name="http", policy=policy,
    )
    return ApiHandles(http, domain, cache, legacy, directory, driver, relay, metrics, gate, table)


def _domain_factory(
    legacy: ActorRef[LegacyMessage], cache: ActorRef[CacheMessage],
    relay: ActorRef[RelayMessage] | None, timeout: float,
) -> Callable[[], DomainActor]:
    return lambda: DomainActor(legacy, cache, relay=relay, timeout=timeout)
