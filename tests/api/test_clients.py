"""A real JSON-RPC client library (jsonrpcclient) against the running API, and the OpenRPC document."""

from __future__ import annotations

from typing import Any

from jsonrpcclient import Error, Ok, notification, parse, request

from actors.api.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, RATE_LIMITED
from actors.api.methods import NOT_FOUND, SLUG_TAKEN, UNAUTHORIZED, UNAVAILABLE
from tests.api.harness import RunningApi


async def _send(api: RunningApi, payload: Any, *, key: str | None = "") -> tuple[int, Any]:
    async with api.http.post(api.url + "/rpc", json=payload, headers=api.headers(key)) as response:
        return response.status, (await response.json() if response.status == 200 else None)


async def test_jsonrpcclient_creates_and_reads_an_account(api: RunningApi) -> None:
    status, raw = await _send(
        api, request("account.create", params={"name": "Client Co", "owner_email": "c@client.co"})
    )
    assert status == 200
    created = parse(raw)
    assert isinstance(created, Ok)
    assert created.result["slug"] == "client-co"
    _, raw = await _send(api, request("account.get", params={"id": created.result["id"]}))
    got = parse(raw)
    assert isinstance(got, Ok)
    assert got.result == created.result


async def test_jsonrpcclient_sees_contract_errors_as_error_results(api: RunningApi) -> None:
    params = {"name": "Twice", "owner_email": "t@client.co", "slug": "twice"}
    _, first = await _send(api, request("account.create", params=params))
    assert isinstance(parse(first), Ok)
    _, again = await _send(api, request("account.create", params=params))
    conflict = parse(again)
    assert isinstance(conflict, Error)
    assert conflict.code == SLUG_TAKEN
    assert conflict.data == {"slug": "twice"}
    _, raw = await _send(api, request("account.get", params={"slug": "nobody"}))
    missing = parse(raw)
    assert isinstance(missing, Error)
    assert missing.code == NOT_FOUND
    _, raw = await _send(api, request("cluster.list"), key=None)
    denied = parse(raw)
    assert isinstance(denied, Error)
    assert denied.code == UNAUTHORIZED


async def test_jsonrpcclient_batch_and_notification(api: RunningApi) -> None:
    batch = [
        request("account.create", params={"name": "Batch A", "owner_email": "a@b.co"}),
        notification("account.create", params={"name": "Batch B", "owner_email": "b@b.co"}),
        request("account.get", params={"slug": "batch-a"}),
    ]
    status, raw = await _send(api, batch)
    assert status == 200
    results = list(parse(raw))
    assert len(results) == 2  # no reply for the notification
    assert all(isinstance(r, Ok) for r in results)
    status, _ = await _send(api, notification("cluster.list"))
    assert status == 204
    # The notification was executed: the account exists.
    _, raw = await _send(api, request("account.get", params={"slug": "batch-b"}))
    assert isinstance(parse(raw), Ok)


async def test_openrpc_document_lists_every_dispatchable_method_with_its_errors(
    api: RunningApi,
) -> None:
    _, raw = await _send(api, request("rpc.discover"), key=None)
    doc = parse(raw)
    assert isinstance(doc, Ok)
    document = doc.result
    assert document["openrpc"].startswith("1.")
    assert set(document["info"]) >= {"title", "version"}
    table = api_methods(api)
    listed = {m["name"] for m in document["methods"]}
    assert listed == set(table) - {"rpc.discover"}
    for method in document["methods"]:
        assert method["paramStructure"] == "by-name"
        assert "schema" in method["result"]
        codes = [e["code"] for e in method.get("errors", [])]
        assert len(codes) == len(set(codes)), "error codes are unique per method"
        assert UNAUTHORIZED in codes
        for param in method["params"]:
            assert set(param) >= {"name", "schema", "required"}
    by_name = {m["name"]: m for m in document["methods"]}
    assert {e["code"] for e in by_name["account.create"]["errors"]} == {
        UNAUTHORIZED, RATE_LIMITED, SLUG_TAKEN, UNAVAILABLE, INVALID_PARAMS, INTERNAL_ERROR
    }
    assert [p["name"] for p in by_name["account.create"]["params"]] == ["name", "owner_email", "slug", "plan"]
    assert "Account" in document["components"]["schemas"]


def api_methods(api: RunningApi) -> dict[str, Any]:
    """The method table the running API dispatches with."""
    return dict(api.handles.methods)
