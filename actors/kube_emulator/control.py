"""The control actor: fault-injection rules and the recent-request log (admin endpoints).

A rule makes the next `count` matching requests fail in one way:

- `error500`: answer 500 InternalError without applying anything;
- `status`: answer the given status code with its canonical Status (429 adds Retry-After);
- `timeout`: hold the request `seconds` (bounded), without applying, then drop the connection;
- `drop_after_apply`: apply the request, then drop the connection without any response.

Rules match on method and path prefix (both optional) and are consumed in the order added.
"""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass
from typing import Any, Literal, assert_never, cast, get_args

from actors.runtime import Actor, Request

JSON = dict[str, Any]
FaultMode = Literal["error500", "timeout", "drop_after_apply", "status"]
MAX_HOLD_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class FaultRule:
    mode: FaultMode
    count: int = 1
    status: int = 500
    method: str | None = None
    path_prefix: str | None = None
    seconds: float = 30.0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_prefix is None or path.startswith(self.path_prefix))

    def to_json(self) -> JSON:
        return asdict(self)


def parse_fault(body: object) -> FaultRule:
    """Read a rule from the admin endpoint's JSON body; ValueError names what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    unknown = set(body) - {"mode", "count", "status", "match", "seconds"}
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")
    mode = body.get("mode")
    if mode not in get_args(FaultMode):
        raise ValueError(f"mode must be one of {list(get_args(FaultMode))}, got {mode!r}")
    count = body.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError("count must be a positive integer")
    status = body.get("status", 500)
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError("status must be an HTTP error code (400-599)")
    seconds = body.get("seconds", 30.0)
    if not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_HOLD_SECONDS:
        raise ValueError(f"seconds must be between 0 and {MAX_HOLD_SECONDS}")
    match = body.get("match") or {}
    if not isinstance(match, dict) or set(match) - {"method", "path_prefix"}:
        raise ValueError("match may only hold method and path_prefix")
    method, prefix = match.get("method"), match.get("path_prefix")
    if method is not None and not isinstance(method, str):
        raise ValueError("match.method must be a string")
    if prefix is not None and not isinstance(prefix, str):
        raise ValueError("match.path_prefix must be a string")
    return FaultRule(cast(FaultMode, mode), count, 500 if mode == "error500" else status,
                     method.upper() if method else None, prefix, float(seconds))


@dataclass(frozen=True, slots=True)
class AddFault(Request[None]):
    rule: FaultRule


@dataclass(frozen=True, slots=True)
class ClearFaults(Request[int]):
    pass


@dataclass(frozen=True, slots=True)
class ListFaults(Request[list[JSON]]):
    pass


@dataclass(frozen=True, slots=True)
class TakeFault(Request[FaultRule | None]):
    method: str
    path: str


@dataclass(frozen=True, slots=True)
class RecordRequest:
    entry: JSON


@dataclass(frozen=True, slots=True)
class RecentRequests(Request[list[JSON]]):
    pass


ControlMessage = AddFault | ClearFaults | ListFaults | TakeFault | RecordRequest | RecentRequests


class FaultBook:
    """The rules in force, [rule, remaining] each. Only the control actor changes them (in
    place); the HTTP side reads `armed` so that, with none in force (nearly always), a
    request costs no trip through the actor's mailbox."""

    def __init__(self) -> None:
        self.rules: list[list[Any]] = []

    @property
    def armed(self) -> bool:
        return bool(self.rules)


class Control(Actor[ControlMessage]):
    def __init__(
        self, initial: tuple[FaultRule, ...] = (), log_size: int = 500, book: FaultBook | None = None
    ) -> None:
        self.book = book if book is not None else FaultBook()
        self.rules = self.book.rules  # changed in place only: the book sees every change
        self.rules[:] = [[rule, rule.count] for rule in initial]
        self.requests: collections.deque[JSON] = collections.deque(maxlen=log_size)

    async def receive(self, message: ControlMessage) -> object:
        match message:
            case AddFault(rule):
                self.rules.append([rule, rule.count])
                self.log.info("fault_added", **rule.to_json())
                return None
            case ClearFaults():
                cleared = len(self.rules)
                self.rules.clear()
                return cleared
            case ListFaults():
                return [{**r.to_json(), "remaining": n} for r, n in self.rules]
            case TakeFault(method, path):
                for entry in self.rules:
                    rule, remaining = entry
                    if rule.matches(method, path):
                        if remaining <= 1:
                            self.rules.remove(entry)
                        else:
                            entry[1] = remaining - 1
                        self.log.info("fault_injected", mode=rule.mode, method=method, path=path)
                        return rule
                return None
            case RecordRequest(entry):
                self.requests.append(entry)
                return None
            case RecentRequests():
                return list(self.requests)
            case _:
                assert_never(message)
