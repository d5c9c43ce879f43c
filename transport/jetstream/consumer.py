"""A durable pull consumer's server side: create it, read its state, reset it, delete it.

Configuration: DeliverPolicy ALL (a new consumer starts from the compacted
state), AckPolicy ALL (our cumulative ack), one filter subject from the key
prefix, `ack_wait` before an unacked delivery comes again. The create request
goes to `$JS.API.CONSUMER.CREATE.<stream>.<durable>.<filter>`, so an identity's
permissions pin both its durable and its filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transport.jetstream.connection import NOT_FOUND, ApiError, Connection
from transport.jetstream.stream import NS, last_seq, next_matching
from transport.jetstream.subjects import consumer_api

MAX_ACK_PENDING = 20_000


@dataclass(frozen=True, slots=True)
class ConsumerState:
    """What the server says of a consumer (the parts we use)."""

    durable: str
    filter_subject: str
    ack_floor: int
    delivered: int
    delivered_consumer: int
    num_pending: int
    num_ack_pending: int
    num_waiting: int
    last_active: str | None

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> ConsumerState:
        delivered = info.get("delivered", {})
        floor = info.get("ack_floor", {})
        actives = [str(x) for x in (delivered.get("last_active"), floor.get("last_active")) if x]
        return cls(
            durable=str(info.get("name", "")),
            filter_subject=str(info.get("config", {}).get("filter_subject") or ">"),
            ack_floor=int(floor.get("stream_seq", 0)),
            delivered=int(delivered.get("stream_seq", 0)),
            delivered_consumer=int(delivered.get("consumer_seq", 0)),
            num_pending=int(info.get("num_pending", 0)),
            num_ack_pending=int(info.get("num_ack_pending", 0)),
            num_waiting=int(info.get("num_waiting", 0)),
            # RFC 3339 strings of one format: the later one sorts last.
            last_active=max(actives) if actives else None,
        )

    def position(self, stream_last: int) -> int:
        """The consumer's position as one integer. The server's ack floor stops at the last
        record the filter matched; when nothing matching is pending or unacked, the consumer is
        past everything stored (`stream_last`, read before this state). The counts come from the
        consumer's leader (see `position_of` for the confirmed form)."""
        if self.num_pending == 0 and self.num_ack_pending == 0:
            return max(self.ack_floor, stream_last)
        return self.ack_floor


def consumer_config(durable: str, filter_subject: str, ack_wait: float) -> dict[str, Any]:
    return {
        "name": durable,
        "durable_name": durable,
        "deliver_policy": "all",
        "ack_policy": "all",
        "ack_wait": int(ack_wait * NS),
        "max_deliver": -1,
        "max_ack_pending": MAX_ACK_PENDING,
        "filter_subject": filter_subject,
        "replay_policy": "instant",
    }


async def ensure_consumer(
    conn: Connection, stream: str, durable: str, filter_subject: str, ack_wait: float
) -> ConsumerState:
    """Create the durable (or update its filter and ack wait): its state."""
    subject = f"{consumer_api('CREATE', durable, stream)}.{filter_subject}"
    body = {"stream_name": stream, "config": consumer_config(durable, filter_subject, ack_wait)}
    return ConsumerState.from_info(await conn.request(subject, body))


async def consumer_state(conn: Connection, stream: str, durable: str) -> ConsumerState | None:
    try:
        return ConsumerState.from_info(await conn.request(consumer_api("INFO", durable, stream)))
    except ApiError as exc:
        if exc.code == NOT_FOUND:
            return None
        raise


async def reset_consumer(conn: Connection, stream: str, durable: str, seq: int) -> None:
    """Deliver again from stream seq `seq`: forgets deliveries not acked (nats-server 2.14+)."""
    _ = await conn.request(consumer_api("RESET", durable, stream), {"seq": seq})


async def delete_consumer(conn: Connection, stream: str, durable: str) -> bool:
    try:
        reply = await conn.request(consumer_api("DELETE", durable, stream))
    except ApiError as exc:
        if exc.code == NOT_FOUND:
            return False
        raise
    return bool(reply.get("success"))


async def delivered_through(
    conn: Connection, stream: str, filter_subject: str, position: int
) -> int | None:
    """How far a subscriber that has received everything up to `position` has read, when it is
    caught up: the stream's end if nothing on its filter is stored beyond `position` (the rest
    are records its filter skips). None when it is not caught up."""
    stream_last = await last_seq(conn, stream)
    if await next_matching(conn, stream, filter_subject, position) is not None:
        return None
    return max(position, stream_last)


async def position_of(conn: Connection, stream: str, durable: str) -> tuple[int, ConsumerState | None]:
    """The consumer's position and its state; (0, None) if unknown. Past its ack floor only
    when the stream's leader confirms nothing on its filter is stored beyond the floor (see
    `stream.next_matching`)."""
    stream_last = await last_seq(conn, stream)
    state = await consumer_state(conn, stream, durable)
    if state is None:
        return 0, None
    position = state.position(stream_last)
    if position > state.ack_floor and await next_matching(
        conn, stream, state.filter_subject, state.ack_floor
    ) is not None:
        position = state.ack_floor
    return position, state
