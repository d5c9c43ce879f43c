"""Where `fabric up` keeps everything under its state dir, and the files it owns there.

Contract (CONTRACT.md section 3):

- `ports.json`: the loopback ports chosen on the first run, reused on every
  restart and resume, so children come back on the same addresses. A cluster
  name seen for the first time gets new ports, appended.
- `admin.key` (mode 0600): generated once unless `FABRIC_ADMIN_KEY` is set.
- `api/keys.json` (mode 0600): the other API keys, by hash (actors/api/keystore.py);
  the api's state dir is `api/`, so it reads them there.
- `keys/` (mode 0700): CurveZMQ certificates in pyzmq's format (CONTRACT section 6),
  `NAME.key` and `NAME.key_secret` (0600) for `broker`, `api` and `cluster-NAME` of
  every cluster; made once each, so a cluster new to a later run gets its pair and
  the others keep theirs. The broker's allow-list is this directory (it skips its
  own certificate).
- on the JetStream bus, `keys/IDENTITY.nats` (0600): the NATS password of `api`
  and of each `cluster-NAME` (made once each, like the CURVE pairs); a local
  nats-server's config is `nats/nats.conf` and its store `nats/data/`.
- `endpoints.json`: every address in use, in the contract's exact shape.
- `run/NAME.pid`, `logs/NAME.log`, `ready`, and the children's data dirs.

Only file I/O, no processes: the supervisor actors decide when to write.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.api.keystore import KEYS_FILE
from actors.runtime.files import write_atomic
from transport.curve import (
    API,
    BROKER,
    IDENTITY,
    KeyFiles,
    cluster_identity,
    ensure_certificate,
    public_file,
    secret_file,
)
from transport.ports import free_port

ADMIN_KEY_ENV = "FABRIC_ADMIN_KEY"
# bin/fabric runs from the repository root; a launcher that knows the caller's directory
# exports it here so relative paths on the command line mean what the caller meant.
CALLER_CWD_ENV = "FABRIC_CALLER_CWD"


def from_caller(path: str, env: Mapping[str, str] = os.environ) -> Path:
    """A path given on the command line, relative to the caller's directory when known."""
    p = Path(path).expanduser()
    caller = env.get(CALLER_CWD_ENV)
    return Path(caller) / p if caller and not p.is_absolute() else p


@dataclass(frozen=True, slots=True)
class Layout:
    """Paths under one state dir (absolute)."""

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> Layout:
        return cls(Path(root).expanduser().resolve())

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def ports_file(self) -> Path:
        return self.root / "ports.json"

    @property
    def endpoints_file(self) -> Path:
        return self.root / "endpoints.json"

    @property
    def admin_key_file(self) -> Path:
        return self.root / "admin.key"

    @property
    def keys_file(self) -> Path:
        """The API keys besides the admin key: the api's STATE_DIR/keys.json."""
        return self.api_dir / KEYS_FILE

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    def key_files(self, identity: str) -> KeyFiles:
        """A client's certificate (`identity`.key_secret) and the broker's public one."""
        return KeyFiles(secret_file(self.keys_dir, identity), public_file(self.keys_dir, BROKER))

    @property
    def broker_secret(self) -> Path:
        return secret_file(self.keys_dir, BROKER)

    @property
    def ready_file(self) -> Path:
        return self.root / "ready"

    @property
    def lock_file(self) -> Path:
        return self.root / "up.lock"

    @property
    def broker_dir(self) -> Path:
        return self.root / "broker"

    @property
    def api_dir(self) -> Path:
        return self.root / "api"

    @property
    def nats_dir(self) -> Path:
        return self.root / "nats"

    @property
    def nats_config(self) -> Path:
        return self.nats_dir / "nats.conf"

    @property
    def nats_store(self) -> Path:
        return self.nats_dir / "data"

    def nats_password(self, identity: str) -> Path:
        return self.keys_dir / f"{identity}.nats"

    @property
    def postgres_dir(self) -> Path:
        return self.root / "postgres"

    def daemon_dir(self, cluster: str) -> Path:
        return self.root / "daemons" / cluster

    def kube_dir(self, cluster: str) -> Path:
        return self.root / "clusters" / cluster

    def kubeconfig(self, cluster: str) -> Path:
        return self.root / "clusters" / f"{cluster}.kubeconfig"

    def pid_file(self, child: str) -> Path:
        return self.run_dir / f"{child}.pid"

    def log_file(self, child: str) -> Path:
        return self.log_dir / f"{child}.log"

    def prepare(self) -> None:
        for d in (self.root, self.run_dir, self.log_dir, self.root / "clusters", self.root / "daemons"):
            d.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True, slots=True)
class KubePorts:
    port: int
    token: str


@dataclass(frozen=True, slots=True)
class Ports:
    """Every loopback port (and emulator token) of one state dir; stable across runs."""

    postgres: int
    broker_control: int
    broker_events: int
    broker_acks: int
    api: int
    kubes: dict[str, KubePorts]
    # The local nats-server's client and monitoring ports (0: not chosen yet, an older state dir).
    nats: int = 0
    nats_monitor: int = 0
    metrics: dict[str, int] = field(default_factory=dict)  # child name -> its --metrics-listen port

    def api_port(self, replica: int) -> int:
        """Replica `replica` (0-based) listens on consecutive ports from the API port."""
        return self.api + replica

    def children(self) -> set[int]:
        """Every port named here but the API's (0: not chosen yet, left out)."""
        named = {
            self.postgres, self.broker_control, self.broker_events, self.broker_acks,
            self.nats, self.nats_monitor, *(k.port for k in self.kubes.values()),
            *self.metrics.values(),
        }
        named.discard(0)
        return named

    def to_json(self) -> dict[str, Any]:
        return {
            "postgres": self.postgres,
            "broker": {
                "control": self.broker_control,
                "events": self.broker_events,
                "acks": self.broker_acks,
            },
            "api": self.api,
            "kubes": {n: {"port": k.port, "token": k.token} for n, k in self.kubes.items()},
            "metrics": dict(self.metrics),
            "nats": {"client": self.nats, "monitor": self.nats_monitor},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ports:
        broker = data["broker"]
        nats = dict(data.get("nats", {}))
        return cls(
            postgres=int(data["postgres"]),
            broker_control=int(broker["control"]),
            broker_events=int(broker["events"]),
            broker_acks=int(broker["acks"]),
            api=int(data["api"]),
            kubes={
                str(n): KubePorts(int(k["port"]), str(k["token"]))
                for n, k in dict(data.get("kubes", {})).items()
            },
            nats=int(nats.get("client", 0)),
            nats_monitor=int(nats.get("monitor", 0)),
            metrics={str(n): int(p) for n, p in dict(data.get("metrics", {})).items()},
        )


class LayoutError(Exception):
    """A state-dir file is unreadable or inconsistent; the message says which and why."""


def load_or_allocate_ports(
    layout: Layout, *, api_port: int | None, kube_clusters: list[str],
    metrics_children: Iterable[str] = (), api_replicas: int = 1,
) -> Ports:
    """Read ports.json (or choose ports), add new clusters and metrics listeners (a port for
    each of `metrics_children` that has none yet), honour an explicit --port; persist.

    A new port is never one the state dir already names, nor the API's (`api_replicas`
    consecutive ports from --port): none of those is bound while `up` starts, so each
    looks free, and a child given one would take it from the server it belongs to."""
    current: Ports | None = None
    if layout.ports_file.exists():
        try:
            current = Ports.from_json(json.loads(layout.ports_file.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise LayoutError(f"{layout.ports_file} is not a valid ports file ({exc}); remove it")
    api = api_port if api_port is not None else 8080 if current is None else current.api
    taken = set(range(api, api + max(1, api_replicas)))
    if current is not None:
        taken |= current.children()

    def new_port() -> int:
        port = free_port(avoid=taken)
        taken.add(port)
        return port

    if current is None:
        current = Ports(
            postgres=new_port(),
            broker_control=new_port(),
            broker_events=new_port(),
            broker_acks=new_port(),
            api=api,
            kubes={},
        )
    kubes = dict(current.kubes)
    for name in kube_clusters:
        if name not in kubes:
            kubes[name] = KubePorts(new_port(), secrets.token_urlsafe(24))
    metrics = dict(current.metrics)
    for child in metrics_children:
        if child not in metrics:
            metrics[child] = new_port()
    ports = Ports(
        postgres=current.postgres,
        broker_control=current.broker_control,
        broker_events=current.broker_events,
        broker_acks=current.broker_acks,
        api=api,
        kubes=kubes,
        nats=current.nats or new_port(),
        nats_monitor=current.nats_monitor or new_port(),
        metrics=metrics,
    )
    write_atomic(layout.ports_file, json.dumps(ports.to_json(), indent=2) + "\n", mode=0o600)
    return ports


def admin_key(layout: Layout, env: dict[str, str] | os._Environ[str]) -> str:
    """FABRIC_ADMIN_KEY when set, else the key kept in admin.key (generated on first use)."""
    from_env = env.get(ADMIN_KEY_ENV, "").strip()
    if from_env:
        return from_env
    existing = read_admin_key(layout)
    if existing:
        return existing
    return rotate_admin_key(layout)


def read_admin_key(layout: Layout) -> str | None:
    try:
        text = layout.admin_key_file.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def rotate_admin_key(layout: Layout) -> str:
    key = secrets.token_urlsafe(32)
    write_atomic(layout.admin_key_file, key + "\n", mode=0o600)
    return key


def ensure_keys(layout: Layout, clusters: tuple[str, ...]) -> list[str]:
    """A CURVE pair for the broker, the api and each cluster's daemon; returns the new ones."""
    layout.keys_dir.mkdir(mode=0o700, exist_ok=True)
    layout.keys_dir.chmod(0o700)
    identities = [BROKER, API, *(cluster_identity(c) for c in clusters)]
    return [name for name in identities if ensure_certificate(layout.keys_dir, name)]


def ensure_nats_credentials(layout: Layout, clusters: tuple[str, ...]) -> dict[str, str]:
    """A NATS password for the api and each cluster's daemon (made once each), by identity."""
    layout.keys_dir.mkdir(mode=0o700, exist_ok=True)
    layout.keys_dir.chmod(0o700)
    return ensure_credentials(layout.keys_dir, [API, *(cluster_identity(c) for c in clusters)])


def ensure_credentials(keys_dir: Path, identities: Iterable[str]) -> dict[str, str]:
    """Each identity's NATS password, written once to `KEYS/IDENTITY.nats` (0600) when missing."""
    # Imported here, as below: `up` on the zmq bus never loads the NATS modules.
    from transport.jetstream.identities import load_password, new_password, password_file
    keys_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    for identity in identities:
        if not IDENTITY.fullmatch(identity):
            raise ValueError(f"not an identity: {identity!r}")
        path = password_file(keys_dir, identity)
        if not path.exists():
            write_atomic(path, new_password() + "\n", mode=0o600)
        out[identity] = load_password(path)
    return out


def write_server_config(path: Path, **config: Any) -> None:
    """A nats-server config (`transport.jetstream.server.server_config`'s arguments), 0600: it
    holds the users' passwords."""
    from transport.jetstream.server import server_config
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, server_config(**config), mode=0o600)


def write_nats_config(
    layout: Layout, users: dict[str, str], *, host: str, port: int, monitor_port: int
) -> None:
    """The local nats-server's config, rewritten at each start so a new cluster's user is in it."""
    layout.nats_store.mkdir(parents=True, exist_ok=True)
    write_server_config(layout.nats_config, host=host, port=port, store_dir=layout.nats_store,
                        users=users, server_name="fabric", monitor_port=monitor_port)


def write_endpoints(layout: Layout, endpoints: dict[str, Any]) -> None:
    write_atomic(layout.endpoints_file, json.dumps(endpoints, indent=2) + "\n")


def read_endpoints(layout: Layout) -> dict[str, Any] | None:
    try:
        data = json.loads(layout.endpoints_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_pid(layout: Layout, child: str, pid: int) -> None:
    write_atomic(layout.pid_file(child), f"{pid}\n")


def remove_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
