"""`fabric bench [NAME...] [--quick] [--json PATH] [--runs N] [--bus zmq,jetstream]`: every
figure against its baseline.

Each NAME is one of FIGURES (none: all of them, in this order). Each figure is
measured `--runs` times (3; 1 with `--quick`), alternating with its
baseline, and printed as median [min..max] beside the baseline's, with the
ratio and the goal. All figures are also written as JSON: to `--json PATH`,
else to a new file under the temp dir (its path is printed last). `--quick`
shrinks every size so that a CI run takes a minute or two; it asserts
nothing about speed, only that every benchmark still runs end to end.

The end-to-end figures (latency, convergence) run on every bus of `--bus`
(default: both, our broker's `zmq` and NATS `jetstream`), each bus beside
the direct path measured with it, and are then printed bus by bus (and
written as JSON under `side_by_side`), each bus against the first; every
figure's JSON names its bus. The other figures run on the zmq bus (create,
get) or on no system at all (publish, growth).

A figure group that fails (a process died, a call failed) is reported and
the next one runs; the exit status is 1 if any failed, else 0 (a missed goal
is a finding, not a failure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from actors.runtime.files import write_atomic
from actors.runtime.logging import configure_logging
from actors.up.layout import from_caller
from bench import growth
from bench.api_figures import run_create, run_get
from bench.context import Bench
from bench.convergence import run_convergence
from bench.figures import (
    BenchError,
    Figure,
    Goal,
    comparison_table,
    document,
    figure,
    machine,
    side_by_side,
    table,
)
from bench.latency import run_latency
from bench.publish import run_publish
from transport.bus_choice import BusName, bus_name

Run = Callable[[Bench], Awaitable[list[Figure]]]


async def run_growth(bench: Bench) -> list[Figure]:
    """The figures of the issue "State, not history" (bench/growth.py): each at the last step
    against itself at the first."""
    scale = growth.QUICK if bench.quick else growth.FULL
    runs = [
        await growth.run(scale, "keeping-up", list(scale.broker_flags), seed=run + 1)
        for run in range(bench.runs)
    ]
    first, last = runs[0][0].events, runs[0][-1].events
    unsettled = sum(not row.settled for rows in runs for row in rows)
    notes = [f"{scale.accounts:,} accounts; {growth.CONSUMER_NOTE['keeping-up']}"]
    if unsettled:
        notes.append(f"{unsettled} measurement(s) taken while the data dir was still changing")
    return [
        figure("growth", f"{label} at {last:,} events", unit(key), "lower",
               [(getattr(rows[-1], key), getattr(rows[0], key)) for rows in runs],
               f"the same broker at {first:,} events", Goal(growth.GOAL_RATIO, cap=cap), notes=notes)
        for key, label, cap in growth.FIGURES
    ]


def unit(key: str) -> str:
    return "MB" if key.endswith(("_mb", "_mb_before_restart")) else "s"


FIGURES: dict[str, tuple[Run, str]] = {
    "create": (run_create, "account.create at 16 and 64 clients vs bare asyncpg"),
    "get": (run_get, "account.get at 16 and 64 clients vs a bare aiohttp handler"),
    "latency": (run_latency, "create-to-ready p50/p99, 2 clusters, vs the direct path"),
    "convergence": (run_convergence, "N accounts x 4 clusters vs a bare client; daemon CPU"),
    "publish": (run_publish, "broker confirmed publish vs NATS JetStream"),
    "growth": (run_growth, "broker memory, disk and restart at 1M events vs 100k"),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fabric bench",
        description="Every figure against a baseline measured in the same run.",
        epilog="figures: " + "; ".join(f"{k}: {d}" for k, (_, d) in FIGURES.items())
        + ". `fabric bench growth` and `fabric bench deliver` run those tools with their own "
        "flags (see their --help); growth's figures are part of the full run.",
    )
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="the figure groups to run, in the order given (default: all)")
    p.add_argument("--quick", action="store_true", help="small sizes, for CI: asserts nothing about speed")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the figures here as JSON")
    p.add_argument("--runs", type=_runs, help="runs per figure (default 3, quick 1)")
    p.add_argument("--bus", type=_buses, default="zmq,jetstream", metavar="BUS[,BUS]",
                   help="the buses latency and convergence run on, side by side, each against the "
                   "first: zmq (our broker), jetstream (NATS); default zmq,jetstream")
    return p


def _buses(text: str) -> tuple[BusName, ...]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected one or more of zmq, jetstream")
    return tuple(dict.fromkeys(bus_name(name) for name in names))


def _runs(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 50:
        raise argparse.ArgumentTypeError(f"expected an integer in 1..50, got {text!r}")
    return int(text)


def default_json_path() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(tempfile.gettempdir()) / "fabric-bench" / f"bench-{stamp}.json"


async def run(
    names: list[str], quick: bool, runs: int, buses: tuple[BusName, ...]
) -> tuple[list[Figure], list[str]]:
    figures: list[Figure] = []
    errors: list[str] = []
    # SIGTERM cancels like Ctrl-C does, so the systems started are stopped on the way out.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="fabric-bench-") as tmp:
        bench = Bench(Path(tmp), quick=quick, runs=runs, buses=buses)
        try:
            for name in names:
                started = time.monotonic()
                print(f"== {name}: {FIGURES[name][1]}", flush=True)
                try:
                    got = await FIGURES[name][0](bench)
                except Exception as exc:  # one group's failure is reported; the others still run
                    detail = "".join(traceback.format_exception_only(exc)).strip()
                    errors.append(f"{name}: {detail}")
                    if not isinstance(exc, BenchError):  # unexpected: the whole story
                        traceback.print_exc()
                    print(f"{name} FAILED: {detail}", file=sys.stderr, flush=True)
                    await bench.close()  # the next figure starts from a fresh system
                    continue
                figures.extend(got)
                print(table(got), flush=True)
                if compared := side_by_side(got):
                    print(comparison_table(compared), flush=True)
                print(f"   ({time.monotonic() - started:.0f}s)", flush=True)
        finally:
            await bench.close()
    return figures, errors


def main(argv: list[str]) -> int:
    p = parser()
    args = p.parse_args(argv)
    unknown = [name for name in args.names if name not in FIGURES]
    if unknown:
        p.error(f"unknown figure {unknown[0]!r}; known: {', '.join(FIGURES)}")
    names = list(dict.fromkeys(args.names)) or list(FIGURES)
    runs = args.runs or (1 if args.quick else 3)
    # Logs go to stderr and only when something is wrong: stdout is the report.
    configure_logging("console", "error", process="bench")
    host = machine()
    print(f"fabric bench ({'quick' if args.quick else 'full'}, {runs} run(s) per figure) on "
          f"{host['nproc']} x {host['cpu_model']}, load {host['load_average_at_start']}", flush=True)
    started = time.monotonic()
    try:
        figures, errors = asyncio.run(run(names, args.quick, runs, args.bus))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("fabric bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    doc = document(figures, mode="quick" if args.quick else "full",
                   command=shlex.join(["./bin/fabric", "bench", *argv]), host=host,
                   seconds=time.monotonic() - started)
    doc["errors"] = errors
    path = from_caller(str(args.json)) if args.json else default_json_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(doc, indent=2) + "\n")
    if figures:
        print("\n== all figures\n" + table(figures, details=False))
    if compared := side_by_side(figures):
        print("\n== bus by bus\n" + comparison_table(compared))
    print(f"figures written to {path}")
    return 1 if errors else 0
