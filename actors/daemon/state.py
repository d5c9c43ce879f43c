"""The daemon's local desired set: which accounts are live or deleted, from the events it consumed.

A JSON-lines journal in the state dir. `record` appends one line and fsyncs
before it returns, so an event is in the desired set before it is acked.
`open` replays the journal (a torn or garbled line, as a crash can leave, is
skipped and counted), then compacts it into a fresh file with one line per
account (temp file, fsync, rename, fsync of the directory). A record only
replaces an older one for the same account when its broker seq is higher, so
a redelivered old event never resurrects a deleted account.

Blocking file I/O runs in a worker thread; the owner (one actor) serialises calls.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, TextIO

from core.tenancy import Tenant

Status = Literal["live", "deleted"]
JOURNAL_NAME = "desired.jsonl"


@dataclass(frozen=True, slots=True)
class AccountRecord:
    account_id: str
    slug: str
    namespace: str
    name: str
    status: Status
    seq: int
    event_id: str
    correlation_id: str

    @property
    def tenant(self) -> Tenant:
        return Tenant(self.account_id, self.slug, self.namespace, self.name)

    @classmethod
    def from_json(cls, obj: object) -> AccountRecord:
        if not isinstance(obj, dict):
            raise ValueError("record must be an object")
        fields = {
            k: obj.get(k)
            for k in ("account_id", "slug", "namespace", "name", "event_id", "correlation_id")
        }
        if not all(isinstance(v, str) for v in fields.values()):
            raise ValueError("record string fields missing")
        status, seq = obj.get("status"), obj.get("seq")
        if status not in ("live", "deleted") or not isinstance(seq, int):
            raise ValueError("record status/seq invalid")
        return cls(status=status, seq=seq, **fields)  # type: ignore[arg-type]


class DesiredState:
    """Use `await DesiredState.open(dir)`; `close()` when done."""

    def __init__(self, path: Path, records: dict[str, AccountRecord], skipped: int) -> None:
        self.path = path
        self._records = records
        self.skipped_lines = skipped
        self._file: TextIO | None = None

    @classmethod
    async def open(cls, state_dir: Path) -> DesiredState:
        path = state_dir / JOURNAL_NAME
        records, skipped = await asyncio.to_thread(_load_and_compact, path)
        state = cls(path, records, skipped)
        state._file = await asyncio.to_thread(path.open, "a", encoding="utf-8")
        return state

    async def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            await asyncio.to_thread(file.close)

    def get(self, account_id: str) -> AccountRecord | None:
        return self._records.get(account_id)

    def __iter__(self) -> Iterator[AccountRecord]:
        return iter(list(self._records.values()))

    def __len__(self) -> int:
        return len(self._records)

    async def record(self, rec: AccountRecord) -> bool:
        """Store `rec` durably if it is newer than what we know; True when it changed the set."""
        known = self._records.get(rec.account_id)
        if known is not None and known.seq >= rec.seq:
            return False
        if self._file is None:
            raise RuntimeError("DesiredState is closed")
        line = json.dumps(asdict(rec), separators=(",", ":")) + "\n"
        await asyncio.to_thread(_append, self._file, line)
        self._records[rec.account_id] = rec
        return True


def _append(file: TextIO, line: str) -> None:
    file.write(line)
    file.flush()
    os.fsync(file.fileno())


def _load_and_compact(path: Path) -> tuple[dict[str, AccountRecord], int]:
    records: dict[str, AccountRecord] = {}
    skipped = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        with path.open("r", encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = AccountRecord.from_json(json.loads(line))
                except ValueError:
                    skipped += 1
                    continue
                known = records.get(rec.account_id)
                if known is None or rec.seq > known.seq:
                    records[rec.account_id] = rec
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for rec in records.values():
            f.write(json.dumps(asdict(rec), separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return records, skipped
