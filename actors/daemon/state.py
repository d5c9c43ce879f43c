"""The daemon's desired-state store: what every account should look like, as the log says now.

Like an informer's store, keyed by account id, it holds:

- `live`: each live account's whole desired state (`AccountCreated`, or its
  subclass `AccountUpdated`: plan and suspension included) at its
  generation, with the event id and correlation id that set it (for logs and
  outcome ids);
- `deleting`: the tombstone of each deleted account whose deletion this
  cluster has not yet reported; `forget_deletion` drops it once reported.
  Nothing of a deleted account is kept after that.

Applying is guarded by generation: an `AccountCreated` replaces what is stored
only when newer (and newer than a pending tombstone); an `AccountDeleted` with
a generation at least the stored one removes the live account. So a
redelivered or repeated event changes nothing.

Durability: `apply` (`stage`, then `commit`) appends one JSON line per change
and fsyncs once per batch before it returns, so a batch is in the store before
the consumer acks it.
`open` replays the journal (a torn or garbled line, as a crash can leave, is
skipped and counted; a line written before plans existed lacks `plan` and
`suspended` and reads as the default plan, not suspended) and compacts it to
one line per account with `files.write_atomic`; a journal grown far beyond
the live set is compacted the same way while running. `fresh` says no journal existed: the daemon must then
read the log from the beginning before it trusts the store (see dispatcher).

Blocking file I/O runs in a worker thread; the owner (one actor) serialises calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, assert_never

import orjson

from actors.runtime.files import write_atomic
from core.events import AccountCreated, AccountDeleted, payload_of
from core.tenancy import DEFAULT_PLAN, Tenant

JOURNAL_NAME = "desired.jsonl"
COMPACT_MIN_LINES = 1000


@dataclass(frozen=True, slots=True)
class Desired:
    """A live account's desired state and the event that set it."""

    account: AccountCreated
    event_id: str
    correlation_id: str

    @property
    def account_id(self) -> str:
        return self.account.account_id

    @property
    def generation(self) -> int:
        return self.account.generation

    @property
    def tenant(self) -> Tenant:
        a = self.account
        return Tenant(
            a.account_id, a.slug, a.namespace, a.name, a.generation, a.plan, a.suspended
        )


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A deleted account whose namespace this cluster still has to remove (or report gone)."""

    account_id: str
    slug: str
    namespace: str
    generation: int
    event_id: str
    correlation_id: str


@dataclass(frozen=True, slots=True)
class Incoming:
    """One consumed account event with the ids of its envelope."""

    event: AccountCreated | AccountDeleted
    event_id: str
    correlation_id: str


Change = Desired | Tombstone


class DesiredStore:
    """Use `await DesiredStore.open(dir)`; `close()` when done."""

    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        self.fresh = fresh
        self.skipped_lines = 0
        self.live: dict[str, Desired] = {}
        self.deleting: dict[str, Tombstone] = {}
        self._lines = 0
        self._staged: list[str] = []
        self._file: TextIO | None = None

    @classmethod
    async def open(cls, state_dir: Path) -> DesiredStore:
        path = state_dir / JOURNAL_NAME
        store = cls(path, fresh=not await asyncio.to_thread(path.exists))
        await asyncio.to_thread(store._load)
        return store

    async def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            await asyncio.to_thread(file.close)

    def get(self, account_id: str) -> Desired | None:
        return self.live.get(account_id)

    def __iter__(self) -> Iterator[Desired]:
        return iter(list(self.live.values()))

    def __len__(self) -> int:
        return len(self.live)

    async def create(self) -> None:
        """Make the (empty) journal exist, so the next start is no longer `fresh`."""
        await asyncio.to_thread(self._compact)
        self.fresh = False

    async def apply(self, events: Sequence[Incoming]) -> list[Change]:
        """Record what is newer than the store, durably (one fsync); return what changed."""
        changes = self.stage(events)
        await self.commit()
        return changes

    def stage(self, events: Sequence[Incoming]) -> list[Change]:
        """Record what is newer than the store in memory (readers see it at once) and return
        what changed; `commit` makes it durable. Synchronous, so a caller can act on the
        changes before any other task sees the new state."""
        changes: list[Change] = []
        for incoming in events:
            change = self._apply(incoming)
            if change is not None:
                changes.append(change)
                self._staged.append(_line(change))
        return changes

    async def commit(self) -> None:
        """Make what was staged durable (one fsync). On failure the lines stay staged: a
        redelivered batch stages nothing new, and its commit writes them."""
        lines, self._staged = self._staged, []
        if not lines:
            return
        try:
            await asyncio.to_thread(self._append, lines, True)
        except BaseException:
            self._staged[:0] = lines
            raise
        if self._lines > max(COMPACT_MIN_LINES, 4 * (len(self.live) + len(self.deleting))):
            await asyncio.to_thread(self._compact)

    async def forget_deletion(self, account_id: str, generation: int) -> None:
        """The deletion was reported: drop the tombstone. Not fsynced on its own (a crash
        before the next fsync means one more, deduplicated, report)."""
        tomb = self.deleting.get(account_id)
        if tomb is None or tomb.generation > generation:
            return
        del self.deleting[account_id]
        line = json.dumps({"op": "done", "account_id": account_id, "generation": generation})
        await asyncio.to_thread(self._append, [line + "\n"], False)

    # replay and apply share one set of rules -------------------------------------
    def _apply(self, incoming: Incoming) -> Change | None:
        event = incoming.event
        acc = event.account_id
        known = self.live.get(acc)
        tomb = self.deleting.get(acc)
        match event:
            case AccountCreated():
                if known is not None and known.generation >= event.generation:
                    return None
                if tomb is not None and tomb.generation >= event.generation:
                    return None
                desired = Desired(event, incoming.event_id, incoming.correlation_id)
                self.live[acc] = desired
                self.deleting.pop(acc, None)
                return desired
            case AccountDeleted():
                if known is not None and known.generation > event.generation:
                    return None
                if tomb is not None and tomb.generation >= event.generation:
                    return None
                gone = Tombstone(
                    acc, event.slug, event.namespace, event.generation, incoming.event_id,
                    incoming.correlation_id,
                )
                self.live.pop(acc, None)
                self.deleting[acc] = gone
                return gone
        raise AssertionError(f"unhandled event {event!r}")

    # files -----------------------------------------------------------------------
    def _load(self) -> None:
        if self.path.exists():
            with self.path.open("r", encoding="utf-8", errors="replace") as f:
                for raw in f:
                    try:
                        self._replay(json.loads(raw))
                    except (ValueError, TypeError, KeyError):
                        self.skipped_lines += 1
            self._compact()

    def _replay(self, obj: Any) -> None:
        if not isinstance(obj, dict):
            raise ValueError("journal line must be an object")
        match obj.get("op"):
            case "put":
                account = _account(obj["account"])
                self._apply(Incoming(account, _str(obj, "event_id"), _str(obj, "correlation_id")))
            case "del":
                event = AccountDeleted(
                    _str(obj, "account_id"), _str(obj, "slug"), _str(obj, "namespace"), "",
                    _int(obj, "generation"), "", "", "",
                )
                self._apply(Incoming(event, _str(obj, "event_id"), _str(obj, "correlation_id")))
            case "done":
                acc, generation = _str(obj, "account_id"), _int(obj, "generation")
                pending = self.deleting.get(acc)
                if pending is not None and pending.generation <= generation:
                    del self.deleting[acc]
            case _:
                raise ValueError("unknown journal op")

    def _compact(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        changes: list[Change] = [*self.live.values(), *self.deleting.values()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, "".join(_line(c) for c in changes))
        self._lines = len(changes)

    def _append(self, lines: list[str], sync: bool) -> None:
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write("".join(lines))
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())
        self._lines += len(lines)


def _line(change: Change) -> str:
    match change:
        case Desired(account=account, event_id=event_id, correlation_id=correlation_id):
            obj: dict[str, Any] = {
                "op": "put", "account": payload_of(account), "event_id": event_id,
                "correlation_id": correlation_id,
            }
        case Tombstone():
            obj = {"op": "del", **dataclasses.asdict(change)}
        case _:
            assert_never(change)
    return orjson.dumps(obj).decode() + "\n"


# Fields a journal line may lack (written before they existed): their value then.
_ADDED_LATER: dict[str, object] = {"plan": DEFAULT_PLAN, "suspended": False}


def _account(obj: Any) -> AccountCreated:
    if not isinstance(obj, dict):
        raise ValueError("account must be an object")
    values: dict[str, object] = {}
    for f in dataclasses.fields(AccountCreated):
        if f.name not in obj and f.name in _ADDED_LATER:
            values[f.name] = _ADDED_LATER[f.name]
        elif f.name == "generation":
            values[f.name] = _int(obj, f.name)
        elif f.name == "suspended":
            values[f.name] = _bool(obj, f.name)
        else:
            values[f.name] = _str(obj, f.name)
    return AccountCreated(**values)  # type: ignore[arg-type]


def _str(obj: Any, key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _bool(obj: Any, key: str) -> bool:
    value = obj[key]
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be a bool")
    return value


def _int(obj: Any, key: str) -> int:
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} must be an int")
    return value
