"""JSON values the emulator stores and serves: copied and encoded by orjson.

Objects are JSON all the way down (request bodies with a number that is not
finite are refused when read, actors/kube_emulator/api.py), so a copy through
orjson is the same value as `copy.deepcopy` makes, at a third of its cost, and
its encoding is compact like the API server's. An integer beyond 64 bits (which
a client can send, and the API server would refuse) is the exception: those take
the standard library's way.
"""

from __future__ import annotations

import copy as _copy
import json
from typing import Any, TypeVar

import orjson

T = TypeVar("T")


def copy(value: T) -> T:
    try:
        copied: T = orjson.loads(orjson.dumps(value))
    except TypeError:
        return _copy.deepcopy(value)
    return copied


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()
