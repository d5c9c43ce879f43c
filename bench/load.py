"""Closed-loop load: N clients, each one keep-alive connection sending the next request on each reply.

The same generator drives the system and its baseline, so what it costs is
the same on both sides; it is a minimal HTTP/1.1 client on asyncio streams
(a prebuilt request, the reply read by its Content-Length or chunks), a few
times cheaper per request than a general client, so that on a small machine
the figure is the server's and not the generator's.

`closed_loop` runs `clients` workers for `warmup` seconds (not counted), then
for `duration` seconds; it returns requests per second. `drive` is the same
loop for any coroutine (the bare asyncpg baseline); `alternate` runs several
sides (a system and its baseline) in turn, in slices, so both see the machine
alike; `run_all` sends a fixed number of requests (no clock).
Every reply is checked: anything but HTTP 200 with a JSON-RPC result raises
`BenchError` with the reply, because a figure made of errors is no figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from bench.figures import BenchError

Body = Callable[[int], bytes]  # request number -> the JSON body to POST


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, head: bytes, body: bytes) -> bytes:
        self.writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = header[9:12]
        lower = header.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            end = lower.index(b"\r\n", at + 2)
            payload = await self.reader.readexactly(int(lower[at + 17 : end]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            payload = await self._chunks()
        else:
            raise BenchError(f"reply without a length: {header[:300]!r}")
        if status != b"200":
            raise BenchError(f"HTTP {status.decode(errors='replace')}: {payload[:300]!r}")
        return payload

    async def _chunks(self) -> bytes:
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await self.reader.readexactly(size + 2))
            if size == 0:
                return b"".join(p[:-2] for p in parts)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def check_result(payload: bytes) -> None:
    """A JSON-RPC reply carrying a result (not an error)."""
    try:
        reply = json.loads(payload)
    except ValueError:
        raise BenchError(f"reply is not JSON: {payload[:300]!r}")
    if not isinstance(reply, dict) or "result" not in reply:
        raise BenchError(f"JSON-RPC error: {payload[:500]!r}")


class Target:
    """POST `path` on the server at `url`, with an optional bearer key."""

    def __init__(self, url: str, key: str | None = None, path: str = "/rpc") -> None:
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise BenchError(f"expected http://HOST:PORT, got {url!r}")
        self.host, self.port = parts.hostname, parts.port
        auth = f"Authorization: Bearer {key}\r\n" if key else ""
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{auth}"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()

    async def connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return _Connection(reader, writer)


One = Callable[[int, int], Awaitable[None]]  # one(worker, n): make request n on worker's behalf


async def alternate(
    clients: int, warmup: float, duration: float, sides: Sequence[One], *, slices: int = 1
) -> list[float]:
    """Each side's `clients` workers in turn: first `warmup` seconds each (not counted), then
    `slices` rounds of `duration / slices` seconds each; each side's completions per second,
    the mean over its slices. A machine whose speed moves within seconds (a shared VM) then
    weighs on every side alike, not on whichever side drew the slow stretch. Speed that moves
    faster than a slice still spreads the runs (README, Performance)."""
    counter = iter(range(1 << 62))
    for one in sides:
        _ = await _slice(clients, warmup, one, counter)
    rates: list[list[float]] = [[] for _ in sides]
    for _round in range(slices):
        for i, one in enumerate(sides):
            rates[i].append(await _slice(clients, duration / slices, one, counter))
    return [sum(r) / len(r) for r in rates]


async def drive(clients: int, warmup: float, duration: float, one: One) -> float:
    """`clients` workers call one(worker, n) in a loop; completions per second after warm-up."""
    return (await alternate(clients, warmup, duration, [one]))[0]


async def _slice(clients: int, seconds: float, one: One, counter: Iterator[int]) -> float:
    """`clients` workers for `seconds`, then each finishes the request it has in flight: the sum
    of each worker's completions per second of its own time. Counting each worker to its last
    completion, not the replies within a fixed window, keeps a short slice unbiased: every
    worker starts its first request at once, so in a window a few requests long the count
    would depend on where the window cut the rounds."""
    stop = False
    start = time.perf_counter()

    async def worker(w: int) -> float:
        done, last = 0, start
        while not stop:
            await one(w, next(counter))
            done += 1
            last = time.perf_counter()
        return done / (last - start) if done else 0.0

    tasks = [asyncio.create_task(worker(w), name=f"bench:load-{w}") for w in range(clients)]
    try:
        await _sleep_or_fail(seconds, tasks)
        stop = True
        return sum(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            _ = task.cancel()
        _ = await asyncio.gather(*tasks, return_exceptions=True)


async def _sleep_or_fail(seconds: float, tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Sleep, but raise at once the error of a worker that failed meanwhile."""
    finished, _ = await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_EXCEPTION)
    for task in finished:
        task.result()  # raises the worker's error
    if finished:
        raise BenchError("a load worker stopped on its own")


@contextlib.asynccontextmanager
async def http_clients(target: Target, clients: int, body: Body) -> AsyncIterator[One]:
    """`clients` keep-alive connections to `target`, as a side for `alternate`: one(worker, n)
    POSTs body(n) on the worker's connection and checks the reply."""
    connections = [await target.connect() for _ in range(clients)]

    async def one(worker: int, n: int) -> None:
        check_result(await connections[worker].request(target.head, body(n)))

    try:
        yield one
    finally:
        for connection in connections:
            await connection.close()


async def closed_loop(
    target: Target, clients: int, warmup: float, duration: float, body: Body
) -> float:
    """HTTP requests per second that `clients` keep-alive connections complete."""
    async with http_clients(target, clients, body) as one:
        return await drive(clients, warmup, duration, one)


async def run_all(target: Target, clients: int, bodies: list[bytes]) -> list[bytes]:
    """Send every body (at most `clients` at once); the replies, in order."""
    replies: list[bytes] = [b""] * len(bodies)
    queue = iter(range(len(bodies)))

    async def worker() -> None:
        connection = await target.connect()
        try:
            for i in queue:
                replies[i] = await connection.request(target.head, bodies[i])
                check_result(replies[i])
        finally:
            await connection.close()

    async with asyncio.TaskGroup() as tg:
        for w in range(min(clients, len(bodies))):
            _ = tg.create_task(worker(), name=f"bench:send-{w}")
    return replies
