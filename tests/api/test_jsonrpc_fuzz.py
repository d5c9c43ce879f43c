"""Property tests of the JSON-RPC layer: whatever arrives, the reply is valid JSON-RPC or nothing.

Hypothesis generates arbitrary JSON documents shaped like requests and
arbitrary bytes; the dispatcher must never raise, and every reply must be a
Response object (or an array of them) with exactly one of result/error, one
per request that carried a valid id.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.api.jsonrpc import _UNSURE, Dispatcher, RpcError, _parse_plain, _parse_strict, parse
from tests.api.spec_server import spec_table

DISPATCHER = Dispatcher(spec_table(), max_batch=10)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2.0]) | json_values,
        "method": st.sampled_from(["subtract", "sum", "get_data", "rpc.discover", "nope"]) | json_values,
        "params": json_values,
        "id": json_values,
    },
)
documents = requests | st.lists(requests | json_values, max_size=12) | json_values


def _check_response(reply: Any) -> None:
    assert isinstance(reply, dict)
    assert reply["jsonrpc"] == "2.0"
    assert "id" in reply
    assert ("result" in reply) != ("error" in reply)
    if "error" in reply:
        assert isinstance(reply["error"]["code"], int)
        assert isinstance(reply["error"]["message"], str)


def _run(body: bytes) -> Any:
    import asyncio

    return asyncio.run(DISPATCHER.handle(body)).body


@settings(max_examples=300, deadline=None, derandomize=True)
@given(documents)
def test_any_json_document_gets_a_valid_reply_or_none(document: Any) -> None:
    raw = _run(json.dumps(document).encode())
    if raw is None:
        return
    reply = json.loads(raw)
    if isinstance(reply, list):
        assert isinstance(document, list)
        assert reply, "never an empty array"
        for item in reply:
            _check_response(item)
    else:
        _check_response(reply)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=64))
def test_any_bytes_get_a_valid_reply_or_none(body: bytes) -> None:
    raw = _run(body)
    if raw is not None:
        reply = json.loads(raw)
        for item in reply if isinstance(reply, list) else [reply]:
            _check_response(item)


def _verdict(parse_one: Any, body: bytes) -> Any:
    try:
        return ("value", repr(parse_one(body)))
    except RpcError as exc:
        return ("error", exc.code, exc.data)


def _texts_and_mutations() -> st.SearchStrategy[bytes]:
    """JSON texts as a caller might send them, and the same texts broken in the ways where
    orjson and the strict decoder differ: duplicates, long numbers, lone surrogates, a BOM."""
    texts = documents.map(lambda d: json.dumps(d).encode())
    tricks = st.sampled_from([
        b'{"a":1,"a":2}', b'{"a":1,"\\u0061":2}', b'{"a:":1,"a:":2}', b'{"x":"a:b"}',
        b'{"n":' + b"1" * 19 + b"}", b'{"n":-9223372036854775809}', b'{"n":18446744073709551616}',
        b'{"n":' + b"1" * 41 + b"}", b'{"n":1.' + b"0" * 45 + b"1}", b'{"n":1e400}', b'{"n":1e-400}',
        b'{"s":"\\ud800"}', b'\xef\xbb\xbf{}', b'{"a":NaN}', b'[' * 40 + b']' * 40, b'{"a":"\xff"}',
    ])
    return texts | tricks | st.tuples(texts, tricks).map(lambda p: b"[" + p[0] + b"," + p[1] + b"]")


@settings(max_examples=500, deadline=None, derandomize=True)
@given(_texts_and_mutations() | st.binary(max_size=64))
def test_the_fast_decoder_agrees_with_the_strict_one(body: bytes) -> None:
    assert _verdict(parse, body) == _verdict(_parse_strict, body)


def test_the_fast_decoder_takes_a_plain_request_and_leaves_the_rest() -> None:
    assert _parse_plain(b'{"jsonrpc":"2.0","method":"m","params":{"id":"x"},"id":7}') == {
        "jsonrpc": "2.0", "method": "m", "params": {"id": "x"}, "id": 7}
    for unsure in (b'{"a":1,"a":2}', b'{"x":"a:b"}', b'{"n":1.5}', b'{"s":"\\ud800"}', b'{"n":'
                   + b"9" * 30 + b"}"):
        assert _parse_plain(unsure) is _UNSURE
