"""Every bad-input class gets its expected error over real HTTP; none causes a 500 or writes anything."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from actors.legacy import db
from tests.api.harness import RunningApi
from tests.support.fake_bus import FakeBus


def _create(params: str) -> bytes:
    return b'{"jsonrpc":"2.0","method":"account.create","params":' + params.encode() + b',"id":7}'


# (name, raw body, expected code, expected id)
PARSE_AND_REQUEST_ERRORS: list[tuple[str, bytes, int, Any]] = [
    ("empty body", b"", -32700, None),
    ("invalid utf-8", b'{"jsonrpc":"2.0","method":"\xff\xfe","id":1}', -32700, None),
    ("utf-8 BOM", b'\xef\xbb\xbf{"jsonrpc":"2.0","method":"cluster.list","id":1}', -32700, None),
    ("truncated JSON", b'{"jsonrpc":"2.0","method":"cluster.list"', -32700, None),
    ("NaN", _create('{"name":NaN,"owner_email":"a@b.io"}'), -32700, None),
    ("Infinity", _create('{"name":"x","owner_email":"a@b.io","slug":Infinity}'), -32700, None),
    ("-Infinity", _create('[-Infinity]'), -32700, None),
    ("number overflowing a float", _create('{"name":1e999,"owner_email":"a@b.io"}'), -32700, None),
    ("5000-digit integer", _create('{"name":' + "9" * 5000 + "}"), -32700, None),
    ("10k-deep nesting", b"[" * 10000 + b"]" * 10000, -32700, None),
    ("nesting deeper than the limit", _create('{"name":' + "[" * 40 + "]" * 40 + "}"), -32700, None),
    ("duplicate member names", b'{"jsonrpc":"2.0","method":"cluster.list","method":"x","id":1}',
     -32600, None),
    ("top-level number", b"1", -32600, None),
    ("top-level string", b'"x"', -32600, None),
    ("top-level null", b"null", -32600, None),
    ("top-level true", b"true", -32600, None),
    ("jsonrpc missing", b'{"method":"cluster.list","id":1}', -32600, 1),
    ("jsonrpc as number", b'{"jsonrpc":2.0,"method":"cluster.list","id":1}', -32600, 1),
    ("jsonrpc 1.0", b'{"jsonrpc":"1.0","method":"cluster.list","id":1}', -32600, 1),
    ("method missing", b'{"jsonrpc":"2.0","id":1}', -32600, 1),
    ("method a number", b'{"jsonrpc":"2.0","method":1,"id":1}', -32600, 1),
    ("method null", b'{"jsonrpc":"2.0","method":null,"id":1}', -32600, 1),
    ("params a string", b'{"jsonrpc":"2.0","method":"cluster.list","params":"bar","id":1}', -32600, 1),
    ("params a number", b'{"jsonrpc":"2.0","method":"cluster.list","params":1,"id":1}', -32600, 1),
    ("params null", b'{"jsonrpc":"2.0","method":"cluster.list","params":null,"id":1}', -32600, 1),
    ("id true", b'{"jsonrpc":"2.0","method":"cluster.list","id":true}', -32600, None),
    ("id an object", b'{"jsonrpc":"2.0","method":"cluster.list","id":{}}', -32600, None),
    ("id an array", b'{"jsonrpc":"2.0","method":"cluster.list","id":[]}', -32600, None),
    ("an extra member", b'{"jsonrpc":"2.0","method":"cluster.list","id":1,"x":1}', -32600, 1),
    ("unknown method", b'{"jsonrpc":"2.0","method":"account.frobnicate","id":"q"}', -32601, "q"),
    ("unknown rpc. method", b'{"jsonrpc":"2.0","method":"rpc.foo","id":3}', -32601, 3),
    ("method name with a lone surrogate", b'{"jsonrpc":"2.0","method":"\\ud800","id":3}', -32601, 3),
]

# (name, params JSON, fields named in error.data.fields)
INVALID_PARAMS: list[tuple[str, str, set[str]]] = [
    ("unknown param", '{"name":"A","owner_email":"a@b.io","color":"red"}', {"color"}),
    ("unknown plan", '{"name":"A","owner_email":"a@b.io","plan":"gold"}', {"plan"}),
    ("missing params", "{}", {"name", "owner_email"}),
    ("wrong-case param name", '{"Name":"A","owner_email":"a@b.io"}', {"Name", "name"}),
    ("wrong type", '{"name":5,"owner_email":["a@b.io"]}', {"name", "owner_email"}),
    ("positional params", '["A","a@b.io"]', {"params"}),
    ("lone surrogate", '{"name":"a\\ud800b","owner_email":"a@b.io"}', {"name"}),
    ("NUL", '{"name":"a\\u0000b","owner_email":"a@b.io"}', {"name"}),
    ("control character", '{"name":"a\\u0007b","owner_email":"a@b.io"}', {"name"}),
    ("name too long", '{"name":"' + "n" * 65 + '","owner_email":"a@b.io"}', {"name"}),
    ("blank name", '{"name":"   ","owner_email":"a@b.io"}', {"name"}),
    ("bad email", '{"name":"A","owner_email":"not-an-email"}', {"owner_email"}),
    ("slug uppercase", '{"name":"A","owner_email":"a@b.io","slug":"Upper"}', {"slug"}),
    ("slug with a trailing newline", '{"name":"A","owner_email":"a@b.io","slug":"ok\\n"}', {"slug"}),
    ("slug leading dash", '{"name":"A","owner_email":"a@b.io","slug":"-lead"}', {"slug"}),
    ("slug 41 chars", '{"name":"A","owner_email":"a@b.io","slug":"' + "s" * 41 + '"}', {"slug"}),
    ("slug reserved kube-", '{"name":"A","owner_email":"a@b.io","slug":"kube-x"}', {"slug"}),
    ("slug reserved default", '{"name":"A","owner_email":"a@b.io","slug":"default"}', {"slug"}),
    ("reserved slug given", '{"name":"A","owner_email":"a@b.io","slug":"node-lease"}', {"slug"}),
    ("email with a 65-char local part", '{"name":"A","owner_email":"' + "l" * 65 + '@b.io"}',
     {"owner_email"}),
]


@pytest.fixture
async def quiet_api(api: RunningApi, pg_dsn: str, bus: FakeBus) -> AsyncIterator[RunningApi]:
    """The API; after the test, nothing may have been written anywhere."""
    yield api
    conn = await db.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM organizations") == 0
        assert await conn.fetchval("SELECT count(*) FROM fabric_outbox") == 0
    finally:
        await db.close_connection(conn)
    assert bus.log == []


# One API for a whole table (a fresh one per case would cost more than the cases); each
# assertion names its case.
async def test_every_malformed_request_gets_its_error_code(quiet_api: RunningApi) -> None:
    for name, body, code, id_ in PARSE_AND_REQUEST_ERRORS:
        status, reply = await quiet_api.post(body)
        assert status == 200, name
        assert reply["jsonrpc"] == "2.0", name
        assert reply["error"]["code"] == code, (name, reply)
        assert reply["id"] == id_, name
        assert "result" not in reply, name


async def test_every_invalid_param_is_rejected_naming_each_bad_field(quiet_api: RunningApi) -> None:
    for name, params, fields in INVALID_PARAMS:
        status, reply = await quiet_api.post(_create(params))
        assert status == 200, name
        assert reply["error"]["code"] == -32602, (name, reply)
        assert reply["id"] == 7, name
        assert set(reply["error"]["data"]["fields"]) == fields, (name, reply)


async def test_ids_are_echoed_with_their_exact_json_type(quiet_api: RunningApi) -> None:
    for raw_id in ('"1"', "1", "1.5", "null", str(2**60), '"\\ud800"'):
        body = b'{"jsonrpc":"2.0","method":"account.list","id":' + raw_id.encode() + b"}"
        status, reply = await quiet_api.post(body)
        assert status == 200
        assert "result" in reply, reply
        assert reply["id"] == json.loads(raw_id)
        assert type(reply["id"]) is type(json.loads(raw_id))


async def test_batch_over_the_limit_gets_one_invalid_request_error(quiet_api: RunningApi) -> None:
    one = {"jsonrpc": "2.0", "method": "cluster.list", "id": 1}
    status, reply = await quiet_api.post(json.dumps([one] * 101).encode())
    assert status == 200
    assert isinstance(reply, dict)
    assert reply["error"]["code"] == -32600
    assert "batch too large" in reply["error"]["data"]["reason"]
    status, ok = await quiet_api.post(json.dumps([one] * 100).encode())
    assert isinstance(ok, list)
    assert len(ok) == 100


async def test_body_over_one_mebibyte_gets_413_with_a_json_rpc_body(quiet_api: RunningApi) -> None:
    body = _create('{"name":"' + "x" * (1024 * 1024) + '","owner_email":"a@b.io"}')
    status, reply = await quiet_api.post(body)
    assert status == 413
    assert reply["error"]["code"] == -32600
    assert "too large" in reply["error"]["data"]["reason"]


async def test_chunked_body_over_the_limit_gets_413(quiet_api: RunningApi) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * 65536

    async with quiet_api.http.post(
        quiet_api.url + "/rpc", data=chunks(),
        headers={**quiet_api.headers(), "Content-Type": "application/json"},
    ) as response:
        assert response.status == 413
        assert (await response.json())["error"]["code"] == -32600


@pytest.mark.parametrize("verb", ["GET", "PUT", "DELETE"])
async def test_wrong_http_method_gets_405_allow_post(quiet_api: RunningApi, verb: str) -> None:
    async with quiet_api.http.request(verb, quiet_api.url + "/rpc") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
        assert (await response.json())["error"]["code"] == -32600


async def test_wrong_content_type_gets_415(quiet_api: RunningApi) -> None:
    status, reply = await quiet_api.post(b"{}", content_type="text/plain")
    assert status == 415
    assert reply["error"]["code"] == -32600


@pytest.mark.parametrize("key", [None, "wrong", "Basic abc"], ids=["missing", "wrong", "not bearer"])
async def test_missing_or_wrong_key_is_unauthorized(quiet_api: RunningApi, key: str | None) -> None:
    body = _create('{"name":"Acme","owner_email":"a@acme.io"}')
    if key == "Basic abc":
        async with quiet_api.http.post(
            quiet_api.url + "/rpc", data=body,
            headers={"Authorization": key, "Content-Type": "application/json"},
        ) as response:
            status, reply = response.status, await response.json()
    else:
        status, reply = await quiet_api.post(body, key=key)
    assert status == 200
    assert reply["error"]["code"] == -32001
    assert reply["id"] == 7


async def test_notification_with_bad_params_gets_no_reply_and_writes_nothing(
    quiet_api: RunningApi,
) -> None:
    body = b'{"jsonrpc":"2.0","method":"account.create","params":{"name":"\\u0000"}}'
    status, reply = await quiet_api.post(body)
    assert status == 204
    assert reply is None


async def test_rpc_discover_needs_no_key(quiet_api: RunningApi) -> None:
    reply = await quiet_api.call("rpc.discover", key=None)
    assert reply["result"]["openrpc"].startswith("1.")


BAD_READS: list[tuple[str, dict[str, Any], int]] = [
    ("account.get", {"id": "00000000-0000-4000-8000-000000000000"}, -32011),
    ("account.get", {"slug": "nobody"}, -32011),
    ("account.get", {"id": "not-a-uuid"}, -32602),
    ("account.get", {}, -32602),
    ("account.get", {"id": "00000000-0000-4000-8000-000000000000", "slug": "x"}, -32602),
    ("account.get", {"slug": "a\u0000"}, -32602),
    ("account.delete", {"id": "00000000-0000-4000-8000-000000000000"}, -32011),
    ("account.delete", {"id": "' OR 1=1 --"}, -32602),
    ("account.list", {"limit": 0}, -32602),
    ("account.list", {"limit": 501}, -32602),
    ("account.list", {"limit": "5"}, -32602),
    ("account.list", {"cursor": "MTA.AAAAAAAAAAAAAAAAAAAAAA"}, -32602),
    ("account.list", {"cursor": "garbage"}, -32602),
    ("cluster.list", {"verbose": True}, -32602),
]


async def test_reads_and_deletes_of_bad_or_missing_ids_get_clear_errors(
    quiet_api: RunningApi,
) -> None:
    for method, params, code in BAD_READS:
        reply = await quiet_api.call(method, params)
        assert reply["error"]["code"] == code, (method, params, reply)
