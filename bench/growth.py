"""State, not history: the broker's memory, disk and restart time must follow live keys.

Publishes account events for a fixed set of accounts to a real `bin/broker`
(its own process, a temp data dir, free loopback ports) until 100k and then 1M
events in all (`--quick`: 2k and 20k over 200 accounts), and at each step:

- waits until the broker has settled: the consumer (if any) has acked the
  head, then the data dir's size has not changed for `--settle` seconds (the
  cleaner had its chance; a deadline bounds the wait and the row says whether
  it was reached);
- `rss_mb_before_restart`, `disk_mb_before_restart`: VmRSS of the broker
  process and the data dir's allocated blocks;
- `restart_s`: SIGTERM, wait for the exit, start `bin/broker` again, until it
  answers a PING on its control socket (the client polls through a zmq socket
  that reconnects every 0.1 s, which bounds the resolution);
- after the restart has settled too: `rss_mb` and `disk_mb`. The RSS of a
  freshly started broker is the honest figure: a long-running process keeps
  heap it no longer uses.

The events: every account is created, then updated many times (AccountCreated
with the next generation); some updates are deletions (AccountDeleted, the
key's tombstone), and the next touch re-creates the account. So keys repeat:
at 1M events each of the 10k accounts has about 100 records of history and one
record of state. The goal: each figure at 1M within 1.2x of itself at 100k,
and RSS under 80 MB.

The consumer: by default one durable consumer (`cache-bench-growth`) runs the same
consumer loop as the daemons and the event driver and acks every batch, as
every deployment has consumers that keep up; tombstones may only be dropped
once registered consumers have passed them. `--consumer none` registers none.
Tombstones are kept for the broker's tombstone retention (24 h by default), so
deleted accounts stay as one record each: still bounded by the key count.

    ./bin/fabric bench growth [--quick] [--json] [--consumer keeping-up|none]
                              [--broker-flag=--segment-bytes=8000000 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import structlog

from actors.runtime.consumer import Received, consume
from actors.runtime.logging import configure_logging
from bench.keys import api_keys, broker_flags
from core.backoff import Backoff
from core.bus import BusUnavailable
from core.envelope import Envelope, utc_now
from core.events import AccountCreated, AccountDeleted, DomainEvent, to_envelope
from transport.client import BrokerEndpoints, Directory, Publisher
from transport.connector import BrokerConnector
from transport.sockets import Context, close_context, new_context

BROKER = Path(__file__).resolve().parents[1] / "bin" / "broker"
CONSUMER = "cache-bench-growth"  # a consumer the api identity may read
BATCH = 500  # envelopes per publish: well under the protocol's 1000 and 1 MiB
IN_FLIGHT = 4  # publishes awaiting their confirm at once
DELETE_FRACTION = 0.05  # of updates to a live account; the next touch re-creates it
GOAL_RATIO = 1.2
GOAL_RSS_MB = 80.0
STOP_DEADLINE = 60.0
ConsumerMode = Literal["keeping-up", "none"]
CONSUMER_NOTE = {
    "keeping-up": f"one durable consumer ({CONSUMER}) acking every batch, as deployed daemons do",
    "none": "no consumer registered",
}


@dataclass(frozen=True, slots=True)
class Scale:
    steps: tuple[int, ...]  # events published in all when each row is measured
    accounts: int
    settle: float  # seconds the data dir must stay unchanged
    deadline: float  # longest wait for a settle
    # The broker's defaults are sized for real use; a quick run scales the dedup window and
    # segments down with the event counts, or its small rows would never fill them.
    broker_flags: tuple[str, ...] = ()


FULL = Scale((100_000, 1_000_000), 10_000, settle=5.0, deadline=180.0)
QUICK = Scale(
    (2_000, 20_000), 200, settle=0.5, deadline=15.0,
    broker_flags=("--dedup-window=1000", "--segment-bytes=262144"),
)


@dataclass(frozen=True, slots=True)
class Row:
    events: int
    rss_mb: float
    disk_mb: float
    restart_s: float
    rss_mb_before_restart: float
    disk_mb_before_restart: float
    publish_eps: float  # events/s while publishing this step's events
    settled: bool  # the data dir stopped changing before the deadline, both times


class Accounts:
    """The workload: `n` accounts, each created, updated, deleted and re-created at random."""

    def __init__(self, n: int, seed: int) -> None:
        self._rng = random.Random(seed)
        self._ids = [str(uuid.UUID(int=self._rng.getrandbits(128), version=4)) for _ in range(n)]
        self._generation = [0] * n
        self._deleted = [False] * n

    def next_event(self) -> DomainEvent:
        i = self._rng.randrange(len(self._ids))
        generation = self._generation[i] = self._generation[i] + 1
        slug = f"bench-{i}"
        if generation > 1 and not self._deleted[i] and self._rng.random() < DELETE_FRACTION:
            self._deleted[i] = True
            return AccountDeleted(
                self._ids[i], slug, f"acc-{slug}", utc_now(), generation, slug,
                f"{slug}@example.com", utc_now(),
            )
        self._deleted[i] = False
        return AccountCreated(
            self._ids[i], slug, f"Bench account {i} rev {generation}", f"owner-{i}@example.com",
            f"acc-{slug}", "2024-01-01T00:00:00.000000Z", generation,
        )

    def envelopes(self, n: int) -> list[Envelope]:
        at = utc_now()
        return [
            to_envelope(self.next_event(), correlation_id="bench-growth", occurred_at=at)
            for _ in range(n)
        ]


class Broker:
    """`bin/broker` as its own process; `stop` then `start` is a restart (same data dir and ports)."""

    def __init__(self, data_dir: Path, endpoints: BrokerEndpoints, flags: Sequence[str]) -> None:
        self.data_dir = data_dir
        self.endpoints = endpoints
        self.log_path = data_dir.with_name("broker.log")
        self._argv = [
            str(BROKER), "--data-dir", str(data_dir), "--bind", str(endpoints),
            "--log-level", "warning", *broker_flags(), *flags,
        ]
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            # Same process group as the bench: whoever kills the bench's group kills this too.
            self._proc = await asyncio.create_subprocess_exec(
                *self._argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )

    def rss_mb(self) -> float:
        """VmRSS of the broker (bin/broker execs python, so the pid is the broker's)."""
        assert self._proc is not None
        for line in Path(f"/proc/{self._proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for the broker (pid {self._proc.pid}): has it exited?")

    def check_running(self) -> None:
        if self._proc is None or self._proc.returncode is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the broker is not running; its log ends:\n{tail}")

    async def stop(self) -> None:
        """SIGTERM and wait for the exit; SIGKILL after STOP_DEADLINE (then it is an error)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_DEADLINE):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"the broker did not stop within {STOP_DEADLINE}s of SIGTERM") from None

    async def close(self) -> None:
        """SIGKILL and reap: the end of the bench, whatever happened (the data dir is thrown away)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            _ = await proc.wait()


async def _poll(probe: Callable[[], Awaitable[bool]], deadline: float, interval: float = 0.05) -> bool:
    """Call probe until it is true (True) or the monotonic `deadline` passes (False)."""
    while not await probe():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True


async def wait_answering(ctx: Context, broker: Broker, timeout: float = 60.0) -> None:
    async with Directory(ctx, broker.endpoints, keys=api_keys(), timeout=0.5) as directory:

        async def answers() -> bool:
            broker.check_running()
            try:
                await directory.head()
            except BusUnavailable:
                return False
            return True

        if not await _poll(answers, time.monotonic() + timeout, interval=0.01):
            raise RuntimeError(f"the broker did not answer within {timeout}s")


def disk_mb(path: Path) -> float:
    """Allocated blocks under `path`, as `du` counts them (files may vanish while we walk)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total / 1024 / 1024


async def settle(ctx: Context, broker: Broker, scale: Scale, mode: ConsumerMode) -> bool:
    """Wait until the consumer acked the head and the data dir stopped changing.

    Raises when the consumer does not catch up by the deadline (the figures would not
    be what they claim); returns False when the data dir was still changing then."""
    deadline = time.monotonic() + scale.deadline
    if mode == "keeping-up":
        async with Directory(ctx, broker.endpoints, keys=api_keys(), timeout=2.0) as directory:

            async def consumer_at_head() -> bool:
                broker.check_running()
                try:
                    head = await directory.head()
                    infos = {info.name: info for info in await directory.consumers()}
                except BusUnavailable:
                    return False
                me = infos.get(CONSUMER)
                return me is not None and me.acked_seq >= head

            if not await _poll(consumer_at_head, deadline, interval=0.1):
                raise RuntimeError(
                    f"consumer {CONSUMER} did not reach the head within {scale.deadline}s "
                    "(--verbose shows its log)"
                )
    last = disk_mb(broker.data_dir)
    changed_at = time.monotonic()

    async def quiet() -> bool:
        nonlocal last, changed_at
        broker.check_running()
        now = disk_mb(broker.data_dir)
        if now != last:
            last, changed_at = now, time.monotonic()
        return time.monotonic() - changed_at >= scale.settle

    return await _poll(quiet, deadline, interval=0.1)


class _CountingSink:
    """A consumer whose own state is a count: the bench measures the broker, not a store."""

    def __init__(self) -> None:
        self.stored = 0

    async def store(self, events: Sequence[Received]) -> None:
        self.stored += len(events)

    async def caught_up(self) -> None:
        return None


async def publish(ctx: Context, endpoints: BrokerEndpoints, accounts: Accounts, count: int) -> None:
    remaining = count

    def take() -> list[Envelope] | None:
        nonlocal remaining
        n = min(BATCH, remaining)
        remaining -= n
        return accounts.envelopes(n) if n else None

    async with Publisher(ctx, endpoints, keys=api_keys(), timeout=60.0) as pub:

        async def sender() -> None:
            while (batch := take()) is not None:
                _ = await pub.publish(batch)

        async with asyncio.TaskGroup() as tg:
            for i in range(IN_FLIGHT):
                _ = tg.create_task(sender(), name=f"bench:publisher-{i}")


async def measure(
    ctx: Context, broker: Broker, scale: Scale, mode: ConsumerMode, seed: int
) -> list[Row]:
    accounts = Accounts(scale.accounts, seed)
    rows: list[Row] = []
    published = 0
    for target in scale.steps:
        start = time.perf_counter()
        await publish(ctx, broker.endpoints, accounts, target - published)
        publish_eps = (target - published) / (time.perf_counter() - start)
        published = target
        settled = await settle(ctx, broker, scale, mode)
        rss_before, disk_before = broker.rss_mb(), disk_mb(broker.data_dir)
        start = time.perf_counter()
        await broker.stop()
        await broker.start()
        await wait_answering(ctx, broker)
        restart_s = time.perf_counter() - start
        settled = await settle(ctx, broker, scale, mode) and settled
        rows.append(
            Row(
                events=target, rss_mb=broker.rss_mb(), disk_mb=disk_mb(broker.data_dir),
                restart_s=restart_s, rss_mb_before_restart=rss_before,
                disk_mb_before_restart=disk_before, publish_eps=publish_eps, settled=settled,
            )
        )
    return rows


async def run(scale: Scale, mode: ConsumerMode, flags: Sequence[str], seed: int) -> list[Row]:
    ctx = new_context()
    try:
        with tempfile.TemporaryDirectory(prefix="fabric-bench-growth-") as tmp:
            endpoints = BrokerEndpoints(*(_free_endpoint() for _ in range(3)))
            broker = Broker(Path(tmp) / "data", endpoints, flags)
            try:
                await broker.start()
                await wait_answering(ctx, broker)
                async with asyncio.TaskGroup() as tg:
                    consumer = None
                    if mode == "keeping-up":
                        connector = BrokerConnector(endpoints, keys=api_keys(), timeout=5.0)
                        consumer = tg.create_task(
                            consume(
                                lambda: connector.subscription(CONSUMER), _CountingSink(),
                                backoff=Backoff(0.05, 0.5), log=structlog.stdlib.get_logger("bench"),
                            ),
                            name="bench:consumer",
                        )
                    try:
                        return await measure(ctx, broker, scale, mode, seed)
                    finally:
                        if consumer is not None:
                            _ = consumer.cancel()
            finally:
                await broker.close()
    finally:
        close_context(ctx)


def _free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


FIGURES = (
    ("rss_mb", "RSS after restart (MB)", GOAL_RSS_MB),
    ("rss_mb_before_restart", "RSS before restart (MB)", None),
    ("disk_mb", "disk after restart (MB)", None),
    ("disk_mb_before_restart", "disk before restart (MB)", None),
    ("restart_s", "restart, SIGTERM to answering (s)", None),
)


def ratios(rows: Sequence[Row]) -> dict[str, float]:
    first, last = asdict(rows[0]), asdict(rows[-1])
    return {key: round(last[key] / first[key], 3) for key, _label, _cap in FIGURES}


def report(rows: Sequence[Row], scale: Scale, mode: ConsumerMode, flags: Sequence[str]) -> dict[str, object]:
    return {
        "rows": [{k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(r).items()} for r in rows],
        "ratios": ratios(rows),
        "goal": {"max_ratio": GOAL_RATIO, "max_rss_mb": GOAL_RSS_MB},
        "accounts": scale.accounts,
        "consumer": CONSUMER_NOTE[mode],
        "broker_flags": list(flags),
    }


def table(rows: Sequence[Row], scale: Scale, mode: ConsumerMode, flags: Sequence[str]) -> str:
    first, last = rows[0], rows[-1]
    got = ratios(rows)
    lines = [
        f"broker growth: {scale.accounts:,} accounts, {first.events:,} then {last.events:,} events; "
        f"consumer: {CONSUMER_NOTE[mode]}; broker flags: {' '.join(flags) or '(defaults)'}",
        f"  {'figure':<36}{first.events:>12,}{last.events:>12,}{'ratio':>8}  goal",
    ]
    for key, label, cap in FIGURES:
        a, b = getattr(first, key), getattr(last, key)
        ok = got[key] <= GOAL_RATIO and (cap is None or max(a, b) < cap)
        goal = f"ratio <= {GOAL_RATIO}" + (f", < {cap:.0f} MB" if cap is not None else "")
        verdict = "met" if ok else "MISSED"
        lines.append(f"  {label:<36}{a:>12.2f}{b:>12.2f}{got[key]:>8.2f}  {goal:<22} {verdict}")
    a, b, label = first.publish_eps, last.publish_eps, "publish, confirmed (events/s)"
    lines.append(f"  {label:<36}{a:>12,.0f}{b:>12,.0f}{b / a:>8.2f}")
    for row in rows:
        if not row.settled:
            lines.append(f"  note: at {row.events:,} events the data dir was still changing at the deadline")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench growth", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k and 20k events over 200 accounts")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--consumer", choices=("keeping-up", "none"), default="keeping-up")
    parser.add_argument(
        "--broker-flag", action="append", default=[], metavar="FLAG",
        help="pass to bin/broker, e.g. --broker-flag=--segment-bytes=8000000 (repeatable)",
    )
    parser.add_argument("--settle", type=float, help="seconds the data dir must stay unchanged")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="log the consumer's progress to stderr")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    if args.settle is not None:
        scale = Scale(
            scale.steps, scale.accounts, args.settle, max(scale.deadline, 4 * args.settle),
            scale.broker_flags,
        )
    # Logs go to stderr and only when something is wrong: stdout is the report.
    configure_logging("console", "info" if args.verbose else "error", process="bench")
    mode: ConsumerMode = args.consumer
    flags = [*scale.broker_flags, *args.broker_flag]  # given flags come last: they win
    rows = asyncio.run(run(scale, mode, flags, args.seed))
    if args.json:
        print(json.dumps(report(rows, scale, mode, flags)))
    else:
        print(table(rows, scale, mode, flags))
    sys.stdout.flush()
    return 0
