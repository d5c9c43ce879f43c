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

from actors.api.jsonrpc import Dispatcher
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
