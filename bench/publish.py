"""Confirmed publish throughput of our broker, against NATS JetStream and a raw pyzmq loop.

Measured in one run, so the ratios hold even where absolute figures move:

- fabric, async: one event per publish, WINDOW publishes in flight (the
  shape of JetStream's publish_async); each confirmed only after fdatasync.
- fabric, batched: BATCH events per publish, a few in flight (the outbox
  relay's shape).
- fabric, sequential: one publish awaited at a time, SEQUENTIAL of them; p50
  and p99 of each confirm's latency (its floor is one zmq round trip plus one
  fdatasync; compare with JetStream's one-at-a-time publish).
- NATS JetStream publish_async with a Nats-Msg-Id (dedup) header, against the
  server on 127.0.0.1:4222 when one answers (as that server is configured),
  and against a nats-server we start with `sync_interval: always` (fsync every
  write, like us) when the binary is installed. Skipped with a message if not.
- raw pyzmq PUSH -> PULL, one msgpack message per send, no storage and no
  confirmation: the transport's ceiling.

The broker runs as its own process (`python -m actors.broker`), as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from core.bus import BusUnavailable
from core.envelope import Envelope, new_event_id, utc_now
from transport import codec
from transport.client import BrokerEndpoints, Directory, Publisher
from transport.sockets import Context, close_context, new_context

WINDOW = 256
BATCH = 100
BATCH_WINDOW = 8
SEQUENTIAL = 1000


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
        [
            sys.executable,
            "-m",
            "actors.broker",
            "--data-dir",
            str(data_dir),
            "--bind",
            str(endpoints),
            "--log-level",
            "warning",
        ],
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
    async with Directory(ctx, endpoints, timeout=0.5) as directory:
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


async def bench_fabric(ctx: Context, endpoints: BrokerEndpoints, n: int) -> dict[str, float]:
    events = _envelopes(n)
    batches = [events[i : i + BATCH] for i in range(0, n, BATCH)]
    async with Publisher(ctx, endpoints, timeout=30) as pub:
        await pub.publish(_envelopes(10))  # warm-up

        async def single(i: int) -> None:
            await pub.publish([events[i]])

        async def batch(i: int) -> None:
            await pub.publish(batches[i])

        t_async = await _windowed(n, WINDOW, single)
        again = _envelopes(n)
        batches = [again[i : i + BATCH] for i in range(0, n, BATCH)]
        t_batch = await _windowed(len(batches), BATCH_WINDOW, batch)
        one_by_one = _envelopes(SEQUENTIAL)
        latencies = []
        for env in one_by_one:
            start = time.perf_counter()
            await pub.publish([env])
            latencies.append(time.perf_counter() - start)
    return {
        "async": n / t_async,
        "batched": n / t_batch,
        "sequential p50 us": _p(latencies, 0.5) * 1e6,
        "sequential p99 us": _p(latencies, 0.99) * 1e6,
    }


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench_nats(url: str, n: int) -> dict[str, float]:
    import nats  # only this benchmark uses it

    payloads = [codec.encode(e.to_wire()) for e in _envelopes(n)]
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        js = nc.jetstream(publish_async_max_pending=WINDOW)
        stream = f"BENCH{os.getpid()}"
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        try:
            start = time.perf_counter()
            for i, payload in enumerate(payloads):
                _ = await js.publish_async(
                    f"{stream}.events", payload, headers={"Nats-Msg-Id": f"{stream}-{i}"}
                )
            await js.publish_async_completed()
            elapsed = time.perf_counter() - start
            latencies = []
            for i, payload in enumerate(payloads[:SEQUENTIAL]):
                t = time.perf_counter()
                await js.publish(f"{stream}.events", payload, headers={"Nats-Msg-Id": f"{stream}-seq-{i}"})
                latencies.append(time.perf_counter() - t)
        finally:
            await js.delete_stream(stream)
    finally:
        await nc.close()
    return {
        "publish_async": n / elapsed,
        "sequential p50 us": _p(latencies, 0.5) * 1e6,
        "sequential p99 us": _p(latencies, 0.99) * 1e6,
    }


def _nats_binary() -> str | None:
    found = shutil.which("nats-server")
    if found is None and Path("/usr/sbin/nats-server").exists():
        found = "/usr/sbin/nats-server"
    return found


@contextlib.contextmanager
def _own_nats_server(work: Path, *, fsync_always: bool) -> Iterator[tuple[str | None, str]]:
    """Start a nats-server with JetStream on a free port: (url or None, what happened)."""
    binary = _nats_binary()
    if binary is None:
        yield None, "no nats-server binary installed"
        return
    port = _free_port()
    store = work / ("js-sync" if fsync_always else "js")
    conf = work / f"nats-{port}.conf"
    sync = "  sync_interval: always\n" if fsync_always else ""
    conf.write_text(f'listen: "127.0.0.1:{port}"\njetstream {{\n  store_dir: "{store}"\n{sync}}}\n')
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if _nats_reachable("127.0.0.1", port):
                break
            time.sleep(0.05)
        if proc.poll() is not None:
            assert proc.stderr is not None
            reason = proc.stderr.read().decode(errors="replace").strip().splitlines()
            yield None, f"{binary} would not start: {reason[-1] if reason else 'no output'}"
        else:
            yield f"nats://127.0.0.1:{port}", f"started {binary} on port {port}"
    finally:
        proc.terminate()
        proc.wait()


def _nats_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), 0.5):
            return True
    except OSError:
        return False


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


async def run(n: int, runs: int) -> None:
    results: dict[str, list[float]] = {}
    notes: list[str] = []

    def add(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    ctx = new_context()
    try:
        with contextlib.ExitStack() as stack:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fabric-bench-")))
            nats_targets: list[tuple[str, str]] = []
            if _nats_reachable("127.0.0.1", 4222):
                nats_targets.append(("127.0.0.1:4222, as configured", "nats://127.0.0.1:4222"))
            else:
                url, note = stack.enter_context(_own_nats_server(work, fsync_always=False))
                notes.append(f"nothing answers on 127.0.0.1:4222; {note}")
                if url is not None:
                    nats_targets.append(("own server, default sync", url))
            url, note = stack.enter_context(_own_nats_server(work, fsync_always=True))
            if url is None:
                notes.append(f"JetStream with sync_interval: always skipped: {note}")
            else:
                nats_targets.append(("own server, sync_interval: always", url))
            if not nats_targets:
                notes.append("NATS JetStream baseline skipped: no server reachable or installable")
            for r in range(runs):
                with _broker_process(work / f"broker-{r}") as endpoints:
                    await _wait_ready(ctx, endpoints)
                    for name, value in (await bench_fabric(ctx, endpoints, n)).items():
                        add(f"fabric (fdatasync before confirm) {name}", value)
                for label, target in nats_targets:
                    for name, value in (await bench_nats(target, n)).items():
                        add(f"nats jetstream ({label}) {name}", value)
                add("raw pyzmq PUSH->PULL, no storage, no confirm", await bench_raw_zmq(n))
    finally:
        close_context(ctx)

    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"confirmed publish, {n} events per run, median of {runs} runs, {os.cpu_count()} CPUs")
    for name, value in medians.items():
        unit = "" if name.endswith(" us") else " events/s"
        print(f"  {name:<72} {value:>10,.0f}{unit}")
    ours = medians["fabric (fdatasync before confirm) async"]
    for name, value in medians.items():
        if not name.startswith("fabric") and not name.endswith(" us"):
            print(f"  ratio fabric async / {name}: {ours / value:.2f}")
    for name, value in medians.items():
        if name.startswith("nats") and name.endswith("p50 us"):
            fabric_p50 = medians["fabric (fdatasync before confirm) sequential p50 us"]
            print(f"  ratio fabric / {name} (latency, lower is better): {fabric_p50 / value:.2f}")
    for note in notes:
        print(f"  note: {note}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench publish", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    asyncio.run(run(args.events, args.runs))
    return 0
