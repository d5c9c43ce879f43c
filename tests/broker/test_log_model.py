"""The log against a model, under random appends, syncs, power losses and garbage tails (Hypothesis).

A power loss keeps everything fdatasynced and any prefix of what was written
after; the disk may also show garbage past that prefix. After each one the log
must reopen holding exactly a prefix of what was appended, at least everything
that was synced, with the dedup index and reads agreeing with it.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.broker.log import EventLog

SEGMENT_BYTES = 300


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="logmodel-"))
        self.log = EventLog.open(self.dir, segment_bytes=SEGMENT_BYTES)
        self.model: list[tuple[bytes, bytes]] = []  # index = seq - 1
        self.synced = 0
        self.synced_size: dict[str, int] = {}
        self.counter = 0

    def _newest(self) -> Path:
        return sorted(self.dir.iterdir())[-1]

    @rule(count=st.integers(1, 6), repeat_old=st.booleans())
    def append(self, count: int, repeat_old: bool) -> None:
        items = []
        for _ in range(count):
            self.counter += 1
            items.append((uuid.UUID(int=self.counter).bytes, f"env-{self.counter}".encode() * 3))
        if repeat_old and self.model:  # the broker asks seq_of first and never re-appends
            assert self.log.seq_of(self.model[0][0]) == 1
        seqs = self.log.append(items)
        assert seqs == list(range(len(self.model) + 1, len(self.model) + 1 + count))
        self.model.extend(items)

    @rule()
    def sync(self) -> None:
        EventLog.sync_fds(self.log.take_dirty())
        self.synced = len(self.model)
        newest = self._newest()
        self.synced_size = {newest.name: newest.stat().st_size}

    @precondition(lambda self: bool(self.model))
    @rule(keep=st.floats(0, 1), garbage=st.binary(max_size=64), zeros=st.integers(0, 64))
    def power_loss(self, keep: float, garbage: bytes, zeros: int) -> None:
        self.log.close()
        newest = self._newest()
        size = newest.stat().st_size
        durable = self.synced_size.get(newest.name, 0)
        cut = durable + int((size - durable) * keep)
        with newest.open("r+b") as f:
            f.truncate(cut)
            f.seek(cut)
            f.write(garbage + bytes(zeros))
        self.log = EventLog.open(self.dir, segment_bytes=SEGMENT_BYTES)
        assert self.synced <= self.log.head <= len(self.model)
        del self.model[self.log.head :]
        self.sync()  # recovery fsynced what it kept

    @invariant()
    def reads_and_index_match_the_model(self) -> None:
        head = len(self.model)
        assert self.log.head == head
        got: list[tuple[int, bytes]] = []
        while len(got) < head:
            got += self.log.read(len(got), 1000, head)
        assert [env for _seq, env in got] == [env for _eid, env in self.model]
        assert [seq for seq, _env in got] == list(range(1, head + 1))
        for seq, (eid, _env) in enumerate(self.model, start=1):
            assert self.log.seq_of(eid) == seq

    def teardown(self) -> None:
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


LogMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None, derandomize=True
)
test_log_matches_its_model_across_power_losses = LogMachine.TestCase
