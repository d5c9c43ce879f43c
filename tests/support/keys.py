"""CURVE keys for tests: every broker a test starts runs with security on, as `fabric up`'s does.

One key set per test session, in a private temp dir that is also every test
broker's allow-list. An identity's certificate is created on its first use, and
the broker admits it from then on (it re-reads its allow-list when it changes):

    broker_flags()               # --curve-secret, --curve-clients for bin/broker
    client_flags("cluster-east") # --broker-key, --broker-public-key for bin/daemon, bin/api
    broker_env(), client_env(ID) # the same as FABRIC_* environment variables
    client_keys("api")           # ClientKeys for the in-process client library
    api_keys()                   # the same for `api`
    consumer_keys("cluster:a")   # the identity that may use a consumer (cluster-a; else api)
    publisher_keys("outcome:a:x")# the identity that may publish a key (cluster-a; else api)
    stranger_keys()              # a valid key pair on no allow-list
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from transport.curve import (
    API,
    BROKER,
    cluster_identity,
    ensure_certificate,
    key_pair,
    load_client_keys,
    load_server_keys,
    public_file,
    secret_file,
)
from transport.sockets import ClientKeys, ServerKeys


@functools.cache
def keys_dir() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="fabric-test-keys-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    ensure_certificate(directory, BROKER)
    return directory


def broker_secret() -> Path:
    return secret_file(keys_dir(), BROKER)


def broker_public() -> Path:
    return public_file(keys_dir(), BROKER)


def server_keys() -> ServerKeys:
    return load_server_keys(broker_secret())


def client_secret(identity: str) -> Path:
    """`identity`'s certificate (created, and so admitted, on first use)."""
    _ = ensure_certificate(keys_dir(), identity)
    return secret_file(keys_dir(), identity)


def client_keys(identity: str) -> ClientKeys:
    return load_client_keys(client_secret(identity), broker_public())


def api_keys() -> ClientKeys:
    return client_keys(API)


def consumer_identity(consumer: str) -> str:
    cluster = consumer.removeprefix("cluster:")
    return cluster_identity(cluster) if cluster != consumer else API


def publisher_identity(key: str) -> str:
    kind, _, rest = key.partition(":")
    return cluster_identity(rest.partition(":")[0]) if kind == "outcome" else API


def consumer_keys(consumer: str) -> ClientKeys:
    return client_keys(consumer_identity(consumer))


def publisher_keys(key: str) -> ClientKeys:
    return client_keys(publisher_identity(key))


def broker_flags() -> tuple[str, ...]:
    return ("--curve-secret", str(broker_secret()), "--curve-clients", str(keys_dir()))


def client_flags(identity: str) -> tuple[str, ...]:
    return ("--broker-key", str(client_secret(identity)), "--broker-public-key", str(broker_public()))


def broker_env() -> dict[str, str]:
    """`broker_flags` as the environment variables bin/broker reads."""
    return {
        "FABRIC_BROKER_CURVE_SECRET": str(broker_secret()),
        "FABRIC_BROKER_CURVE_CLIENTS": str(keys_dir()),
    }


def client_env(identity: str) -> dict[str, str]:
    """`client_flags` as the environment variables bin/api and bin/daemon read."""
    return {
        "FABRIC_BROKER_KEY": str(client_secret(identity)),
        "FABRIC_BROKER_PUBLIC_KEY": str(broker_public()),
    }


def stranger_keys() -> ClientKeys:
    """A well-formed key pair that no broker lists, talking to the test broker's key."""
    public, secret = key_pair()
    return ClientKeys(public=public, secret=secret, server=server_keys().public)
