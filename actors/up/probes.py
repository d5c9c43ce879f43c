"""Readiness probes for `fabric up`'s children: one closed set, one function to run them.

A probe answers "is this child serving?" and never raises: any error is a
`False` with a short reason, so the supervisor just keeps asking.

- `HttpProbe`: GET a URL, ready on a 2xx (api `/readyz`, kube `/version`,
  nats-server's monitoring `/healthz`, which also waits for JetStream).
- `TcpProbe`: the port accepts a connection.
- `DatabaseProbe`: PostgreSQL accepts a connection and, when asked, holds a
  database by that name, created here if missing (the api replicas' shared
  query cache, which must exist before they start: the next stage).
- `BrokerProbe`: the bus answers a consumer-directory request.
- `ConsumerProbe`: the durable consumer (`cluster:NAME`) is online on the bus.

Bus probes go through `transport.bus_choice` as the api (the identity that may
list consumers), on either bus; they read its credential files at each run, so
a probe made before the files is fine.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import assert_never

import aiohttp

from actors.legacy import db
from core.bus import ConsumerInfo
from transport.bus_choice import BusSettings, connector_for

PROBE_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class HttpProbe:
    url: str
    token: str | None = None


@dataclass(frozen=True, slots=True)
class TcpProbe:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class DatabaseProbe:
    dsn: str
    ensure_database: str | None = None


@dataclass(frozen=True, slots=True)
class BrokerProbe:
    bus: BusSettings


@dataclass(frozen=True, slots=True)
class ConsumerProbe:
    bus: BusSettings
    consumer: str


Probe = HttpProbe | TcpProbe | DatabaseProbe | BrokerProbe | ConsumerProbe


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str = ""


async def run_probe(probe: Probe) -> ProbeResult:
    try:
        return await asyncio.wait_for(_run(probe), PROBE_TIMEOUT)
    except TimeoutError:
        return ProbeResult(False, "timed out")
    except (OSError, aiohttp.ClientError) as exc:
        return ProbeResult(False, f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a probe must never crash its owner; the reason is shown instead
        return ProbeResult(False, f"{type(exc).__name__}: {exc}")


async def _run(probe: Probe) -> ProbeResult:
    match probe:
        case HttpProbe(url=url, token=token):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with (
                aiohttp.ClientSession(trust_env=False) as session,
                session.get(url, headers=headers) as resp,
            ):
                if 200 <= resp.status < 300:
                    return ProbeResult(True)
                body = (await resp.text())[:200]
                return ProbeResult(False, f"HTTP {resp.status} {body}")
        case TcpProbe(host=host, port=port):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            await writer.wait_closed()
            return ProbeResult(True)
        case DatabaseProbe(dsn=dsn, ensure_database=name):
            if name is not None:
                await ensure_database(dsn, name)
            else:
                await db.close_connection(await db.connect(dsn, timeout=PROBE_TIMEOUT))
            return ProbeResult(True)
        case BrokerProbe(bus=bus):
            await _consumers(bus)
            return ProbeResult(True)
        case ConsumerProbe(bus=bus, consumer=consumer):
            infos = await _consumers(bus)
            for info in infos:
                if info.name == consumer:
                    return ProbeResult(info.online, "" if info.online else "offline on the bus")
            return ProbeResult(False, "not registered on the bus yet")
        case _:
            assert_never(probe)


async def _consumers(bus: BusSettings) -> list[ConsumerInfo]:
    async with connector_for(bus).directory() as directory:
        return list(await directory.consumers())


async def ensure_database(dsn: str, name: str) -> None:
    """Create database `name` on the server `dsn` reaches, unless it exists (idempotent)."""
    conn = await db.connect(dsn, timeout=PROBE_TIMEOUT)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # CREATE DATABASE takes no parameters; the name is quoted as an identifier.
            quoted = '"' + name.replace('"', '""') + '"'
            await conn.execute(f"CREATE DATABASE {quoted}")
    finally:
        await db.close_connection(conn)
