"""bin/daemon: one cluster's daemon process.

Parses settings (exit 2 with one line on a bad one), locks the state dir (one
daemon per state dir), checks the kubeconfig loads (exit 2 with one line if
not), then runs the `ClusterDaemon` actor until SIGTERM/SIGINT. It reaches the
bus through `transport.connector.BrokerConnector` (the `core.bus.BusConnector`
port) and its cluster through `kube.KubeCluster`. The broker and the Kubernetes
API may be down at start: the daemon starts anyway and keeps retrying, logging
what it waits for. A broker that is up but refuses this daemon's CURVE key, or
its consumer `cluster:NAME` to that key's identity, is no reason to wait: the
daemon exits 2 with one line within `HANDSHAKE_WAIT` seconds.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import structlog

from actors.daemon.dispatcher import ClusterDaemon, DaemonPorts
from actors.daemon.kube import KubeCluster, KubeConfigError, load_configuration
from actors.daemon.settings import DaemonSettings, parse_settings
from actors.runtime import ActorSystem, RestartPolicy, run_until_signalled
from actors.runtime.logging import configure_logging
from transport.access import BusRefused, check_access
from transport.connector import BrokerConnector
from transport.curve import KeyFileError
from transport.sockets import ClientKeys, close_context, new_context


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
        return asyncio.run(_run(settings))


async def _run(settings: DaemonSettings) -> int:
    try:
        kube_cfg = await load_configuration(settings.kubeconfig, settings.kube_context)
    except KubeConfigError as exc:
        print(f"daemon: {exc}", file=sys.stderr)
        return 2
    assert settings.broker_keys is not None, "parse_settings requires the broker keys"
    try:
        keys = settings.broker_keys.load()
    except KeyFileError as exc:
        print(f"daemon: {exc}", file=sys.stderr)
        return 2

    @asynccontextmanager
    async def ports() -> AsyncIterator[DaemonPorts]:
        async with KubeCluster(kube_cfg, timeout=settings.request_timeout) as cluster:
            yield DaemonPorts(BrokerConnector(settings.broker, keys=keys), cluster)

    async def setup(system: ActorSystem) -> None:
        # Here, not before: a SIGTERM during the (bounded) check still stops us cleanly.
        await _check_broker(settings, keys)
        system.spawn(
            lambda: ClusterDaemon(settings, ports),
            name="daemon",
            policy=RestartPolicy(max_restarts=10, window=60.0),
        )

    structlog.get_logger().info(
        "settings_loaded", cluster=settings.cluster, broker=str(settings.broker),
        resync_seconds=settings.resync_seconds
    )
    code = 2
    try:
        code = await run_until_signalled(setup)
    except* BusRefused as group:
        print(f"daemon: {group.exceptions[0]}", file=sys.stderr)
    return code


async def _check_broker(settings: DaemonSettings, keys: ClientKeys) -> None:
    """Raise `BusRefused` when the broker refuses our key or our consumer; a broker that is
    not up yet is waited for later, as always."""
    ctx = new_context()
    try:
        answered = await check_access(ctx, settings.broker, keys, consumer=settings.consumer)
    finally:
        close_context(ctx)
    structlog.get_logger().info("broker_access_checked", answered=answered, broker=str(settings.broker))


if __name__ == "__main__":
    sys.exit(main())
