"""The one stream, `FABRIC` on `fabric.>`: our compacted log as JetStream keeps it.

`max_msgs_per_subject=1` is the compaction (a subject is a key); `allow_msg_ttl`
lets a tombstone carry its retention (`Nats-TTL`), after which the key is gone;
`duplicate_window` is the dedup on `Nats-Msg-Id` (our event id). Only the `api`
identity may create or update it; the others wait for it to exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from transport.jetstream.connection import NOT_FOUND, ApiError, Connection
from transport.jetstream.subjects import ROOT, stream_api

log = structlog.get_logger()

NS = 1_000_000_000
STREAM_IN_USE = 10058  # "stream name already in use with a different configuration"


@dataclass(frozen=True, slots=True)
class StreamSettings:
    name: str
    replicas: int
    dedup_window: float

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "subjects": [f"{ROOT}.>"],
            "retention": "limits",
            "storage": "file",
            "discard": "old",
            "max_msgs_per_subject": 1,
            "num_replicas": self.replicas,
            "duplicate_window": int(self.dedup_window * NS),
            "allow_msg_ttl": True,
        }


async def ensure_stream(conn: Connection, settings: StreamSettings) -> None:
    """Create the stream, or bring an existing one to our settings (replicas, dedup window)."""
    body = settings.config()
    try:
        _ = await conn.request(stream_api("CREATE", settings.name), body)
        return
    except ApiError as exc:
        if exc.err_code != STREAM_IN_USE:
            raise
    current = await conn.request(stream_api("INFO", settings.name))
    merged = {**current.get("config", {}), **body}
    _ = await conn.request(stream_api("UPDATE", settings.name), merged)
    log.info("stream_updated", stream=settings.name, replicas=settings.replicas)


async def last_seq(conn: Connection, stream: str) -> int:
    """The stream's last stored seq (0 when empty)."""
    info = await conn.request(stream_api("INFO", stream))
    return int(info.get("state", {}).get("last_seq", 0))


async def next_matching(conn: Connection, stream: str, filter_subject: str, after: int) -> int | None:
    """The seq of the first stored record after `after` on `filter_subject`, or None, as the
    stream's leader knows it. A consumer's own count of what is pending comes from its leader's
    replica of the stream, which may still be catching up after a node restarted; "caught up"
    is confirmed here before we claim it."""
    try:
        reply = await conn.request(
            stream_api("MSG.GET", stream), {"seq": after + 1, "next_by_subj": filter_subject}
        )
    except ApiError as exc:
        if exc.code == NOT_FOUND:
            return None
        raise
    return int(reply["message"]["seq"])
