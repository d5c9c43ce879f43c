"""Run a real broker for a test: `bin/broker` on free loopback ports, or embedded in-process.

    endpoints = await start_broker(procs, tmp_path / "broker")
    proc, endpoints = await start_broker_process(procs, data_dir, "--heartbeat-interval", "0.1")
    await restart_broker(procs, proc)                 # after a kill: same data dir and ports
    async with embedded_broker(tmp_path, segment_bytes=2000) as endpoints: ...   # in this loop

Every broker runs with security on, as `fabric up`'s does: CURVE on every socket
with the test session's keys (`tests.support.keys`); clients take
`client_keys(IDENTITY)` or, as processes, `client_flags(IDENTITY)`.

All wait until the broker answers on its control socket. Processes get
FAST_TIMERS (heartbeat 0.2 s, consumer offline after 2 s, a cleaning check every
0.1 s); later args override.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from actors.broker.service import spawn_broker
from actors.broker.settings import SEGMENT_BYTES, TOMBSTONE_RETENTION, BrokerSettings, DedupSetting
from actors.runtime import ActorSystem
from core.bus import BusUnavailable
from tests.support.keys import broker_flags, broker_secret, client_keys, keys_dir
from tests.support.ports import free_tcp_endpoint
from tests.support.processes import Proc, ProcessGroup
from tests.support.wait import wait_until
from transport.client import BrokerEndpoints, Directory
from transport.curve import API
from transport.sockets import close_context, new_context

FAST_TIMERS = ("--heartbeat-interval", "0.2", "--consumer-timeout", "2", "--clean-interval", "0.1")


def new_endpoints() -> BrokerEndpoints:
    return BrokerEndpoints(free_tcp_endpoint(), free_tcp_endpoint(), free_tcp_endpoint())


async def wait_broker_ready(endpoints: BrokerEndpoints, timeout: float = 20.0) -> None:
    ctx = new_context()
    try:
        async with Directory(ctx, endpoints, keys=client_keys(API), timeout=1.0) as directory:

            async def probe() -> bool:
                return await _answers(directory)

            _ = await wait_until(probe, timeout=timeout, message=f"broker at {endpoints}")
    finally:
        close_context(ctx)


async def _answers(directory: Directory) -> bool:
    try:
        await directory.head()
    except BusUnavailable:
        return False
    return True


async def start_broker_process(
    procs: ProcessGroup,
    data_dir: Path,
    *args: str,
    endpoints: BrokerEndpoints | None = None,
    name: str = "broker",
) -> tuple[Proc, BrokerEndpoints]:
    endpoints = endpoints or new_endpoints()
    proc = await procs.start(
        "broker",
        "--data-dir",
        str(data_dir),
        "--bind",
        str(endpoints),
        *broker_flags(),
        *FAST_TIMERS,
        *args,
        name=name,
    )
    await wait_broker_ready(endpoints)
    return proc, endpoints


async def start_broker(procs: ProcessGroup, data_dir: Path, *args: str) -> BrokerEndpoints:
    """Start bin/broker on free ports and wait until it answers; the fixture stops it."""
    _proc, endpoints = await start_broker_process(procs, data_dir, *args)
    return endpoints


async def restart_broker(procs: ProcessGroup, proc: Proc) -> Proc:
    """Start the same broker again (same argv: data dir, ports, keys) once `proc` has exited."""
    await proc.process.wait()
    argv = proc.argv
    new = await procs.start(argv[0], *argv[1:], name=proc.name, env=proc.env)
    endpoints = BrokerEndpoints.parse(argv[argv.index("--bind") + 1])
    await wait_broker_ready(endpoints)
    return new


@asynccontextmanager
async def embedded_broker(
    data_dir: Path,
    *,
    heartbeat_interval: float = 0.2,
    consumer_timeout: float = 2.0,
    endpoints: BrokerEndpoints | None = None,
    segment_bytes: int = SEGMENT_BYTES,
    dedup: DedupSetting | None = None,
    tombstone_retention: float = TOMBSTONE_RETENTION,
    clean_interval: float = 0.05,
) -> AsyncIterator[BrokerEndpoints]:
    """The broker actor inside this test's event loop, on free ports unless given."""
    endpoints = endpoints or new_endpoints()
    settings = BrokerSettings(
        data_dir=data_dir,
        endpoints=endpoints,
        curve_secret=broker_secret(),
        curve_clients=keys_dir(),
        heartbeat_interval=heartbeat_interval,
        consumer_timeout=consumer_timeout,
        segment_bytes=segment_bytes,
        dedup=dedup or DedupSetting(),
        tombstone_retention=tombstone_retention,
        clean_interval=clean_interval,
    )
    ctx = new_context()
    try:
        async with ActorSystem() as system:
            spawn_broker(system, ctx, settings)
            yield endpoints
    finally:
        close_context(ctx)
