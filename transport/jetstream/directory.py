"""The consumer directory on JetStream: every durable consumer of the stream, as `ConsumerInfo`.

- `acked_seq`: the consumer's position (`ConsumerState.position`: its ack
  floor, or the stream's end when nothing matching is pending or unacked);
- `lag`: records matching its filter not yet acked (pending + delivered-unacked);
- `last_seen`: the latest of the server's last delivery/ack and the last time
  this directory saw a pull request of it waiting;
- `online`: seen within `offline_after` seconds. A stopped daemon's pull
  request expires after its poll interval, so it goes offline.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import TracebackType

from core.bus import ConsumerInfo
from transport.jetstream.connection import Connection
from transport.jetstream.consumer import ConsumerState, delete_consumer
from transport.jetstream.stream import last_seq
from transport.jetstream.subjects import consumer_name, durable_name

PAGE = 256


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str | None) -> float | None:
    """An RFC 3339 time from the server (nanosecond fractions) as a POSIX timestamp."""
    if not text:
        return None
    head, _, rest = text.rstrip("Z").partition(".")
    fraction = "".join(c for c in rest if c.isdigit())[:6]
    try:
        moment = datetime.fromisoformat(f"{head}.{fraction or '0'}+00:00")
    except ValueError:
        return None
    # Go's zero time (never active) is not a moment to report.
    return None if moment.year < 2000 else moment.timestamp()


class JetStreamDirectory:
    def __init__(self, conn: Connection, *, stream: str, offline_after: float) -> None:
        self._conn = conn
        self._stream = stream
        self._offline_after = offline_after
        self._seen_waiting: dict[str, float] = {}

    async def __aenter__(self) -> JetStreamDirectory:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def consumers(self) -> list[ConsumerInfo]:
        """Every durable consumer of the stream; `BusUnavailable` when JetStream does not answer."""
        stream_last = await last_seq(self._conn, self._stream)  # before the states: see position()
        states = await self._states()
        now = time.time()
        out: list[ConsumerInfo] = []
        for state in states:
            if state.num_waiting > 0:
                self._seen_waiting[state.durable] = now
            seen = max(
                (t for t in (parse_time(state.last_active), self._seen_waiting.get(state.durable)) if t),
                default=None,
            )
            out.append(
                ConsumerInfo(
                    name=consumer_name(state.durable),
                    acked_seq=state.position(stream_last),
                    lag=state.num_pending + state.num_ack_pending,
                    last_seen=None if seen is None else iso(seen),
                    online=seen is not None and now - seen <= self._offline_after,
                )
            )
        return sorted(out, key=lambda info: info.name)

    async def _states(self) -> list[ConsumerState]:
        states: list[ConsumerState] = []
        while True:
            reply = await self._conn.request(
                f"$JS.API.CONSUMER.LIST.{self._stream}", {"offset": len(states)}
            )
            page = [ConsumerState.from_info(info) for info in reply.get("consumers") or []]
            states += page
            if not page or len(states) >= int(reply.get("total", 0)):
                return states

    async def remove(self, name: str) -> bool:
        """Forget a consumer; False if unknown. A running one creates itself again."""
        try:
            durable = durable_name(name)
        except ValueError:
            return False
        self._seen_waiting.pop(durable, None)
        return await delete_consumer(self._conn, self._stream, durable)
