"""The msgpack codec refuses hostile input before any schema check sees it."""

from __future__ import annotations

import msgpack
import pytest

from transport import codec


def test_plain_values_round_trip() -> None:
    value = {"a": [1, "x", None, True, b"raw"], "b": {"c": -5}}
    assert codec.decode(codec.encode(value)) == value


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xdd\xff\xff\xff\xff", "array header claiming 2**32-1 items"),
        (b"\xdf\xff\xff\xff\xff", "map header claiming 2**32-1 entries"),
        (b"\x91" * 2000 + b"\xc0", "nesting 2000 deep"),
        (b"\x91" * 9 + b"\xc0", "nesting past the limit"),
        (msgpack.packb(msgpack.ExtType(5, b"abc")), "ext type"),
        (b"\xd6\xff\x00\x00\x00\x01", "timestamp ext"),
        (msgpack.packb({1: "int key"}), "int map key"),
        (b"\xa3\xff\xfe\xfd", "invalid utf-8 string"),
        (msgpack.packb(1) + b"\x00", "trailing bytes"),
        (b"\xc1", "reserved byte"),
        (b"", "empty input"),
        (b"\xda\xff\xff", "truncated string"),
        (msgpack.packb("x" * (codec.MAX_STR + 1)), "string too long"),
        (b"\x00" * (codec.MAX_INPUT + 1), "input too long"),
    ],
)
def test_hostile_input_is_refused_with_codec_error(data: bytes, reason: str) -> None:
    with pytest.raises(codec.CodecError):
        codec.decode(data)


def test_a_megabyte_of_empty_maps_is_refused_by_item_count() -> None:
    data = b"\xdc" + (60000).to_bytes(2, "big") + b"\x80" * 60000
    with pytest.raises(codec.CodecError):
        codec.decode(data)


def test_unencodable_values_raise_codec_error() -> None:
    with pytest.raises(codec.CodecError):
        codec.encode({"x": object()})
