"""Readiness probes for `fabric up`'s children: one closed set, one function to run them.

A probe answers "is this child serving?" and never raises: any error is a
`False` with a short reason, so the supervisor just keeps asking.

- `HttpProbe`: GET a URL, ready on a 2xx (api `/readyz`, kube `/version`).
- `TcpProbe`: the port accepts a connection (postgres).
- `BrokerProbe`: the broker answers a directory request on its control socket.
- `ConsumerProbe`: the durable consumer (`cluster:NAME`) is online at the broker.

Broker probes talk CURVE as the api (the identity that may list consumers);
they read its key files at each run, so a probe made before the keys is fine.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import assert_never

import aiohttp

from core.bus import ConsumerInfo
from transport.client import BrokerEndpoints, Directory
from transport.curve import KeyFiles
from transport.sockets import close_context, new_context

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
class BrokerProbe:
    endpoints: BrokerEndpoints
    keys: KeyFiles


@dataclass(frozen=True, slots=True)
class ConsumerProbe:
    endpoints: BrokerEndpoints
    consumer: str
    keys: KeyFiles


Probe = HttpProbe | TcpProbe | BrokerProbe | ConsumerProbe


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
        case BrokerProbe(endpoints=endpoints, keys=keys):
            await _consumers(endpoints, keys)
            return ProbeResult(True)
        case ConsumerProbe(endpoints=endpoints, consumer=consumer, keys=keys):
            infos = await _consumers(endpoints, keys)
            for info in infos:
                if info.name == consumer:
                    return ProbeResult(info.online, "" if info.online else "offline at the broker")
            return ProbeResult(False, "not registered at the broker yet")
        case _:
            assert_never(probe)


async def _consumers(endpoints: BrokerEndpoints, keys: KeyFiles) -> list[ConsumerInfo]:
    client_keys = keys.load()
    ctx = new_context()
    try:
        async with Directory(ctx, endpoints, keys=client_keys) as directory:
            return list(await directory.consumers())
    finally:
        close_context(ctx)
