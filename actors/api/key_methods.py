"""Key management over JSON-RPC (scope `admin`): `key.create`, `key.list`, `key.revoke`.

The same operations as `fabric keys create|list|revoke`, on the same key file
(actors/api/keystore.py, file I/O in a worker thread). After a change the
ring reloads at once, so a key revoked here is refused by the very next call
to this process. `key.create` answers the secret once (`key`); nothing else
ever shows it. The admin key (id `admin`) is not in the file and cannot be
revoked here: `fabric keys rotate` replaces it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from actors.api.auth import KeyRing
from actors.api.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, Method, RpcError
from actors.api.keystore import (
    ADMIN_KEY_ID,
    NAME_MAX,
    NAME_PATTERN,
    KeyFileError,
    UnknownKey,
    create_key,
    read_keys,
    revoke_key,
)
from actors.api.params import Param, Signature
from actors.api.scopes import SCOPES, parse_scope

NOT_FOUND = -32011  # the API's "not found" (actors/api/methods.py)

log = structlog.get_logger()

_KEY_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string"},
    "name": {"type": "string"},
    "scope": {"enum": list(SCOPES)},
    "created_at": {"type": "string", "format": "date-time"},
    "revoked_at": {"type": ["string", "null"], "format": "date-time"},
}
_KEY_REQUIRED = ["id", "name", "scope", "created_at", "revoked_at"]
KEY_SCHEMA: dict[str, Any] = {
    "type": "object", "required": _KEY_REQUIRED, "additionalProperties": False,
    "properties": _KEY_PROPERTIES,
}
ISSUED_SCHEMA: dict[str, Any] = {
    "type": "object", "required": [*_KEY_REQUIRED, "key"], "additionalProperties": False,
    "properties": {**_KEY_PROPERTIES,
                   "key": {"type": "string", "description": "the secret, shown only here"}},
}


def build_key_methods(keys: KeyRing) -> dict[str, Method]:
    path = keys.keys_file
    assert path is not None, "key management needs a key file"

    async def create(params: dict[str, Any]) -> Any:
        scope = parse_scope(params["scope"])  # the signature's enum already checked it
        try:
            issued = await asyncio.to_thread(create_key, path, scope, params.get("name"))
        except ValueError as exc:
            raise RpcError(INVALID_PARAMS, "Invalid params", {"fields": {"name": str(exc)}})
        except KeyFileError as exc:
            raise _unreadable(exc)
        keys.reload()
        log.info("api_key_created", key_id=issued.stored.id, key_name=issued.stored.name,
                 scope=scope)
        return {**issued.stored.public(), "key": issued.secret}

    async def list_(_params: dict[str, Any]) -> Any:
        try:
            stored = await asyncio.to_thread(read_keys, path)
        except KeyFileError as exc:
            raise _unreadable(exc)
        return [k.public() for k in stored]

    async def revoke(params: dict[str, Any]) -> Any:
        key_id: str = params["id"]
        if key_id == ADMIN_KEY_ID:
            raise RpcError(INVALID_PARAMS, "Invalid params", {"fields": {
                "id": "the admin key cannot be revoked; `fabric keys rotate` replaces it"}})
        try:
            stored = await asyncio.to_thread(revoke_key, path, key_id)
        except UnknownKey:
            raise RpcError(NOT_FOUND, "Key not found", {"id": key_id[:64]})
        except KeyFileError as exc:
            raise _unreadable(exc)
        keys.reload()
        log.info("api_key_revoked", key_id=stored.id, key_name=stored.name)
        return stored.public()

    table = [
        Method(
            "key.create", create,
            Signature((
                Param("scope", {"type": "string", "enum": list(SCOPES)},
                      description="read: reads; write: also the account methods; admin: also keys"),
                Param("name", {"type": "string", "minLength": 1, "maxLength": NAME_MAX,
                               "pattern": NAME_PATTERN},
                      required=False, description="a label for people; default: the key's id"),
            )),
            summary="Issue an API key; the answer is the only time its secret is shown",
            result_name="key", result_schema=ISSUED_SCHEMA,
        ),
        Method(
            "key.list", list_, Signature(()),
            summary="Every issued API key, revoked ones included (never a secret)",
            result_name="keys", result_schema={"type": "array", "items": KEY_SCHEMA},
        ),
        Method(
            "key.revoke", revoke,
            Signature((Param("id", {"type": "string", "minLength": 1, "maxLength": 64},
                             description="the key's id"),)),
            summary="Revoke an API key; calls with it are refused from now on",
            result_name="key", result_schema=KEY_SCHEMA,
            errors=((NOT_FOUND, "Key not found"),),
        ),
    ]
    return {m.name: m for m in table}


def _unreadable(exc: KeyFileError) -> RpcError:
    log.error("api_keys_unreadable", error=str(exc))
    return RpcError(INTERNAL_ERROR, "Internal error", {"reason": "the key file is unreadable"})
