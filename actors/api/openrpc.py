"""The OpenRPC document, generated from the same method table the dispatcher uses.

`rpc.discover` answers with `document(table)`, so every method that can be
called is listed with the params it accepts and the errors it can return;
nothing is written by hand twice. Errors come from two places: the
dispatcher's own (-32602 and -32603 for every method, -32001 and -32029 for
those that need a key) and each method's declared ones. A method that needs a
key says which scope in its description (actors/api/scopes.py). The errors answered before a
method is chosen (-32700, -32600, -32601) belong to no method and are
declared once under components.errors.

The param schemas are the very ones the server validates with
(actors/api/params.py), so the document states every constraint it enforces;
a constraint on the params as a whole (e.g. "exactly one of id or slug") is
the method's `x-params-constraint`, a JSON Schema over the params object. What
no per-param schema can say (unknown params are refused, strings are Unicode
text) is said once in `info.description`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actors.api.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RATE_LIMITED,
    UNAUTHORIZED,
    Method,
)
from actors.api.params import params_schema
from actors.api.scopes import required_scope

OPENRPC_VERSION = "1.3.2"

PROTOCOL_ERRORS: dict[str, tuple[int, str]] = {
    "ParseError": (PARSE_ERROR, "Parse error"),
    "InvalidRequest": (INVALID_REQUEST, "Invalid Request"),
    "MethodNotFound": (METHOD_NOT_FOUND, "Method not found"),
}


def method_errors(method: Method) -> list[tuple[int, str]]:
    """The method's declared errors, then the dispatcher's it can answer; one entry per code."""
    dispatcher = [(INVALID_PARAMS, "Invalid params"), (INTERNAL_ERROR, "Internal error")]
    if method.auth:
        dispatcher.append((UNAUTHORIZED, "Unauthorized"))
        dispatcher.append((RATE_LIMITED, "Rate limited"))
    errors: dict[int, str] = {}
    for code, message in (*method.errors, *dispatcher):
        errors.setdefault(code, message)
    return list(errors.items())


INFO_DESCRIPTION = (
    "JSON-RPC 2.0; params by name. Every method refuses a param it does not declare "
    "(-32602, data.fields names each bad one). A string must be Unicode text: a lone "
    "surrogate (\\ud800 alone) is refused. `x-params-constraint`, where present, is a JSON "
    "Schema the params object as a whole must also match."
)


def document(
    table: Mapping[str, Method],
    *,
    title: str,
    version: str,
    components: Mapping[str, Any] | None = None,
    descriptions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    methods = []
    for name in sorted(table):
        method = table[name]
        if name == "rpc.discover":
            continue  # the spec: rpc.discover itself is not listed among the methods
        entry: dict[str, Any] = {
            "name": name,
            "params": params_schema(method.signature.params),
            "result": {"name": method.result_name, "schema": dict(method.result_schema)},
            "paramStructure": method.signature.structure,
            "errors": [{"code": code, "message": message} for code, message in method_errors(method)],
        }
        if method.summary:
            entry["summary"] = method.summary
        text = [(descriptions or {}).get(name, "")]
        if method.auth:
            text.append(
                f"Needs an API key (Authorization: Bearer) with scope {required_scope(name)} "
                "or above (read < write < admin)."
            )
        if any(text):
            entry["description"] = " ".join(t for t in text if t)
        if method.signature.constraint is not None:
            entry["x-params-constraint"] = dict(method.signature.constraint)
        methods.append(entry)
    errors = {key: {"code": code, "message": message} for key, (code, message) in PROTOCOL_ERRORS.items()}
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": title, "version": version, "description": INFO_DESCRIPTION},
        "methods": methods,
        "components": {**(components or {}), "errors": errors},
    }
