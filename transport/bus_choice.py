"""Which bus a process talks to: its settings, the `core.bus.BusConnector` for them, one access check.

Two buses implement the same port: our own broker over CurveZMQ (`zmq`, the
default) and NATS JetStream (`jetstream`). `bin/api`, `bin/daemon` and the
probes of `fabric up` describe the bus they use as a `BusSettings` and get
everything else from here:

- `bus_from_args`: the bus from the parsed bus settings every bus client
  shares (declared once, in `actors.runtime.settings.BUS_SETTINGS`); a bad
  value is a `ValueError` with one line.
- `connector_for(bus)`: the connector, with its credentials read from their
  files now, so a missing or unreadable file is a `BusSettingError` (one line)
  at start, not a retry loop later.
- `check_access(bus, consumer)`: the one bounded startup check. It raises
  `transport.access.BusRefused` when the bus refuses our credentials or our use
  of `consumer`; it returns False when the bus could not be asked (not up yet:
  the caller starts anyway and retries as always), True when it let us in.

The NATS client library is imported only when the JetStream bus is chosen, so a
process on the zmq bus neither pays for it nor needs it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, assert_never

from core.bus import BusConnector, BusUnavailable
from transport import access
from transport.connector import BrokerConnector
from transport.curve import KeyFileError, KeyFiles
from transport.endpoints import BrokerEndpoints
from transport.sockets import ClientKeys, close_context, new_context

if TYPE_CHECKING:
    from transport.jetstream.connector import JetStreamConnector

BusName = Literal["zmq", "jetstream"]
BUS_NAMES: tuple[BusName, ...] = ("zmq", "jetstream")
# JetStream keeps at most five copies of a stream.
MAX_REPLICAS = 5


class BusSettingError(ValueError):
    """A bus setting cannot be used (a credential file unreadable); the message says which."""


@dataclass(frozen=True, slots=True)
class ZmqBus:
    """Our broker: its three addresses and this process's CURVE key files."""

    endpoints: BrokerEndpoints
    keys: KeyFiles

    def __str__(self) -> str:
        return f"zmq {self.endpoints}"


@dataclass(frozen=True, slots=True)
class JetStreamBus:
    """A NATS cluster with JetStream: its servers, our user and the file holding its password."""

    servers: tuple[str, ...]
    user: str
    password_file: Path
    replicas: int = 1
    # A consumer whose pulls stopped this long ago is offline (the zmq broker's --consumer-timeout).
    offline_after: float = 10.0

    def __str__(self) -> str:
        return f"jetstream {','.join(self.servers)} as {self.user} (replicas {self.replicas})"


BusSettings = ZmqBus | JetStreamBus


def bus_name(text: str) -> BusName:
    """argparse `type=` of `--bus` (it checks env defaults too, which `choices=` does not)."""
    for name in BUS_NAMES:
        if text == name:
            return name
    raise argparse.ArgumentTypeError(f"expected one of {', '.join(BUS_NAMES)}, got {text!r}")


def nats_servers(text: str) -> tuple[str, ...]:
    """`URL[,URL...]`: the NATS servers to try (any one of a cluster's is enough to join it)."""
    servers = tuple(s.strip() for s in text.split(",") if s.strip())
    if not servers:
        raise argparse.ArgumentTypeError(f"expected nats://HOST:PORT[,...], got {text!r}")
    for server in servers:
        scheme, sep, rest = server.partition("://")
        if not sep or scheme not in ("nats", "tls") or not rest:
            raise argparse.ArgumentTypeError(f"expected nats://HOST:PORT, got {server!r}")
    return servers


def replicas(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_REPLICAS:
        raise argparse.ArgumentTypeError(f"expected an integer in 1..{MAX_REPLICAS}, got {text!r}")
    return int(text)


def bus_from_args(ns: argparse.Namespace, *, identity: str) -> BusSettings:
    """The bus from the parsed bus settings (`actors.runtime.settings.BUS_SETTINGS`); ValueError
    with one line. Only the chosen bus's settings are checked: the other's are ignored, as
    documented, even when an inherited variable is malformed."""
    if ns.bus == "jetstream":
        return jetstream_from_args(ns, identity=identity)
    if not ns.broker:
        raise ValueError("--broker (or FABRIC_BROKER) is required on the zmq bus: the broker's "
                         "CONTROL,EVENTS,ACKS addresses")
    try:
        endpoints = BrokerEndpoints.parse(ns.broker)
    except ValueError as exc:
        raise ValueError(f"--broker: {exc}") from None
    for address in (endpoints.control, endpoints.events, endpoints.acks):
        if "://" not in address:
            raise ValueError(f"--broker: not a zmq address (tcp://HOST:PORT): {address!r}")
    if ns.broker_key is None or ns.broker_public_key is None:
        raise ValueError("--broker-key and --broker-public-key (or FABRIC_BROKER_KEY and "
                         "FABRIC_BROKER_PUBLIC_KEY) are required: the broker takes CURVE clients only")
    return ZmqBus(endpoints, KeyFiles(secret=ns.broker_key, server_public=ns.broker_public_key))


def jetstream_from_args(ns: argparse.Namespace, *, identity: str) -> JetStreamBus:
    """The JetStream settings from the parsed `--nats-*` flags; ValueError with one line."""
    if ns.nats_url is None:
        raise ValueError("--nats-url (or FABRIC_NATS_URL) is required with --bus jetstream")
    if ns.nats_password_file is None:
        raise ValueError("--nats-password-file (or FABRIC_NATS_PASSWORD_FILE) is required with "
                         "--bus jetstream")
    try:
        servers = nats_servers(ns.nats_url)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"--nats-url: {exc}")
    try:
        copies = replicas(ns.nats_replicas)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"--nats-replicas: {exc}")
    try:
        offline_after = float(ns.nats_offline_after)
    except ValueError:
        offline_after = -1.0
    if not 0 < offline_after < float("inf"):
        raise ValueError(f"--nats-offline-after: expected a positive number, got {ns.nats_offline_after!r}")
    return JetStreamBus(servers, user=ns.nats_user or identity, password_file=ns.nats_password_file,
                        replicas=copies, offline_after=offline_after)


def connector_for(bus: BusSettings) -> BusConnector:
    """The connector for `bus`; raises `BusSettingError` when a credential file is unusable."""
    match bus:
        case ZmqBus():
            return BrokerConnector(bus.endpoints, keys=_client_keys(bus))
        case JetStreamBus():
            return _jetstream(bus)
        case _:
            assert_never(bus)


async def check_access(bus: BusSettings, consumer: str) -> bool:
    """True when the bus let us in (and lets us use `consumer`), False when it could not be
    asked; raises `BusRefused` when it refused either, `BusSettingError` on unusable files."""
    match bus:
        case ZmqBus():
            keys = _client_keys(bus)
            ctx = new_context()
            try:
                return await access.check_access(ctx, bus.endpoints, keys, consumer=consumer)
            finally:
                close_context(ctx)
        case JetStreamBus():
            try:
                return await _jetstream(bus).check_access(consumer)
            except access.BusRefused:
                raise
            except BusUnavailable:
                return False
        case _:
            assert_never(bus)


def _client_keys(bus: ZmqBus) -> ClientKeys:
    try:
        return bus.keys.load()
    except KeyFileError as exc:
        raise BusSettingError(str(exc)) from None


def _jetstream(bus: JetStreamBus) -> JetStreamConnector:
    # Imported here: only processes on this bus load the NATS client.
    from transport.jetstream.connector import JetStreamConnector
    from transport.jetstream.identities import load_password

    try:
        password = load_password(bus.password_file)
    except ValueError as exc:
        raise BusSettingError(f"--nats-password-file: {exc}") from None
    return JetStreamConnector(list(bus.servers), user=bus.user, password=password, replicas=bus.replicas,
                              offline_after=bus.offline_after)
