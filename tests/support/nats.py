"""Run real nats-servers for a test: one node, or a three-node JetStream cluster on loopback.

    async with nats_server(tmp_path) as server:
        bus = server.connector("api")                      # a JetStreamConnector as `api`
        await server.kill(); await server.restart()        # SIGKILL, then same port and store
    async with nats_cluster(tmp_path, size=3) as cluster:
        bus = cluster.connector("cluster-a", replicas=3)
        await cluster.kill(1); await cluster.restart(1)

Every node has its own store dir and config under the work dir (users and
permissions from `transport.jetstream.identities`, passwords in `keys/`), its
output in `NAME.log`, and is ended by pid when the context exits. `start` and
`restart` wait until the monitor port's `/healthz?js-enabled-only=true` says ok;
a cluster also waits for JetStream's full `/healthz` on the live nodes (a meta
leader elected, streams current).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from actors.up.layout import ensure_credentials, write_server_config
from tests.support.ports import free_port
from tests.support.wait import wait_until
from transport.curve import API, cluster_identity
from transport.jetstream.connector import JetStreamConnector
from transport.jetstream.server import nats_server_binary

HOST = "127.0.0.1"
CLUSTERS = ("a", "b", "east", "west")
START_TIMEOUT = 30.0


async def _http_ok(port: int, path: str) -> bool:
    """True when GET `path` on the monitor port answers 200."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 1.0)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 2.0)
        return b" 200 " in status
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class NatsServer:
    """One nats-server process: fixed ports and store dir across kill/restart."""

    def __init__(
        self,
        work: Path,
        *,
        name: str = "nats",
        passwords: dict[str, str],
        cluster_port: int | None = None,
        routes: Sequence[str] = (),
    ) -> None:
        self.work = work
        self.name = name
        self.port = free_port()
        self.monitor_port = free_port()
        self.cluster_port = cluster_port
        self.routes = list(routes)
        self.passwords = passwords
        self.store_dir = work / f"{name}-store"
        self.config = work / f"{name}.conf"
        self.log_path = work / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, *, wait: bool = True) -> None:
        write_server_config(
            self.config, host=HOST, port=self.port, store_dir=self.store_dir, users=self.passwords,
            server_name=self.name, cluster_port=self.cluster_port, routes=self.routes,
            monitor_port=self.monitor_port,
        )
        with self.log_path.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                str(nats_server_binary()), "-c", str(self.config),
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
            )
        if wait:
            await self.wait_healthy()

    async def wait_healthy(self, *, full: bool = False, timeout: float = START_TIMEOUT) -> None:
        path = "/healthz" if full else "/healthz?js-enabled-only=true"

        async def healthy() -> bool:
            if not self.running:
                raise AssertionError(f"{self.name} exited:\n{self.log_text()[-2000:]}")
            return await _http_ok(self.monitor_port, path)

        _ = await wait_until(healthy, timeout=timeout, interval=0.05, message=f"{self.name} {path}")

    async def kill(self) -> None:
        """SIGKILL: no shutdown, the store as the crash left it."""
        await self._end(signal.SIGKILL)

    async def stop(self) -> None:
        await self._end(signal.SIGTERM)

    async def restart(self, *, wait: bool = True) -> None:
        if self.running:
            await self.kill()
        await self.start(wait=wait)

    async def _end(self, sig: signal.Signals) -> None:
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def connector(self, identity: str, **kwargs: Any) -> JetStreamConnector:
        return _connector([self.url], identity, self.passwords, kwargs)


def _connector(
    servers: list[str], identity: str, passwords: dict[str, str], kwargs: dict[str, Any]
) -> JetStreamConnector:
    settings: dict[str, Any] = {
        "password": passwords.get(identity, ""), "timeout": 2.0, "poll": 0.5, "offline_after": 3.0,
        "ack_wait": 5.0,
    }
    settings.update(kwargs)  # a test may pass another password
    return JetStreamConnector(servers, user=identity, **settings)


def _passwords(work: Path, clusters: Sequence[str]) -> dict[str, str]:
    return ensure_credentials(work / "keys", [API, *(cluster_identity(c) for c in clusters)])


class NatsCluster:
    """`size` nodes routed to each other on loopback, each with its own store dir."""

    def __init__(self, work: Path, *, size: int = 3, clusters: Sequence[str] = CLUSTERS) -> None:
        self.passwords = _passwords(work, clusters)  # creates `work`
        ports = [free_port() for _ in range(size)]
        routes = [f"nats-route://{HOST}:{p}" for p in ports]
        self.nodes = [
            NatsServer(
                work, name=f"nats-{i}", passwords=self.passwords, cluster_port=ports[i],
                routes=[r for j, r in enumerate(routes) if j != i],
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    async def start(self) -> None:
        for node in self.nodes:
            await node.start(wait=False)
        await self.wait_healthy()

    async def wait_healthy(self) -> None:
        for node in self.nodes:
            if node.running:
                await node.wait_healthy()
                await node.wait_healthy(full=True)

    async def kill(self, i: int) -> None:
        await self.nodes[i].kill()

    async def restart(self, i: int) -> None:
        await self.nodes[i].restart(wait=False)
        await self.wait_healthy()

    async def stop(self) -> None:
        for node in self.nodes:
            await node.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log_text()[-3000:]}" for n in self.nodes)

    def connector(self, identity: str, **kwargs: Any) -> JetStreamConnector:
        return _connector(self.urls, identity, self.passwords, kwargs)


@asynccontextmanager
async def nats_server(work: Path, *, clusters: Sequence[str] = CLUSTERS) -> AsyncIterator[NatsServer]:
    server = NatsServer(work, passwords=_passwords(work, clusters))
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def nats_cluster(
    work: Path, *, size: int = 3, clusters: Sequence[str] = CLUSTERS
) -> AsyncIterator[NatsCluster]:
    cluster = NatsCluster(work, size=size, clusters=clusters)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()
