"""JSON-RPC 2.0, to the letter of the specification, over a pluggable method table.

    dispatcher = Dispatcher(table, max_batch=100, observe=...)
    reply: Reply = await dispatcher.handle(body, access)

`reply.body` None means "send nothing" (a notification, or a batch of
them); `reply.status` is 200, or 429 with `retry_after` seconds when the
caller is over its rate limit. `access` is who is calling
(actors/api/access.py): for a body with calls to methods that need a key it
is asked once to `admit` them (a refusal answers the whole body, even a
notification, with one -32029 error whose id is the request's, null for a
batch), then to `authorize` each such call (-32001), and is told each one's
outcome (`audit`). The parser
refuses what the stdlib json module lets through or chokes on: invalid UTF-8,
a BOM, NaN/Infinity, numbers too big to be honest, nesting deeper than
`MAX_DEPTH`, and duplicate member names (a parser-differential risk); none of
these can raise past this module. Request objects are checked member by
member (exactly `jsonrpc`, `method`, optional `params` and `id`; extra
members are an Invalid Request). A method answers a JSON value, or `Encoded`
JSON it made already (a read that keeps its last answer's bytes); it raises
`RpcError` for a defined error; anything else is logged in full and answered
as -32603.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import structlog

from actors.api.params import InvalidParams, Signature

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
UNAUTHORIZED = -32001
RATE_LIMITED = -32029

MAX_DEPTH = 32
MAX_NUMBER_CHARS = 40
_MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})

log = structlog.get_logger()

Id = str | int | float | None
_ID_TYPES = (str, int, float, type(None))  # a tuple: isinstance with a union is slower


class RpcError(Exception):
    """A defined JSON-RPC error a method may raise: code, one-sentence message, optional data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


Handler = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    handler: Handler
    signature: Signature = field(default_factory=Signature)
    summary: str = ""
    result_name: str = "result"
    result_schema: Mapping[str, Any] = field(default_factory=dict)
    errors: tuple[tuple[int, str], ...] = ()
    auth: bool = True


Observe = Callable[[str, int, float], None]


class Access(Protocol):
    """The caller of one HTTP request, as far as the dispatcher needs to know it."""

    def admit(self, cost: int) -> int | None:
        """Charge `cost` calls that need a key: None when admitted, else seconds to wait (>= 1)."""
        ...

    def authorize(self, method: str) -> RpcError | None:
        """None when the caller may call `method` (one that needs a key), else the -32001 error."""
        ...

    def audit(self, method: str, params: Any, result: Any, code: int) -> None:
        """The outcome of an authorized-or-refused call of a method that needs a key (0: ok)."""
        ...


class Anonymous:
    """A caller without a key: nothing that needs one is allowed, nothing is limited."""

    def admit(self, cost: int) -> int | None:
        return None

    def authorize(self, method: str) -> RpcError | None:
        return RpcError(UNAUTHORIZED, "Unauthorized", {"reason": "missing"})

    def audit(self, method: str, params: Any, result: Any, code: int) -> None:
        return None


NO_KEY = Anonymous()


@dataclass(frozen=True, slots=True)
class Reply:
    """What to answer over HTTP: `body` None is "nothing" (204)."""

    body: bytes | None
    status: int = 200
    retry_after: int | None = None


class _Duplicate(Exception):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Duplicate()
    return obj


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError("number too long")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError("number too long")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_deep(value: Any) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def error_object(code: int, message: str, data: Any = None, id_: Id = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "error": err, "id": id_}


class Encoded:
    """A result a method encoded as JSON already (a read that keeps its last answer's bytes)."""

    __slots__ = ("fragment", "json")

    def __init__(self, json_bytes: bytes) -> None:
        self.json = json_bytes
        self.fragment = orjson.Fragment(json_bytes)


def encode(reply: Any) -> bytes:
    """Compact UTF-8 JSON. orjson: the reply's encoding was a tenth of an `account.get`'s
    time with the stdlib encoder, a few percent with orjson. It takes no integer beyond
    64 bits (a caller's id may be one): those replies go through the stdlib encoder."""
    try:
        return orjson.dumps(reply, default=_fragment)
    except TypeError:
        return json.dumps(reply, separators=(",", ":"), allow_nan=False, default=_decoded).encode()


def decoded(result: Any) -> Any:
    """A method's result as a JSON value."""
    return orjson.loads(result.json) if isinstance(result, Encoded) else result


def _fragment(value: Any) -> Any:
    if isinstance(value, Encoded):
        return value.fragment
    raise TypeError(f"{type(value).__name__} is not JSON")


def _decoded(value: Any) -> Any:
    if isinstance(value, Encoded):
        return decoded(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


# Built once: json.loads with these hooks would build a decoder on every call.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs,
    parse_int=_parse_int,
    parse_float=_parse_float,
    parse_constant=_reject_constant,
)


def parse(body: bytes) -> Any:
    """Decode strictly; raise RpcError(-32700 or -32600) instead of anything else."""
    value = _parse_plain(body)
    return _parse_strict(body) if value is _UNSURE else _shallow(body, value)


def _shallow(body: bytes, value: Any) -> Any:
    """`value`, unless it nests deeper than `MAX_DEPTH` (-32700)."""
    # Only a body with more brackets than the limit can nest deeper than it.
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and _too_deep(value):
        raise RpcError(PARSE_ERROR, "Parse error", {"reason": f"nesting deeper than {MAX_DEPTH}"})
    return value


_UNSURE: Any = object()


def _parse_plain(body: bytes) -> Any:
    """orjson's decoding of `body` where it is certainly the strict decoder's, else `_UNSURE`.

    orjson is ~7x faster than the stdlib decoder with our hooks, and every call is parsed
    here. It refuses everything the strict decoder refuses, and lone surrogate escapes
    besides (which the strict one accepts: every error is left to it), and it accepts what
    the strict one refuses or reads differently in two ways: a duplicate member name (the last one wins),
    and a number the strict one refuses as too long or an integer past 64 bits, both of
    which orjson reads as a float. So its answer stands only without floats, and with as
    many members as the body has colons: a colon is a member's separator or inside a
    string, and a dropped duplicate is one member fewer."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _UNSURE
    members = 0
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            members += len(item)
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float:
            return _UNSURE
    return value if members == body.count(b":") else _UNSURE


def _parse_strict(body: bytes) -> Any:
    """The reference decoder: the stdlib's with our hooks, and the depth limit."""
    try:
        text = body.decode("utf-8")
        if text.startswith("\ufeff"):
            raise ValueError("a BOM")
        value = _DECODER.decode(text)
    except _Duplicate:
        raise RpcError(INVALID_REQUEST, "Invalid Request", {"reason": "duplicate member name"})
    except (ValueError, RecursionError):
        raise RpcError(PARSE_ERROR, "Parse error")
    return _shallow(body, value)


class Dispatcher:
    def __init__(
        self,
        table: Mapping[str, Method],
        *,
        max_batch: int = 100,
        observe: Observe | None = None,
    ) -> None:
        self.table = table
        self.max_batch = max_batch
        self._observe = observe or (lambda _m, _c, _s: None)

    async def handle(self, body: bytes, access: Access = NO_KEY) -> Reply:
        try:
            message = parse(body)
        except RpcError as exc:
            self._observe("-", exc.code, 0.0)
            return Reply(encode(error_object(exc.code, exc.message, exc.data)))
        if isinstance(message, list):
            if not message:
                self._observe("-", INVALID_REQUEST, 0.0)
                return Reply(encode(
                    error_object(INVALID_REQUEST, "Invalid Request", {"reason": "empty batch"})
                ))
            if len(message) > self.max_batch:
                self._observe("-", INVALID_REQUEST, 0.0)
                return Reply(encode(
                    error_object(
                        INVALID_REQUEST,
                        "Invalid Request",
                        {"reason": f"batch too large (at most {self.max_batch} entries)"},
                    )
                ))
        cost = self._cost(message)
        if cost:
            wait = access.admit(cost)
            if wait is not None:
                return self._limited(message, wait)
        if isinstance(message, list):
            replies = [await self.call(item, access) for item in message]
            kept = [r for r in replies if r is not None]
            return Reply(encode(kept) if kept else None)
        reply = await self.call(message, access)
        return Reply(None if reply is None else encode(reply))

    def _cost(self, message: Any) -> int:
        """How many calls in the body are of methods that need a key."""
        cost = 0
        for item in message if isinstance(message, list) else [message]:
            if isinstance(item, dict) and isinstance(item.get("method"), str):
                method = self.table.get(item["method"])
                if method is not None and method.auth:
                    cost += 1
        return cost

    def _limited(self, message: Any, wait: int) -> Reply:
        """One -32029 for the whole body: the request's id, null for a batch or a bad id."""
        id_: Id = None
        method_name = "-"
        if isinstance(message, dict):
            candidate = message.get("id")
            if not isinstance(candidate, bool) and isinstance(candidate, _ID_TYPES):
                id_ = candidate
            method_name = message["method"]  # _cost found it in the table
        self._observe(method_name, RATE_LIMITED, 0.0)
        body = encode(error_object(RATE_LIMITED, "Rate limited", {"retry_after": wait}, id_))
        return Reply(body, status=429, retry_after=wait)

    async def call(self, request: Any, access: Access = NO_KEY) -> dict[str, Any] | None:
        """Answer one request object; None for a notification."""
        started = time.perf_counter()
        method_name = "-"
        if not isinstance(request, dict):
            self._observe(method_name, INVALID_REQUEST, 0.0)
            return error_object(INVALID_REQUEST, "Invalid Request", {"reason": "not an object"})
        notification = "id" not in request
        id_ = request.get("id")
        if isinstance(id_, bool) or not isinstance(id_, _ID_TYPES):
            self._observe(method_name, INVALID_REQUEST, 0.0)
            return error_object(INVALID_REQUEST, "Invalid Request", {"reason": "bad id"})
        problem = _request_problem(request)
        if problem is not None:
            self._observe(method_name, INVALID_REQUEST, 0.0)
            return error_object(INVALID_REQUEST, "Invalid Request", {"reason": problem}, id_)
        name: str = request["method"]
        method = self.table.get(name)
        result: Any = None
        error: RpcError | None = None
        try:
            if method is None:
                raise RpcError(METHOD_NOT_FOUND, "Method not found")
            method_name = name
            if method.auth:
                refusal = access.authorize(name)
                if refusal is not None:
                    raise refusal
            try:
                params = method.signature.bind(request.get("params"))
            except InvalidParams as exc:
                raise RpcError(INVALID_PARAMS, "Invalid params", {"fields": exc.fields})
            result = await method.handler(params)
        except RpcError as exc:
            error = exc
            if notification:
                log.info("notification_failed", method=method_name, code=exc.code)
        except Exception:
            log.exception("rpc_method_failed", method=method_name)
            error = RpcError(INTERNAL_ERROR, "Internal error")
        code = 0 if error is None else error.code
        self._observe(method_name, code, time.perf_counter() - started)
        if method is not None and method.auth:
            access.audit(name, request.get("params"), result, code)
        if notification:
            return None
        if error is not None:
            return error_object(error.code, error.message, error.data, id_)
        return {"jsonrpc": "2.0", "result": result, "id": id_}


def _request_problem(request: dict[str, Any]) -> str | None:
    if request.get("jsonrpc") != "2.0" or isinstance(request.get("jsonrpc"), bool):
        return 'jsonrpc must be exactly "2.0"'
    if not isinstance(request.get("method"), str):
        return "method must be a string"
    if "params" in request and not isinstance(request["params"], (list, dict)):
        return "params must be an array or an object"
    if not _MEMBERS.issuperset(request):
        extra = set(request) - _MEMBERS
        return "unexpected members: " + ", ".join(sorted(_printable(k) for k in extra))
    return None


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF else "?" for ch in text)[:64]
