"""What `fabric up` runs: one `ChildSpec` per child process, built from the settings.

Children start in stages (a stage starts once the one before is ready):
postgres (unless an outside DSN is given), the bus (our broker, or on the
JetStream bus a local `nats` unless an outside NATS cluster is given), kube
emulators, `api`, the other api replicas (`api-2` ... `api-N`), daemons. They stop
in the reverse order. Every address comes from `Ports`, so a restarted child
comes back where the others expect it.

Credentials: on the zmq bus every broker client gets its own CURVE certificate
(`DIR/keys/IDENTITY.key_secret`) and the broker's public one; the broker gets
its own and the keys dir as its allow-list. On the JetStream bus every client
gets its NATS user (its identity) and password file (`DIR/keys/IDENTITY.nats`).
Key and password paths travel on argv: they are file names, not secrets; DSNs
travel by environment, since they may hold a password.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import assert_never
from urllib.parse import urlsplit, urlunsplit

from actors.legacy.embedded import dsn as embedded_dsn
from actors.up.layout import Ports
from actors.up.options import UpSettings
from actors.up.probes import BrokerProbe, ConsumerProbe, DatabaseProbe, HttpProbe, Probe
from transport.bus_choice import BusSettings, JetStreamBus, ZmqBus
from transport.client import BrokerEndpoints
from transport.curve import API, cluster_identity

LOOPBACK = "127.0.0.1"
# The api replicas' shared query cache, on the legacy PostgreSQL unless --cache-dsn names one.
CACHE_DATABASE = "fabric_cache"


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to run and watch one child. `env` is evaluated at each (re)start."""

    name: str
    argv: tuple[str, ...]
    probe: Probe
    stage: int
    env: Callable[[], Mapping[str, str]] = field(default=dict)
    stop_signal: signal.Signals = signal.SIGTERM


def broker_endpoints(ports: Ports) -> BrokerEndpoints:
    return BrokerEndpoints(
        control=f"tcp://{LOOPBACK}:{ports.broker_control}",
        events=f"tcp://{LOOPBACK}:{ports.broker_events}",
        acks=f"tcp://{LOOPBACK}:{ports.broker_acks}",
    )


def api_url(ports: Ports, replica: int = 0) -> str:
    return f"http://{LOOPBACK}:{ports.api_port(replica)}"


def api_name(replica: int) -> str:
    """`api`, then `api-2` ... `api-N` (CONTRACT section 3)."""
    return "api" if replica == 0 else f"api-{replica + 1}"


def nats_servers(settings: UpSettings, ports: Ports) -> tuple[str, ...]:
    """The outside cluster's servers, or the local nats-server's URL."""
    return settings.nats_servers or (f"nats://{LOOPBACK}:{ports.nats}",)


def runs_local_nats(settings: UpSettings) -> bool:
    return settings.bus == "jetstream" and settings.nats_servers is None


def bus_for(settings: UpSettings, ports: Ports, identity: str) -> BusSettings:
    """How `identity` (`api`, `cluster-NAME`) reaches the bus `up` runs or was given."""
    layout = settings.layout
    if settings.bus == "jetstream":
        return JetStreamBus(nats_servers(settings, ports), user=identity,
                            password_file=layout.nats_password(identity), replicas=settings.nats_replicas)
    return ZmqBus(broker_endpoints(ports), layout.key_files(identity))


def cache_dsn(settings: UpSettings) -> str | None:
    """The query cache's DSN: the one given; with several api replicas, `CACHE_DATABASE` on
    the legacy PostgreSQL; else None (each api keeps its cache in SQLite)."""
    if not needs_cache_database(settings):
        return settings.cache_dsn
    assert settings.legacy_dsn is not None, "the legacy DSN is known before the children are planned"
    return with_database(settings.legacy_dsn, CACHE_DATABASE)


def with_database(dsn: str, database: str) -> str:
    """`dsn` with its database (the URL path) replaced."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def kubeconfig_for(settings: UpSettings, cluster: str) -> Path:
    return settings.external_kubeconfigs.get(cluster) or settings.layout.kubeconfig(cluster)


def endpoints_document(settings: UpSettings, ports: Ports) -> dict[str, object]:
    """DIR/endpoints.json, in the exact shape of CONTRACT section 3."""
    clusters: dict[str, object] = {}
    for name in settings.clusters:
        kube = ports.kubes.get(name)
        if name in settings.external_kubeconfigs:
            api = _server_of(settings.external_kubeconfigs[name])
        else:
            api = f"http://{LOOPBACK}:{kube.port}" if kube is not None else None
        clusters[name] = {
            "api": api,
            "kubeconfig": str(kubeconfig_for(settings, name)),
        }
    bus: dict[str, object] = (
        {"bus": "jetstream", "nats": list(nats_servers(settings, ports))}
        if settings.bus == "jetstream"
        else {"bus": "zmq", "broker": broker_endpoints(ports).to_dict()}
    )
    return {
        "api": api_url(ports),
        "apis": [api_url(ports, i) for i in range(settings.api_replicas)],
        **bus,
        "clusters": clusters,
        "metrics": metrics_urls(settings, ports),
    }


def metrics_children(settings: UpSettings) -> list[str]:
    """The children `up` gives a `--metrics-listen` port (the api serves /metrics on its own)."""
    return [*(["broker"] if settings.bus == "zmq" else []),
            *(f"daemon-{cluster}" for cluster in settings.clusters)]


def metrics_urls(settings: UpSettings, ports: Ports) -> dict[str, str]:
    """endpoints.json "metrics": CHILD -> its Prometheus /metrics URL, for every long-running
    child that serves one (a local nats-server's monitoring is JSON, not Prometheus: not listed)."""
    urls = {api_name(i): f"{api_url(ports, i)}/metrics" for i in range(settings.api_replicas)}
    for child in metrics_children(settings):
        if child in ports.metrics:
            urls[child] = f"http://{LOOPBACK}:{ports.metrics[child]}/metrics"
    return urls


def _metrics_flag(ports: Ports, child: str) -> tuple[str, ...]:
    port = ports.metrics.get(child)
    return () if port is None else ("--metrics-listen", f"{LOOPBACK}:{port}")


def _server_of(kubeconfig: Path) -> str | None:
    """The first cluster's `server:` in a kubeconfig (a plain scan: enough for display)."""
    try:
        match = re.search(r"^\s*server:\s*[\"']?([^\s\"']+)", kubeconfig.read_text(), re.MULTILINE)
    except OSError:
        return None
    return match.group(1) if match else None


def child_specs(
    settings: UpSettings,
    ports: Ports,
    *,
    admin_key: Callable[[], str],
    postgres: ChildSpec | None,
    nats_server: Path | None = None,
) -> list[ChildSpec]:
    """Every child in start order (stage, then name). `nats_server` is the binary of the
    local nats-server, needed only when `up` runs one."""
    layout = settings.layout
    py = sys.executable
    log = ("--log-format", settings.log_format)
    api_bus = bus_for(settings, ports, API)
    specs: list[ChildSpec] = []
    if postgres is not None:
        specs.append(postgres)
    if settings.bus == "zmq":
        endpoints = broker_endpoints(ports)
        specs.append(
            ChildSpec(
                name="broker",
                argv=(py, "-m", "actors.broker", "--data-dir", str(layout.broker_dir),
                      "--bind", str(endpoints), "--curve-secret", str(layout.broker_secret),
                      "--curve-clients", str(layout.keys_dir), *_metrics_flag(ports, "broker"),
                      *log),
                probe=BrokerProbe(api_bus),
                stage=1,
            )
        )
    elif runs_local_nats(settings):
        assert nats_server is not None, "a local nats-server needs its binary"
        specs.append(
            ChildSpec(
                name="nats",
                argv=(str(nats_server), "-c", str(layout.nats_config)),
                # /healthz answers 200 once JetStream, not just the port, is ready.
                probe=HttpProbe(f"http://{LOOPBACK}:{ports.nats_monitor}/healthz"),
                stage=1,
            )
        )
    for cluster in settings.clusters:
        if cluster in settings.external_kubeconfigs:
            continue
        kube = ports.kubes[cluster]
        specs.append(
            ChildSpec(
                name=f"kube-{cluster}",
                argv=(py, "-m", "actors.kube_emulator", "--data-dir", str(layout.kube_dir(cluster)),
                      "--listen", f"{LOOPBACK}:{kube.port}",
                      "--kubeconfig-out", str(layout.kubeconfig(cluster)),
                      f"--token={kube.token}", "--cluster-name", cluster, *log),
                probe=HttpProbe(f"http://{LOOPBACK}:{kube.port}/version", token=kube.token),
                stage=2,
            )
        )
    dsn = settings.legacy_dsn
    assert dsn is not None, "the legacy DSN is known before the children are planned"
    secrets = {"FABRIC_LEGACY_DSN": dsn}
    cache = cache_dsn(settings)
    if cache is not None:
        secrets["FABRIC_CACHE_DSN"] = cache
    # Every replica runs the outbox relay: the relays claim outbox rows with SKIP LOCKED, and
    # a row two of them publish anyway (one died before marking it) is stored once, the bus
    # deduplicating by event id, and its consumers guard by generation. So the outbox keeps
    # draining while any one replica is up, with no leader to elect.
    for replica in range(settings.api_replicas):
        specs.append(
            ChildSpec(
                name=api_name(replica),
                argv=(py, "-m", "actors.api", "--listen", f"{LOOPBACK}:{ports.api_port(replica)}",
                      *_bus_flags(api_bus),
                      # One state dir for all: they share the API keys file (`fabric keys`).
                      "--state-dir", str(layout.api_dir), *log),
                probe=HttpProbe(f"{api_url(ports, replica)}/readyz"),
                # The others once the first answers: on a fresh shared cache it resets the
                # `cache` consumer and replays; replicas starting beside it reset it again
                # while it reads, and on JetStream that race once left nats-server unable to
                # create the consumer at all (every CREATE failed on its meta file).
                stage=3 if replica == 0 else 4,
                # Secrets travel by environment, not argv, so `ps` does not show them.
                env=lambda: {"FABRIC_ADMIN_KEY": admin_key(), **secrets},
            )
        )
    for cluster in settings.clusters:
        bus = bus_for(settings, ports, cluster_identity(cluster))
        specs.append(
            ChildSpec(
                name=f"daemon-{cluster}",
                argv=(py, "-m", "actors.daemon", "--cluster", cluster,
                      "--kubeconfig", str(kubeconfig_for(settings, cluster)),
                      *_bus_flags(bus),
                      "--state-dir", str(layout.daemon_dir(cluster)),
                      "--resync", settings.resync_seconds,
                      *_metrics_flag(ports, f"daemon-{cluster}"), *log),
                probe=ConsumerProbe(api_bus, f"cluster:{cluster}"),
                stage=5,
            )
        )
    return specs


def _bus_flags(bus: BusSettings) -> tuple[str, ...]:
    match bus:
        case ZmqBus(endpoints=endpoints, keys=keys):
            return ("--bus", "zmq", "--broker", str(endpoints),
                    "--broker-key", str(keys.secret), "--broker-public-key", str(keys.server_public))
        case JetStreamBus():
            return ("--bus", "jetstream", "--nats-url", ",".join(bus.servers),
                    "--nats-replicas", str(bus.replicas), "--nats-user", bus.user,
                    "--nats-password-file", str(bus.password_file))
        case _:
            assert_never(bus)


def needs_cache_database(settings: UpSettings) -> bool:
    """True when `up` provides the replicas' cache database (`CACHE_DATABASE`) itself."""
    return settings.cache_dsn is None and settings.api_replicas > 1


def postgres_probe(settings: UpSettings, port: int) -> Probe:
    """Ready when it serves; with api replicas on it, once their cache database exists too."""
    return DatabaseProbe(embedded_dsn(port), CACHE_DATABASE if needs_cache_database(settings) else None)
