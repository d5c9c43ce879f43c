"""The transport decodes envelope bytes with its own compiled decoder: it must give the
domain's verdict (`Envelope.from_wire`) on every input, accepted or refused."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from core.envelope import Envelope, InvalidEnvelope
from tests.core.test_envelope import MALFORMED, wire
from transport import codec

UPPER_ID = "3F1C1F9E-1A47-4A7C-9A55-4E0A8F0E2B6A"

VALID: list[dict[str, Any]] = [
    wire(),
    wire(event_id=UPPER_ID),  # normalised to the canonical form by both
    wire(tombstone=True, schema_version=1000),
    wire(aggregate_id="a" * 64, correlation_id="c" * 64, occurred_at="o" * 64),
    wire(type="a" * 30 + "." + "b" * 33, key="account:" + "k" * 152),
    wire(payload={}),
    wire(payload={"": None, "flag": False, "n": -(2**63), "big": 2**64 - 1, "s": "x" * 4096}),
    wire(payload={str(i): i for i in range(32)}),
]


def packed(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize("obj", VALID)
def test_what_the_schema_accepts_decodes_to_the_same_envelope(obj: dict[str, Any]) -> None:
    expected = Envelope.from_wire(obj)
    assert codec.decode_envelope(packed(obj)) == expected
    assert codec.decode_envelope_under(packed(obj), "account:") == expected


def test_an_upper_case_event_id_arrives_in_canonical_form() -> None:
    assert codec.decode_envelope(packed(wire(event_id=UPPER_ID))).event_id == UPPER_ID.lower()


@pytest.mark.parametrize("obj", MALFORMED)
def test_what_the_schema_refuses_the_decoder_refuses(obj: object) -> None:
    with pytest.raises(InvalidEnvelope):
        Envelope.from_wire(obj)
    with pytest.raises((InvalidEnvelope, codec.CodecError)):
        codec.decode_envelope(packed(obj))


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", packed(wire())[:-3], packed(wire()) + b"\x00",
     b"\x00" * (codec.MAX_INPUT + 1)],
)
def test_bytes_that_are_no_msgpack_value_are_a_codec_error(data: bytes) -> None:
    with pytest.raises(codec.CodecError):
        codec.decode_envelope(data)


@pytest.mark.parametrize("ext", [msgpack.ExtType(5, b"abc"), msgpack.Timestamp(1, 0)])
def test_ext_types_are_refused_anywhere(ext: object) -> None:
    for obj in (ext, wire(payload={"t": ext}), wire(occurred_at=ext)):
        with pytest.raises((InvalidEnvelope, codec.CodecError)):
            codec.decode_envelope(packed(obj))


def test_records_under_another_prefix_are_skipped_unchecked_and_ours_are_checked() -> None:
    theirs = wire(key="outcome:east:x", type="Not A Type")
    assert codec.decode_envelope_under(packed(theirs), "account:") is None
    assert codec.decode_envelope_under(packed(wire()), "outcome:") is None
    with pytest.raises(InvalidEnvelope):
        codec.decode_envelope_under(packed(wire(type="Not A Type")), "account:")
    with pytest.raises(codec.CodecError):
        codec.decode_envelope_under(b"\xc1", "account:")
