"""The specification's section 7 examples adapted to our methods, over real HTTP against the real API."""

from __future__ import annotations

import json
from typing import Any

from tests.api.harness import RunningApi

NEW = '{"name": "Spec Co", "owner_email": "spec@example.com"}'

# (name, request text, expected: None = 204 no body, dict = one reply, list = batch replies)
EXAMPLES: list[tuple[str, str, Any]] = [
    ("named params", '{"jsonrpc": "2.0", "method": "account.create", "params": ' + NEW + ', "id": 1}',
     {"result": True, "id": 1}),
    ("named params in another order", '{"jsonrpc": "2.0", "method": "account.get", '
     '"params": {"slug": "spec-co"}, "id": 2}', {"result": True, "id": 2}),
    ("positional params (ours are by-name)", '{"jsonrpc": "2.0", "method": "account.get", '
     '"params": ["spec-co"], "id": 3}', {"error": -32602, "id": 3}),
    ("notification", '{"jsonrpc": "2.0", "method": "account.list", "params": {"limit": 1}}', None),
    ("notification of a missing method", '{"jsonrpc": "2.0", "method": "foobar"}', None),
    ("non-existent method", '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
     {"error": -32601, "id": "1"}),
    ("invalid JSON", '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
     {"error": -32700, "id": None}),
    ("invalid Request object", '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
     {"error": -32600, "id": None}),
    ("batch, invalid JSON", '[{"jsonrpc": "2.0", "method": "account.list", "id": "1"},'
     '{"jsonrpc": "2.0", "method"]', {"error": -32700, "id": None}),
    ("empty Array", "[]", {"error": -32600, "id": None}),
    ("invalid batch, not empty", "[1]", [{"error": -32600, "id": None}]),
    ("invalid batch", "[1,2,3]", [{"error": -32600, "id": None}] * 3),
    ("mixed batch", """[
        {"jsonrpc": "2.0", "method": "account.get", "params": {"slug": "spec-co"}, "id": "1"},
        {"jsonrpc": "2.0", "method": "account.list", "params": {"limit": 5}},
        {"jsonrpc": "2.0", "method": "account.get", "params": {"slug": "nobody"}, "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "account.list", "id": "9"}
    ]""", [{"result": True, "id": "1"}, {"error": -32011, "id": "2"}, {"error": -32600, "id": None},
           {"error": -32601, "id": "5"}, {"result": True, "id": "9"}]),
    ("all notifications", """[
        {"jsonrpc": "2.0", "method": "account.list", "params": {"limit": 1}},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]""", None),
]


def _shape(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["jsonrpc"] == "2.0"
    assert ("result" in reply) != ("error" in reply)
    if "error" in reply:
        return {"error": reply["error"]["code"], "id": reply["id"]}
    return {"result": True, "id": reply["id"]}


async def test_spec_examples_adapted_to_our_methods_get_the_specified_replies(api: RunningApi) -> None:
    # In order: the first example creates the account the later ones read.
    for name, body, expected in EXAMPLES:
        status, reply = await api.post(body.encode())
        if expected is None:
            assert status == 204, name
            assert reply is None, name
            continue
        assert status == 200, name
        if isinstance(expected, list):
            assert isinstance(reply, list), name
            got = sorted(json.dumps(_shape(r), sort_keys=True) for r in reply)
            assert got == sorted(json.dumps(e, sort_keys=True) for e in expected), name
        else:
            assert isinstance(reply, dict), name
            assert _shape(reply) == expected, (name, reply)
