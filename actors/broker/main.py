"""bin/broker: parse settings, configure logging, run the broker until SIGTERM/SIGINT.

Exit codes: 0 after a clean stop; 1 when the broker actor failed (e.g. an
fdatasync error: a fresh process must recover from disk); 2 for a bad setting,
a CURVE certificate or allow-list that cannot be read, a data dir that cannot
be used or an address that cannot be bound; 3 when the
log cannot be trusted (a corrupt sealed segment, or a log written by another
record format: the broker refuses to start on it).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from actors.broker.metrics import BrokerMetrics
from actors.broker.segments import CorruptLog
from actors.broker.service import spawn_broker
from actors.broker.settings import BrokerSettings, parse_settings
from actors.runtime import ActorSystem, run_until_signalled
from actors.runtime.logging import configure_logging
from actors.runtime.loop import run as run_loop
from actors.runtime.metrics_server import serve_metrics
from transport.curve import KeyFileError
from transport.sockets import SocketError, close_context, new_context

# The log cleaner compacts in a worker thread, in Python: with the default 5 ms GIL switch
# interval a publish arriving meanwhile waited up to 5 ms for the loop to run. One publish
# at a time during compaction (`bench publish`, 3 runs, two A/B pairs): p99 3,424 / 3,518 ->
# 948 / 805 us, p50 453 / 435 -> 378 / 365 us; async throughput unchanged.
SWITCH_INTERVAL = 0.0005


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    configure_logging(
        "console" if settings.log_format == "console" else "json",
        settings.log_level,
        process="broker",
    )
    return run_loop(_run(settings), switch_interval=SWITCH_INTERVAL)


async def _run(settings: BrokerSettings) -> int:
    ctx = new_context()
    code = 1

    async def setup(system: ActorSystem) -> None:
        metrics = BrokerMetrics()
        if settings.metrics_listen is not None:
            # First: it stops last, so a scrape still answers while the broker drains.
            await serve_metrics(system, metrics.registry, settings.metrics_listen)
        spawn_broker(system, ctx, settings, metrics)

    try:
        code = await run_until_signalled(setup)
    except* CorruptLog as group:
        print(f"broker: refusing to start: {group.exceptions[0]}", file=sys.stderr)
        code = 3
    except* (KeyFileError, SocketError, OSError) as group:
        print(f"broker: cannot start: {group.exceptions[0]}", file=sys.stderr)
        code = 2
    finally:
        close_context(ctx)
    return code


if __name__ == "__main__":
    sys.exit(main())
