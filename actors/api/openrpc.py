"""The OpenRPC document, generated from the same method table the dispatcher uses.

`rpc.discover` answers with `document(table)`, so every method that can be
called is listed with the params it accepts and the errors it can return;
nothing is written by hand twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actors.api.jsonrpc import Method
from actors.api.params import params_schema

OPENRPC_VERSION = "1.3.2"


def document(
    table: Mapping[str, Method], *, title: str, version: str, components: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    methods = []
    for name in sorted(table):
        method = table[name]
        if name == "rpc.discover":
            continue  # the spec: rpc.discover itself is not listed among the methods
        structure = method.signature.structure
        entry: dict[str, Any] = {
            "name": name,
            "params": params_schema(method.signature.params),
            "result": {"name": method.result_name, "schema": dict(method.result_schema)},
            "paramStructure": "either" if structure == "either" else structure,
        }
        if method.summary:
            entry["summary"] = method.summary
        if method.errors:
            entry["errors"] = [{"code": code, "message": message} for code, message in method.errors]
        methods.append(entry)
    doc: dict[str, Any] = {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": title, "version": version},
        "methods": methods,
    }
    if components:
        doc["components"] = dict(components)
    return doc
