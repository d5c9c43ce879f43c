"""What the log keeps in memory besides its segments: the key index and the dedup window.

`KeyIndex` maps each key still in the log to the seq of its newest record (a
tombstone's too, until the tombstone is dropped). It is what compaction asks
"is this record the newest of its key?", so its size follows live keys, never
history. Tombstoned keys are also listed in store order with their store time,
so "is the oldest tombstone due?" costs one look.

`DedupWindow` remembers the event ids of the last N stored records (a count)
or of those stored in the last T (a duration), oldest first: a publish whose
event id is in it is a duplicate. Its size is bounded by the window, not by
the log. The cleaner keeps a stub (the event id alone) for a record it drops
while the record is still inside the window, so a restart rebuilds the same
window from disk.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass


class KeyIndex:
    def __init__(self) -> None:
        self.newest: dict[bytes, int] = {}
        self._tombstones: OrderedDict[bytes, tuple[int, int]] = OrderedDict()

    def put(self, key: bytes, seq: int, *, tombstone: bool, stored_at: int) -> int | None:
        """Record `seq` as the newest of `key`; returns the seq it supersedes, if any."""
        previous = self.newest.get(key)
        self.newest[key] = seq
        self._tombstones.pop(key, None)  # re-inserted below: the order stays store order
        if tombstone:
            self._tombstones[key] = (seq, stored_at)
        return previous

    def drop_tombstone(self, key: bytes, seq: int) -> bool:
        """Forget `key` if its newest record is still the tombstone `seq` (one the cleaner dropped)."""
        if self.newest.get(key) != seq:
            return False
        del self.newest[key]
        self._tombstones.pop(key, None)
        return True

    def oldest_tombstone(self) -> tuple[int, int] | None:
        """(seq, stored_at) of the tombstone stored first, if any."""
        for value in self._tombstones.values():
            return value
        return None

    @property
    def keys(self) -> int:
        return len(self.newest)

    @property
    def tombstones(self) -> int:
        return len(self._tombstones)


@dataclass(frozen=True, slots=True)
class WindowFloor:
    """A record is inside the dedup window when seq > `seq` and stored_at >= `stored_at`."""

    seq: int
    stored_at: int

    def holds(self, seq: int, stored_at: int) -> bool:
        return seq > self.seq and stored_at >= self.stored_at


class DedupWindow:
    """Event ids of recently stored records. Give `count` (records) or `seconds`, not both.

    Kept lean, as it is most of the broker's memory: a dict from event id to seq for the
    lookups, plus the ids in store order (and, for a duration, their store times) to evict
    the oldest; about 140 bytes per id.
    """

    def __init__(self, *, count: int | None = None, seconds: float | None = None) -> None:
        if (count is None) == (seconds is None):
            raise ValueError("a dedup window is a count or a duration")
        self._count = count
        self._millis = None if seconds is None else int(seconds * 1000)
        self._seqs: dict[bytes, int] = {}
        self._order: deque[bytes] = deque()
        self._stored_at: deque[int] = deque()  # only for a duration

    def get(self, event_id: bytes) -> int | None:
        return self._seqs.get(event_id)

    def add(self, event_id: bytes, seq: int, stored_at: int) -> None:
        if event_id in self._seqs:
            return  # a stub and its record, or the same id stored again: the first one counts
        self._seqs[event_id] = seq
        self._order.append(event_id)
        if self._millis is not None:
            self._stored_at.append(stored_at)

    def floor(self, head: int, now_ms: int) -> WindowFloor:
        if self._count is not None:
            return WindowFloor(max(0, head - self._count), 0)
        assert self._millis is not None
        return WindowFloor(0, now_ms - self._millis)

    def evict(self, head: int, now_ms: int) -> None:
        floor = self.floor(head, now_ms)
        order, seqs, stored_at = self._order, self._seqs, self._stored_at
        while order:
            at = stored_at[0] if stored_at else 0
            if floor.holds(seqs[order[0]], at):
                return
            del seqs[order.popleft()]
            if stored_at:
                stored_at.popleft()

    def __len__(self) -> int:
        return len(self._seqs)
