"""Durable consumers: who is registered, how far each has acked, when each was last seen.

Acks may come in any order (a daemon keeps order only per aggregate), so each
consumer has a contiguous `watermark` (every seq <= it is acked) plus the set of
acked seqs above it. A consumer is registered the first time it is seen (a
SYNC, PING or ACK under its name) and stays registered.

The table is saved as one small JSON file, written to a temp file, fsynced and
renamed (then the directory fsynced), by the owner at most every flush interval
while dirty and on stop. Losing the latest acks to a crash only causes a
harmless redelivery. An unreadable file is reported and replaced by an empty
table, for the same reason: at-least-once still holds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class ConsumerState:
    watermark: int = 0
    above: set[int] = field(default_factory=set)
    last_seen: float | None = None


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ConsumerTable:
    def __init__(self) -> None:
        self._consumers: dict[str, ConsumerState] = {}
        self.dirty = False

    # ---- persistence ----------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> tuple[ConsumerTable, str | None]:
        """The saved table, and a problem description when the file could not be used."""
        table = cls()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            for name, item in raw["consumers"].items():
                state = ConsumerState(
                    int(item["watermark"]),
                    {int(s) for s in item["above"]},
                    float(item["last_seen"]) if item["last_seen"] is not None else None,
                )
                table._consumers[str(name)] = state
        except FileNotFoundError:
            return table, None
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            return cls(), f"{type(exc).__name__}: {exc}"
        return table, None

    def snapshot(self) -> bytes:
        self.dirty = False
        body: dict[str, Any] = {
            "consumers": {
                name: {"watermark": s.watermark, "above": sorted(s.above), "last_seen": s.last_seen}
                for name, s in self._consumers.items()
            }
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @staticmethod
    def write_atomic(path: Path, data: bytes) -> None:
        """Temp file, fsync, rename, fsync the directory: the file is always whole."""
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # ---- state ----------------------------------------------------------------

    def __contains__(self, name: str) -> bool:
        return name in self._consumers

    def get(self, name: str) -> ConsumerState:
        state = self._consumers.get(name)
        if state is None:
            state = self._consumers[name] = ConsumerState()
            self.dirty = True
        return state

    def touch(self, name: str, now: float) -> ConsumerState:
        state = self.get(name)
        state.last_seen = now
        return state

    def ack(self, name: str, seqs: tuple[int, ...], head: int, now: float, upto: int = 0) -> int:
        """Record acks for seqs in 1..head (and all seqs <= upto); returns how many were new."""
        state = self.touch(name, now)
        new = 0
        upto = min(upto, head)
        if upto > state.watermark:
            new += upto - state.watermark
            state.watermark = upto
            state.above = {s for s in state.above if s > upto}
        for seq in seqs:
            if seq <= state.watermark or seq > head or seq in state.above:
                continue
            state.above.add(seq)
            new += 1
        while state.watermark + 1 in state.above:
            state.watermark += 1
            state.above.discard(state.watermark)
        if new:
            self.dirty = True
        return new

    def names(self) -> list[str]:
        return sorted(self._consumers)

    def describe(self, head: int, now: float, offline_after: float) -> list[dict[str, Any]]:
        out = []
        for name in sorted(self._consumers):
            s = self._consumers[name]
            online = s.last_seen is not None and now - s.last_seen <= offline_after
            out.append(
                {
                    "name": name,
                    "acked_seq": s.watermark,
                    "lag": max(0, head - s.watermark - len(s.above)),
                    "last_seen": rfc3339(s.last_seen) if s.last_seen is not None else None,
                    "online": online,
                }
            )
        return out
