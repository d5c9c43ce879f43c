"""The JSON-RPC 2.0 specification's section 7 examples, over real HTTP, with a test-only method table.

Responses are compared the way the spec allows: batch replies as a multiset
keyed by id (order is free), and by code/id/result, never by message text.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.api.spec_server import spec_server

# (name, request text, expected: None = no body (204), dict = one reply, list = batch replies)
EXAMPLES: list[tuple[str, str, Any]] = [
    ("positional params", '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
     {"result": 19, "id": 1}),
    ("positional params reversed", '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
     {"result": -19, "id": 2}),
    ("named params", '{"jsonrpc": "2.0", "method": "subtract", '
     '"params": {"subtrahend": 23, "minuend": 42}, "id": 3}', {"result": 19, "id": 3}),
    ("named params in another order", '{"jsonrpc": "2.0", "method": "subtract", '
     '"params": {"minuend": 42, "subtrahend": 23}, "id": 4}', {"result": 19, "id": 4}),
    ("notification", '{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}', None),
    ("notification of a missing method", '{"jsonrpc": "2.0", "method": "foobar"}', None),
    ("non-existent method", '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
     {"error": -32601, "id": "1"}),
    ("invalid JSON", '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
     {"error": -32700, "id": None}),
    ("invalid Request object", '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
     {"error": -32600, "id": None}),
    ("batch, invalid JSON", '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
     '{"jsonrpc": "2.0", "method"]', {"error": -32700, "id": None}),
    ("empty Array", "[]", {"error": -32600, "id": None}),
    ("invalid batch, not empty", "[1]", [{"error": -32600, "id": None}]),
    ("invalid batch", "[1,2,3]", [{"error": -32600, "id": None}] * 3),
    ("mixed batch", """[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]""", [{"result": 7, "id": "1"}, {"result": 19, "id": "2"}, {"error": -32600, "id": None},
           {"error": -32601, "id": "5"}, {"result": ["hello", 5], "id": "9"}]),
    ("all notifications", """[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]""", None),
]


@pytest.fixture
async def rpc_url() -> AsyncIterator[str]:
    async with spec_server() as url:
        yield url


def _shape(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["jsonrpc"] == "2.0"
    assert ("result" in reply) != ("error" in reply), "exactly one of result/error"
    if "error" in reply:
        assert isinstance(reply["error"]["code"], int)
        assert isinstance(reply["error"]["message"], str)
        return {"error": reply["error"]["code"], "id": reply["id"]}
    return {"result": reply["result"], "id": reply["id"]}


def _key(item: dict[str, Any]) -> str:
    return json.dumps(item, sort_keys=True)


@pytest.mark.parametrize(("name", "body", "expected"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
async def test_spec_section_7_example_gets_the_specified_reply(
    rpc_url: str, name: str, body: str, expected: Any
) -> None:
    async with aiohttp.ClientSession() as http, http.post(
        rpc_url, data=body.encode(), headers={"Content-Type": "application/json"}
    ) as response:
        raw = await response.read()
        if expected is None:
            assert response.status == 204
            assert raw == b""
            return
        assert response.status == 200
        assert response.content_type == "application/json"
        reply = json.loads(raw)
    if isinstance(expected, list):
        assert isinstance(reply, list), f"{name}: a batch gets an array"
        assert sorted(map(_key, map(_shape, reply))) == sorted(map(_key, expected))
    else:
        assert isinstance(reply, dict), f"{name}: a single Response object"
        assert _shape(reply) == expected
