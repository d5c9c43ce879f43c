"""msgpack's one home: encode plain values, decode untrusted bytes with strict limits.

`decode` is the first thing that touches bytes from a socket or the log. It
refuses, with `CodecError` (a ValueError), anything outside these bounds
before any of it reaches a schema check:

- input larger than `MAX_INPUT` bytes, strings or binaries longer than
  `MAX_STR`, arrays or maps with more than `MAX_ITEMS` entries;
- ext types of any kind (including msgpack's Timestamp);
- map keys that are not strings;
- nesting deeper than `MAX_DEPTH` (`decode_envelope` relies on the envelope
  schema instead, which allows two levels);
- trailing bytes after the value; invalid UTF-8 in strings.
"""

from __future__ import annotations

from typing import Any

import msgpack

from core.envelope import Envelope

MAX_INPUT = 1024 * 1024
MAX_STR = 64 * 1024
MAX_ITEMS = 4096
MAX_DEPTH = 8


class CodecError(ValueError):
    """The bytes are not a msgpack value within our limits."""


def encode(value: Any) -> bytes:
    """Encode plain values (None, bool, int, str, bytes, list, dict with str keys)."""
    try:
        return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode: {exc}") from None


def _refuse_ext(code: int, data: bytes) -> object:
    raise CodecError(f"ext type {code} is not allowed")


def decode(data: bytes, *, max_depth: int | None = MAX_DEPTH) -> Any:
    """Decode within the limits; `max_depth=None` skips the nesting walk, for callers whose
    schema check rejects nesting anyway (msgpack itself stops past 1024 levels)."""
    if len(data) > MAX_INPUT:
        raise CodecError(f"input of {len(data)} bytes exceeds {MAX_INPUT}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_refuse_ext,
            max_str_len=MAX_STR,
            max_bin_len=MAX_STR,
            max_array_len=MAX_ITEMS,
            max_map_len=MAX_ITEMS,
            max_ext_len=0,
        )
    except CodecError:
        raise
    except Exception as exc:  # msgpack raises many types (ExtraData, StackError, FormatError...)
        raise CodecError(f"not valid msgpack: {type(exc).__name__}: {exc}") from None
    if max_depth is not None:
        _check_depth(value, max_depth)
    return value


def decode_envelope(data: bytes) -> Envelope:
    """Bytes from a socket or the log to a schema-checked envelope (CodecError/InvalidEnvelope)."""
    # The schema allows only two levels (envelope, flat payload), so the depth walk is redundant.
    return Envelope.from_wire(decode(data, max_depth=None))


def decode_envelope_under(data: bytes, key_prefix: str) -> Envelope | None:
    """`decode_envelope`, or None for a record whose key is not under `key_prefix`: it is not
    checked at all (a daemon's live stream carries every cluster's outcomes, four in five of
    the records it sees in a four-cluster catch-up, and the check is most of a decode)."""
    value = decode(data, max_depth=None)
    if key_prefix:
        key = value.get("key") if isinstance(value, dict) else None
        if isinstance(key, str) and not key.startswith(key_prefix):
            return None
    return Envelope.from_wire(value)


def _check_depth(value: object, max_depth: int) -> None:
    # Level by level, visiting only containers (msgpack gives exact list/dict types); most
    # values in our messages are scalars, so this stays cheap on the hot path.
    level: list[Any] = [value] if type(value) in (list, dict) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise CodecError(f"nesting deeper than {max_depth}")
        deeper: list[Any] = []
        for item in level:
            for child in item.values() if type(item) is dict else item:
                kind = type(child)
                if kind is dict or kind is list:
                    deeper.append(child)
        level = deeper
