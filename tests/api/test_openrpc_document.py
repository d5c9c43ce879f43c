"""The live `rpc.discover` answer is a valid OpenRPC document declaring every error the server emits.

openrpc-meta-schema.json is the `openrpcDocument` export of the npm package
@open-rpc/meta-schema 1.14.9 (Apache-2.0), written out as JSON. Its JSONSchema
definition points at https://meta.json-schema.tools (draft-07 plus tooling
keywords); here that reference resolves to the draft-07 meta-schema bundled
with jsonschema, so nothing is fetched at test time and every schema inside
the document (params, results, components) is checked as draft-07 too.
"""

from __future__ import annotations

import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator  # type: ignore[import-untyped]
from referencing import Registry, Resource

from actors.api import openrpc
from actors.api.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
)
from actors.api.methods import NOT_FOUND, SLUG_TAKEN, STATE_CONFLICT, UNAUTHORIZED, UNAVAILABLE
from tests.api.harness import RunningApi
from tests.api.spec_server import spec_table

META_SCHEMA_PATH = Path(__file__).with_name("openrpc-meta-schema.json")
JSON_SCHEMA_META = "https://meta.json-schema.tools"

EVERY_CODE = {
    PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR,
    UNAUTHORIZED, SLUG_TAKEN, NOT_FOUND, UNAVAILABLE, STATE_CONFLICT,
}
PROTOCOL_CODES = {PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND}
"""Errors answered before any method is chosen: declared once, in components.errors."""

# Errors no cheap request can provoke, and why each method can still answer them:
# every handler asks an actor (timeout or shutdown: -32603) that depends on the
# database, cache or broker (down: -32020).
UNPROVOKED = {INTERNAL_ERROR, UNAVAILABLE}
# Methods that need no dependency at all, so cannot answer -32020: key management touches only
# the local key file, and the plans are constants.
NO_DEPENDENCY = ("key.", "plan.")


@cache
def validator() -> Any:
    meta_schema = json.loads(META_SCHEMA_PATH.read_text(encoding="utf-8"))
    draft7 = Resource.from_contents(Draft7Validator.META_SCHEMA)
    registry: Registry[Any] = Registry().with_resource(JSON_SCHEMA_META, draft7)
    return Draft7Validator(meta_schema, registry=registry)


def problems(document: Any) -> list[str]:
    """Every way `document` breaks the meta-schema, as `path: message` lines."""
    errors = sorted(validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


async def discover(api: RunningApi) -> dict[str, Any]:
    reply = await api.call("rpc.discover", key=None)
    assert "result" in reply, reply
    document: dict[str, Any] = reply["result"]
    return document


def declared(method: dict[str, Any]) -> set[int]:
    return {error["code"] for error in method.get("errors", [])}


def test_the_vendored_meta_schema_is_a_valid_draft_07_schema() -> None:
    Draft7Validator.check_schema(json.loads(META_SCHEMA_PATH.read_text(encoding="utf-8")))


def test_the_validator_rejects_broken_documents_down_to_the_nested_json_schemas() -> None:
    good = openrpc.document(spec_table(), title="t", version="1")
    assert problems(good) == []
    method = good["methods"][0]
    for broken in (
        {**good, "openrpc": "9.9.9"},
        {**good, "methods": [{**method, "paramStructure": "sideways"}]},
        {**good, "methods": [{k: v for k, v in method.items() if k != "params"}]},
        {**good, "methods": [{**method, "errors": [{"code": "-32602", "message": "x"}]}]},
        {**good, "methods": [{**method, "result": {"name": "r", "schema": {"type": 5}}}]},
        {**good, "components": {"schemas": {"Bad": {"minLength": -1}}}},
    ):
        assert problems(broken) != [], broken


def test_a_table_with_positional_and_either_methods_documents_validly() -> None:
    document = openrpc.document(spec_table(), title="spec examples", version="1.0.0")
    assert problems(document) == []
    structures = {m["name"]: m["paramStructure"] for m in document["methods"]}
    assert structures["subtract"] == "either"
    assert structures["sum"] == "by-position"


async def test_rpc_discover_answers_a_valid_openrpc_document_with_by_name_params(
    api: RunningApi,
) -> None:
    document = await discover(api)
    assert problems(document) == []
    assert document["methods"], "the document lists the API's methods"
    for method in document["methods"]:
        assert method["paramStructure"] == "by-name", method["name"]


async def test_every_error_code_the_server_emits_is_declared_where_it_applies(
    api: RunningApi,
) -> None:
    document = await discover(api)
    methods = {m["name"]: m for m in document["methods"]}
    protocol = {e["code"] for e in document["components"]["errors"].values()}
    assert protocol == PROTOCOL_CODES

    observed: set[int] = set()

    async def expect(code: int, reply: Any, method: str | None = None) -> None:
        assert reply["error"]["code"] == code, (method, reply)
        observed.add(code)
        if method is None:
            assert code in protocol
        else:
            assert code in declared(methods[method]), (method, code, methods[method].get("errors"))

    _, reply = await api.post(b'{"jsonrpc":"2.0","method":')
    await expect(PARSE_ERROR, reply)
    _, reply = await api.post(b'{"jsonrpc":"1.0","method":"account.get","id":1}')
    await expect(INVALID_REQUEST, reply)
    await expect(METHOD_NOT_FOUND, await api.call("account.rename", {}))
    for name in methods:
        await expect(UNAUTHORIZED, await api.call(name, {}, key=None), name)
        await expect(INVALID_PARAMS, await api.call(name, {"no_such_param": 1}), name)
    account = {"name": "Declared", "owner_email": "d@declared.co", "slug": "declared"}
    created = await api.call("account.create", account)
    assert "result" in created
    await expect(SLUG_TAKEN, await api.call("account.create", account), "account.create")
    gone = {"id": created["result"]["id"]}
    assert "result" in await api.call("account.delete", gone)
    for name in ("account.update", "account.suspend", "account.resume", "account.retry"):
        await expect(STATE_CONFLICT, await api.call(name, gone), name)
    await expect(NOT_FOUND, await api.call("account.get", {"slug": "nobody"}), "account.get")
    missing = {"id": str(uuid.uuid4())}
    await expect(NOT_FOUND, await api.call("account.delete", missing), "account.delete")

    for name, method in methods.items():
        independent = name.startswith(NO_DEPENDENCY)
        assert declared(method) >= UNPROVOKED - ({UNAVAILABLE} if independent else set()), name
        assert not declared(method) & PROTOCOL_CODES, name
    # A code belongs only to the methods that can answer it.
    assert {n for n, m in methods.items() if SLUG_TAKEN in declared(m)} == {"account.create"}
    assert {n for n, m in methods.items() if NOT_FOUND in declared(m)} == {
        "account.get", "account.delete", "account.update", "account.suspend", "account.resume",
        "account.retry", "account.wait", "key.revoke"
    }
    assert {n for n, m in methods.items() if STATE_CONFLICT in declared(m)} == {
        "account.update", "account.suspend", "account.resume", "account.retry", "cluster.remove"
    }
    assert observed | UNPROVOKED == EVERY_CODE
