"""bin/daemon: one cluster's daemon process.

Parses settings (exit 2 with one line on a bad one), locks the state dir (one
daemon per state dir), checks the kubeconfig loads (exit 2 with one line if
not), then runs the `ClusterDaemon` actor until SIGTERM/SIGINT. It reaches the
bus through the `core.bus.BusConnector` that `transport.bus_choice` makes for
its settings (our broker or JetStream) and its cluster through
`kube.KubeCluster`. The bus and the Kubernetes API may be down at start: the
daemon starts anyway and keeps retrying, logging what it waits for. A bus that
is up but refuses this daemon's credentials, or its consumer `cluster:NAME` to
that identity, is no reason to wait: the daemon exits 2 with one line within a
few seconds; so does a credential file it cannot read.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import structlog

from actors.daemon import metrics
from actors.daemon.dispatcher import ClusterDaemon, DaemonPorts
from actors.daemon.kube import KubeCluster, KubeConfigError, load_configuration
from actors.daemon.settings import DaemonSettings, parse_settings
from actors.runtime import ActorSystem, RestartPolicy, run_until_signalled
from actors.runtime.logging import configure_logging
from actors.runtime.loop import run as run_loop
from actors.runtime.metrics_server import serve_metrics
from transport.access import BusRefused
from transport.bus_choice import BusSettingError, BusSettings, check_access, connector_for


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    configure_logging(
        "console" if settings.log_format == "console" else "json",
        settings.log_level,
        process=f"daemon-{settings.cluster}",
    )
    # Loopback API servers must never go through an HTTP proxy from the environment.
    no_proxy = os.environ.get("NO_PROXY", "")
    if "127.0.0.1" not in no_proxy:
        os.environ["NO_PROXY"] = ",".join(p for p in (no_proxy, "127.0.0.1,localhost") if p)
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        lock = (settings.state_dir / "daemon.lock").open("a")
    except OSError as exc:
        print(f"daemon: cannot use state dir {settings.state_dir}: {exc.strerror}", file=sys.stderr)
        return 2
    with lock:
        try:
            # Held until the process ends (the kernel drops it even on SIGKILL).
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            print(
                f"daemon: another daemon is running with state dir {settings.state_dir}",
                file=sys.stderr,
            )
            return 2
        return run_loop(_run(settings))


async def _run(settings: DaemonSettings) -> int:
    try:
        kube_cfg = await load_configuration(settings.kubeconfig, settings.kube_context)
    except KubeConfigError as exc:
        print(f"daemon: {exc}", file=sys.stderr)
        return 2
    bus = settings.bus
    assert bus is not None, "parse_settings requires the bus settings"
    try:
        connector = connector_for(bus)
    except BusSettingError as exc:
        print(f"daemon: {exc}", file=sys.stderr)
        return 2

    @asynccontextmanager
    async def ports() -> AsyncIterator[DaemonPorts]:
        async with KubeCluster(
            kube_cfg, timeout=settings.request_timeout, metrics=metrics.for_cluster(settings.cluster)
        ) as cluster:
            yield DaemonPorts(connector, cluster)

    async def setup(system: ActorSystem) -> None:
        if settings.metrics_listen is not None:
            # First: it stops last, and answers while the bus check below waits.
            await serve_metrics(system, metrics.REGISTRY, settings.metrics_listen)
        # Here, not before: a SIGTERM during the (bounded) check still stops us cleanly.
        await _check_bus(bus, settings.consumer)
        system.spawn(
            lambda: ClusterDaemon(settings, ports),
            name="daemon",
            policy=RestartPolicy(max_restarts=10, window=60.0),
        )

    structlog.get_logger().info(
        "settings_loaded", cluster=settings.cluster, bus=str(bus),
        resync_seconds=settings.resync_seconds
    )
    code = 2
    try:
        code = await run_until_signalled(setup)
    except* BusRefused as group:
        print(f"daemon: {group.exceptions[0]}", file=sys.stderr)
    except* OSError as group:  # the metrics address cannot be bound
        print(f"daemon: cannot start: {group.exceptions[0]}", file=sys.stderr)
    return code


async def _check_bus(bus: BusSettings, consumer: str) -> None:
    """Raise `BusRefused` when the bus refuses our credentials or our consumer; a bus that is
    not up yet is waited for later, as always."""
    answered = await check_access(bus, consumer)
    structlog.get_logger().info("broker_access_checked", answered=answered, bus=str(bus))


if __name__ == "__main__":
    sys.exit(main())
