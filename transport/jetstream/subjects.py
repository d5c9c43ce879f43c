"""Names on the NATS side: our keys as subjects, our consumer names as durable names, and the
JetStream API subjects each identity's permissions are built from.

Keys are `kind:segment[:segment...]` with segments of `[A-Za-z0-9._-]`; a key becomes
`fabric.kind.segment...`. A `.` inside a segment would split it into two subject tokens
(and `outcome:a.b:c` would collide with `outcome:a:b.c`, so compaction would drop one of
them), so it is written as `~`, which no key holds: the mapping is one-to-one.
"""

from __future__ import annotations

import re

ROOT = "fabric"
STREAM = "FABRIC"
API = "$JS.API"
ACK = "$JS.ACK"
CACHE_CONSUMER = "cache"
CLUSTER_CONSUMER_PREFIX = "cluster:"

_CONSUMER_RE = re.compile(r"[a-z][a-z0-9-]*(:[a-z0-9][a-z0-9-]*)?")


def _token(segment: str) -> str:
    return segment.replace(".", "~")


def key_subject(key: str) -> str:
    """`account:<id>` -> `fabric.account.<id>`;
    `outcome:<cluster>:<id>` -> `fabric.outcome.<cluster>.<id>`."""
    return ".".join([ROOT, *(_token(part) for part in key.split(":"))])


def prefix_filter(key_prefix: str) -> str:
    """The filter subject for a key prefix: "" -> every record; `account:` -> `fabric.account.>`.
    Only whole segments can be filtered on (a prefix ending in `:`)."""
    if key_prefix == "":
        return f"{ROOT}.>"
    if not key_prefix.endswith(":") or "::" in key_prefix or key_prefix.startswith(":"):
        raise ValueError(f"key prefix {key_prefix!r} must be whole segments ending in ':'")
    return f"{key_subject(key_prefix[:-1])}.>"


def durable_name(consumer: str) -> str:
    """Our consumer name as a NATS durable name (no `:` or `.` allowed there): `cluster:a` ->
    `cluster_a`. One-to-one because our names hold no `_`."""
    if not _CONSUMER_RE.fullmatch(consumer):
        raise ValueError(f"not a consumer name: {consumer!r}")
    return consumer.replace(":", "_")


def consumer_name(durable: str) -> str:
    """The inverse of `durable_name`."""
    return durable.replace("_", ":", 1)


def inbox_prefix(identity: str) -> str:
    """Each identity's replies arrive under its own prefix, so it may subscribe to nothing else."""
    return f"_INBOX_{identity}"


def next_subject(durable: str, stream: str = STREAM) -> str:
    return f"{API}.CONSUMER.MSG.NEXT.{stream}.{durable}"


def consumer_api(verb: str, durable: str, stream: str = STREAM) -> str:
    """`$JS.API.CONSUMER.<verb>.<stream>.<durable>` (INFO, DELETE, RESET, CREATE)."""
    return f"{API}.CONSUMER.{verb}.{stream}.{durable}"


def stream_api(verb: str, stream: str = STREAM) -> str:
    return f"{API}.STREAM.{verb}.{stream}"


def ack_subjects(durable: str, stream: str = STREAM) -> str:
    return f"{ACK}.{stream}.{durable}.>"
