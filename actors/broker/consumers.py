"""Durable consumers: who is registered, each one's position, when each was last seen.

A consumer's position is one integer: every record up to it is in the
consumer's own durable state (acks are cumulative, AckAll). A consumer is
registered the first time it is seen (a SYNC, PING or ACK under its name) and
stays registered until `remove`: until then it holds back tombstones it has
not passed (`floor`). A removed consumer that is still running registers again
with its next request, from position 0.

The table is saved as one small JSON file with `actors.runtime.files.write_atomic`
by the owner, at most every flush interval while dirty and on stop. Losing the
latest acks to a crash only causes a harmless redelivery (and the subscriber
re-asserts its position); the cleaner therefore trusts only positions that are
both saved and current. An unreadable file is reported and replaced by an empty
table, for the same reason: at-least-once still holds.

Liveness is judged on the monotonic clock: a wall clock stepped by NTP or by a
resumed VM must not turn every consumer offline (or keep a dead one online). The
wall-clock time is what is shown and saved; a reloaded table places each saved
time on the monotonic clock once, as that long before the load.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Instant:
    """One moment on both clocks: the wall clock for what is shown and saved, the monotonic
    one for liveness."""

    wall: float
    mono: float

    @classmethod
    def now(cls) -> Instant:
        return cls(time.time(), time.monotonic())


@dataclass
class ConsumerState:
    position: int = 0
    last_seen: float | None = None  # wall clock
    seen_mono: float | None = None


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ConsumerTable:
    def __init__(self) -> None:
        self._consumers: dict[str, ConsumerState] = {}
        self.dirty = False

    # ---- persistence ----------------------------------------------------------

    @classmethod
    def load(cls, path: Path, at: Instant) -> tuple[ConsumerTable, str | None]:
        """The saved table, and a problem description when the file could not be used."""
        table = cls()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            for name, item in raw["consumers"].items():
                position = item["position"]
                if not isinstance(position, int) or position < 0:
                    raise ValueError(f"position of {name} is not a seq")
                seen = None if item["last_seen"] is None else float(item["last_seen"])
                table._consumers[str(name)] = ConsumerState(
                    position, seen, None if seen is None else at.mono - (at.wall - seen)
                )
        except FileNotFoundError:
            return table, None
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            return cls(), f"{type(exc).__name__}: {exc}"
        return table, None

    def snapshot(self) -> bytes:
        self.dirty = False
        body: dict[str, Any] = {
            "consumers": {
                name: {"position": s.position, "last_seen": s.last_seen}
                for name, s in self._consumers.items()
            }
        }
        return json.dumps(body, separators=(",", ":")).encode()

    # ---- state ----------------------------------------------------------------

    def __contains__(self, name: str) -> bool:
        return name in self._consumers

    def get(self, name: str) -> ConsumerState:
        state = self._consumers.get(name)
        if state is None:
            state = self._consumers[name] = ConsumerState()
            self.dirty = True
        return state

    def touch(self, name: str, at: Instant) -> ConsumerState:
        state = self.get(name)
        state.last_seen, state.seen_mono = at.wall, at.mono
        return state

    def ack(self, name: str, position: int, head: int, at: Instant) -> bool:
        """Move the consumer to min(position, head) if that is ahead; True when it moved."""
        state = self.touch(name, at)
        position = min(position, head)
        if position <= state.position:
            return False
        state.position = position
        self.dirty = True
        return True

    def remove(self, name: str) -> bool:
        if self._consumers.pop(name, None) is None:
            return False
        self.dirty = True
        return True

    def floor(self) -> int | None:
        """The lowest position; None when nobody is registered (nothing is held back)."""
        return min((s.position for s in self._consumers.values()), default=None)

    def names(self) -> list[str]:
        return sorted(self._consumers)

    def describe(self, head: int, at: Instant, offline_after: float) -> list[dict[str, Any]]:
        out = []
        for name in sorted(self._consumers):
            s = self._consumers[name]
            online = s.seen_mono is not None and at.mono - s.seen_mono <= offline_after
            out.append(
                {
                    "name": name,
                    "acked_seq": s.position,
                    "lag": max(0, head - s.position),
                    "last_seen": rfc3339(s.last_seen) if s.last_seen is not None else None,
                    "online": online,
                }
            )
        return out
