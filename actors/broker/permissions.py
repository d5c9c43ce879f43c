"""Who may do what at the broker: every request checked against its sender's CURVE identity.

The identity is the ZAP user id libzmq attaches to each message (the name of
the client's certificate, `transport.curve`), never a field the client writes:

- `api` publishes account events (`account:*` keys) and consumes `cache*`
  consumers (the query cache, its rebuilds); it may list consumers and delete
  any of them.
- `cluster-NAME` consumes only `cluster:NAME`, and only account keys (a SYNC
  prefix within `account:`); pings, acks and deletes (a reset of its own
  position) only that consumer; publishes only outcome events for NAME (key
  `outcome:NAME:*`, payload `cluster` NAME). It may not list consumers.
- Anyone authenticated may ping without a consumer (the head: a liveness probe).
- Any other identity may do nothing else.

Each check returns None when allowed, else the reason of the refusal (the
broker answers FORBIDDEN, logs it and stores nothing).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import assert_never

import structlog

from core.envelope import Envelope
from core.events import ACCOUNT_KEY_PREFIX, OUTCOME_KEY_PREFIX
from transport import protocol
from transport.curve import API, CLUSTER_PREFIX, IDENTITY

CACHE_CONSUMERS = "cache"
CLUSTER_CONSUMER = "cluster:"


@dataclass(frozen=True, slots=True)
class ApiPeer:
    pass


@dataclass(frozen=True, slots=True)
class ClusterPeer:
    name: str

    @property
    def consumer(self) -> str:
        return f"{CLUSTER_CONSUMER}{self.name}"

    @property
    def outcome_prefix(self) -> str:
        return f"{OUTCOME_KEY_PREFIX}{self.name}:"


@dataclass(frozen=True, slots=True)
class OtherPeer:
    user_id: str


Peer = ApiPeer | ClusterPeer | OtherPeer


@functools.lru_cache(maxsize=1024)
def peer_of(user_id: str) -> Peer:
    if not IDENTITY.fullmatch(user_id):
        return OtherPeer(user_id)
    if user_id == API:
        return ApiPeer()
    return ClusterPeer(user_id.removeprefix(CLUSTER_PREFIX))


def request_refusal(peer: Peer, request: protocol.ControlRequest) -> str | None:
    """Whether `peer` may make this control request (a PUB's envelopes: `envelope_refusal`)."""
    match request:
        case protocol.PublishRequest():
            return None if isinstance(peer, ApiPeer | ClusterPeer) else _nothing(peer)
        case protocol.SyncRequest(consumer=consumer, key_prefix=prefix):
            refused = consumer_refusal(peer, consumer)
            if refused is not None or not isinstance(peer, ClusterPeer):
                return refused
            if not prefix.startswith(ACCOUNT_KEY_PREFIX):
                return f"cluster {peer.name} may read only keys under {ACCOUNT_KEY_PREFIX!r}"
            return None
        case protocol.PingRequest(consumer=consumer):
            return None if consumer is None else consumer_refusal(peer, consumer)
        case protocol.ListRequest():
            return None if isinstance(peer, ApiPeer) else "only the api may list consumers"
        case protocol.RemoveRequest(consumer=consumer):
            # The api forgets clusters that are gone; a daemon resets its own position.
            return None if isinstance(peer, ApiPeer) else consumer_refusal(peer, consumer)
        case _:
            assert_never(request)


def consumer_refusal(peer: Peer, consumer: str) -> str | None:
    """Whether `peer` may read, ping, ack or (a cluster) delete `consumer`."""
    match peer:
        case ApiPeer():
            if consumer.startswith(CACHE_CONSUMERS):
                return None
            return f"the api may use only {CACHE_CONSUMERS}* consumers"
        case ClusterPeer():
            if consumer == peer.consumer:
                return None
            return f"cluster {peer.name} may use only the consumer {peer.consumer}"
        case OtherPeer():
            return _nothing(peer)
        case _:
            assert_never(peer)


def envelope_refusal(peer: Peer, envelope: Envelope) -> str | None:
    """Whether `peer` may publish this envelope."""
    match peer:
        case ApiPeer():
            if envelope.key.startswith(ACCOUNT_KEY_PREFIX):
                return None
            return f"the api may publish only account events ({ACCOUNT_KEY_PREFIX}* keys)"
        case ClusterPeer():
            if not envelope.key.startswith(peer.outcome_prefix):
                return f"cluster {peer.name} may publish only {peer.outcome_prefix}* keys"
            if envelope.payload.get("cluster") != peer.name:
                return f"cluster {peer.name} may publish only outcomes whose cluster is {peer.name}"
            return None
        case OtherPeer():
            return _nothing(peer)
        case _:
            assert_never(peer)


def log_refused(
    log: structlog.stdlib.BoundLogger, user_id: str, request: protocol.ControlRequest | protocol.Ack,
    reason: str, *, key: str | None = None,
) -> None:
    """The `request_refused` line: who (the identity), what (request kind, consumer, key), why."""
    log.warning(
        "request_refused", identity=user_id, request=kind_of(request),
        consumer=getattr(request, "consumer", None), key=key, reason=reason,
    )


def kind_of(request: protocol.ControlRequest | protocol.Ack) -> str:
    """The wire name of a request's kind, for log lines."""
    match request:
        case protocol.PublishRequest():
            return "PUB"
        case protocol.SyncRequest():
            return "SYNC"
        case protocol.PingRequest():
            return "PING"
        case protocol.ListRequest():
            return "LIST"
        case protocol.RemoveRequest():
            return "DEL"
        case protocol.Ack():
            return "ACK"
        case _:
            assert_never(request)


def _nothing(peer: OtherPeer) -> str:
    return f"identity {peer.user_id!r} is granted nothing"
