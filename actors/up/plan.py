"""What `fabric up` runs: one `ChildSpec` per child process, built from the settings.

Children start in stages (a stage starts once the one before is ready):
postgres (unless an outside DSN is given), broker, kube emulators, api, daemons.
They stop in the reverse order. Every address comes from `Ports`, so a
restarted child comes back where the others expect it. Every broker client
gets its own CURVE certificate (`DIR/keys/IDENTITY.key_secret`) and the
broker's public one; the broker gets its own and the keys dir as its
allow-list. Key paths travel on argv: they are file names, not secrets.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from actors.up.layout import Ports
from actors.up.options import UpSettings
from actors.up.probes import BrokerProbe, ConsumerProbe, HttpProbe, Probe, TcpProbe
from transport.client import BrokerEndpoints
from transport.curve import API, KeyFiles, cluster_identity

LOOPBACK = "127.0.0.1"


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


def api_url(ports: Ports) -> str:
    return f"http://{LOOPBACK}:{ports.api}"


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
    return {
        "api": api_url(ports),
        "broker": broker_endpoints(ports).to_dict(),
        "clusters": clusters,
    }


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
) -> list[ChildSpec]:
    """Every child in start order (stage, then name)."""
    layout = settings.layout
    py = sys.executable
    log = ("--log-format", settings.log_format)
    endpoints = broker_endpoints(ports)
    api_keys = layout.key_files(API)
    specs: list[ChildSpec] = []
    if postgres is not None:
        specs.append(postgres)
    specs.append(
        ChildSpec(
            name="broker",
            argv=(py, "-m", "actors.broker", "--data-dir", str(layout.broker_dir),
                  "--bind", str(endpoints), "--curve-secret", str(layout.broker_secret),
                  "--curve-clients", str(layout.keys_dir), *log),
            probe=BrokerProbe(endpoints, api_keys),
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
    specs.append(
        ChildSpec(
            name="api",
            argv=(py, "-m", "actors.api", "--listen", f"{LOOPBACK}:{ports.api}",
                  "--broker", str(endpoints), *_key_flags(api_keys),
                  "--state-dir", str(layout.api_dir), *log),
            probe=HttpProbe(f"{api_url(ports)}/readyz"),
            stage=3,
            # Secrets travel by environment, not argv, so `ps` does not show them.
            env=lambda: {"FABRIC_ADMIN_KEY": admin_key(), "FABRIC_LEGACY_DSN": dsn},
        )
    )
    for cluster in settings.clusters:
        specs.append(
            ChildSpec(
                name=f"daemon-{cluster}",
                argv=(py, "-m", "actors.daemon", "--cluster", cluster,
                      "--kubeconfig", str(kubeconfig_for(settings, cluster)),
                      "--broker", str(endpoints),
                      *_key_flags(layout.key_files(cluster_identity(cluster))),
                      "--state-dir", str(layout.daemon_dir(cluster)),
                      "--resync", settings.resync_seconds, *log),
                probe=ConsumerProbe(endpoints, f"cluster:{cluster}", api_keys),
                stage=4,
            )
        )
    return specs


def _key_flags(keys: KeyFiles) -> tuple[str, ...]:
    return ("--broker-key", str(keys.secret), "--broker-public-key", str(keys.server_public))


def postgres_probe(port: int) -> Probe:
    return TcpProbe(LOOPBACK, port)
