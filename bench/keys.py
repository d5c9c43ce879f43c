"""CURVE keys for the benchmarks: the brokers they start run with security on, as deployed.

One key set per bench run, in a private temp dir (removed at exit) that is also
the broker's allow-list:

    broker_flags()      # --curve-secret, --curve-clients for bin/broker
    api_keys()          # ClientKeys of the `api` identity: publishes account events,
                        # lists consumers, reads `cache*` consumers
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from transport.curve import API, BROKER, ensure_certificate, load_client_keys, public_file, secret_file
from transport.sockets import ClientKeys


@functools.cache
def _keys_dir() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="fabric-bench-keys-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    for identity in (BROKER, API):
        _ = ensure_certificate(directory, identity)
    return directory


def broker_flags() -> list[str]:
    return ["--curve-secret", str(secret_file(_keys_dir(), BROKER)), "--curve-clients", str(_keys_dir())]


@functools.cache
def api_keys() -> ClientKeys:
    return load_client_keys(secret_file(_keys_dir(), API), public_file(_keys_dir(), BROKER))
