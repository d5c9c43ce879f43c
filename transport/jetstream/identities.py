"""NATS users mirroring the broker's identities (`transport.curve`: `api`, `cluster-NAME`), their
permissions, and their passwords on disk.

What each identity may do on NATS (publish allow list; it may subscribe only to
its own inbox prefix, `subjects.inbox_prefix`):

- `api`: publish account events (`fabric.account.>`); create, update and read
  the stream; consume its own durables (`cache`, `cache-rebuild`); list, read
  and delete any consumer (`cluster.list`, `cluster.remove`).
- `cluster-NAME`: publish only its own outcomes (`fabric.outcome.NAME.>`); read
  the stream's state and get a stored record by seq (to confirm it is caught
  up, and its position past records its filter skips); create,
  read, reset, delete, pull from and ack only its own durable `cluster_NAME`, filtered
  on account events (the filter is part of the create subject, so it is pinned).

Passwords: one random password per identity in `KEYS/IDENTITY.nats` (mode
0600), made here and written by `actors.up.layout.ensure_credentials` with the
one atomic-file helper.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from transport.curve import API, CLUSTER_PREFIX, IDENTITY
from transport.jetstream.subjects import (
    CACHE_CONSUMER,
    ROOT,
    STREAM,
    ack_subjects,
    consumer_api,
    durable_name,
    inbox_prefix,
    key_subject,
    next_subject,
    stream_api,
)

SUFFIX = ".nats"
API_CONSUMERS = (CACHE_CONSUMER, "cache-rebuild")

Permissions = tuple[list[str], list[str]]


def _own_consumer(durable: str, filter_subject: str, stream: str) -> list[str]:
    return [
        f"{consumer_api('CREATE', durable, stream)}.{filter_subject}",
        consumer_api("INFO", durable, stream),
        consumer_api("RESET", durable, stream),
        consumer_api("DELETE", durable, stream),  # a daemon without its journal starts over
        next_subject(durable, stream),
        ack_subjects(durable, stream),
    ]


def permissions(identity: str, *, stream: str = STREAM) -> Permissions:
    """(publish allow list, subscribe allow list) of `identity`; ValueError for an unknown one."""
    if not IDENTITY.fullmatch(identity):
        raise ValueError(f"not an identity: {identity!r}")
    subscribe = [f"{inbox_prefix(identity)}.>"]
    if identity == API:
        publish = [
            f"{ROOT}.account.>",
            "$JS.API.INFO",
            *(stream_api(verb, stream) for verb in ("CREATE", "UPDATE", "INFO", "MSG.GET")),
            f"$JS.API.CONSUMER.LIST.{stream}",
            f"$JS.API.CONSUMER.NAMES.{stream}",
            consumer_api("INFO", "*", stream),
            consumer_api("DELETE", "*", stream),
        ]
        for consumer in API_CONSUMERS:
            # Any filter: the api's own consumers read everything or the accounts.
            publish += _own_consumer(durable_name(consumer), ">", stream)
        return publish, subscribe
    cluster = identity.removeprefix(CLUSTER_PREFIX)
    durable = durable_name(f"cluster:{cluster}")
    publish = [
        f"{key_subject(f'outcome:{cluster}')}.>",
        stream_api("INFO", stream),
        stream_api("MSG.GET", stream),
        *_own_consumer(durable, f"{ROOT}.account.>", stream),
    ]
    return publish, subscribe


def password_file(keys_dir: Path, identity: str) -> Path:
    return keys_dir / f"{identity}{SUFFIX}"


def load_password(path: Path) -> str:
    """The password in an identity's `.nats` file; ValueError (naming the file) if unusable."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read NATS password file {path}: {exc.strerror or exc}") from None
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"NATS password file {path} holds no password")
    return text


def new_password() -> str:
    """A fresh random password for one identity (written by `fabric up` / `fabric nats config`)."""
    return secrets.token_urlsafe(32)
