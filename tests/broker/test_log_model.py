"""The log against a model, under keyed appends, syncs, cleaning rounds (whole or cut short by a
kill), power losses and garbage tails (Hypothesis).

A power loss keeps everything fdatasynced and any prefix of what was written
after; the disk may also show garbage past that prefix. A kill in a cleaning
round leaves its files as they were at that step. After each, the log must
hold exactly the newest record the model has for every key (a tombstone may
be gone, never replaced by an older record), every record it returns must be
one the model wrote under that seq, and the dedup window must answer for the
last WINDOW records.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.broker import cleaner
from actors.broker.log import Append, EventLog
from tests.broker.log_driver import eid, newest_by_key, open_log, read_all

SEGMENT_BYTES = 300
WINDOW = 8
STEPS = ("cleaned_written", "committed", "inputs_deleted", "renamed")


class Killed(BaseException):
    pass


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="logmodel-"))
        self.log = self._open()
        self.model: dict[int, tuple[bytes, bytes, bool]] = {}  # seq -> key, envelope, tombstone
        self.synced = 0
        self.synced_size: dict[str, int] = {}
        self.counter = 0

    def _open(self) -> EventLog:
        return open_log(self.dir, segment_bytes=SEGMENT_BYTES, window=WINDOW)

    def _newest(self) -> Path:
        return sorted(self.dir.iterdir())[-1]

    @rule(keys=st.lists(st.integers(0, 4), min_size=1, max_size=6), tombstone=st.booleans())
    def append(self, keys: list[int], tombstone: bool) -> None:
        items = []
        for i, k in enumerate(keys):
            self.counter += 1
            gone = tombstone and i == len(keys) - 1
            items.append(Append(eid(self.counter), b"account:%d" % k, gone, b"env-%d" % self.counter))
        seqs = self.log.append(items, now_ms=self.counter)
        assert seqs == list(range(seqs[0], seqs[0] + len(items)))
        assert seqs[0] > max(self.model, default=0)
        for seq, item in zip(seqs, items, strict=True):
            self.model[seq] = (item.key, item.envelope, item.tombstone)

    @rule()
    def sync(self) -> None:
        EventLog.sync_fds(self.log.take_dirty())
        self.synced = self.log.head
        newest = self._newest()
        self.synced_size = {newest.name: self.log.active_end}

    @rule(
        synced=st.booleans(),
        roll=st.booleans(),
        kill=st.none() | st.tuples(st.sampled_from(STEPS), st.integers(1, 3)),
    )
    def clean(self, synced: bool, roll: bool, kill: tuple[str, int] | None) -> None:
        if synced:  # what the broker's group commit usually is by the time a round starts
            self.sync()
        if roll and self.log.roll():
            self.synced_size = {}
        # Consumers are never past what is durable; tombstones expire at once.
        plan = self.log.plan_cleaning(
            now_ms=10**12, floor=self.synced, retention_ms=0, durable=self.synced
        )
        seen = 0

        def step(name: str) -> None:
            nonlocal seen
            if kill is not None and name == kill[0]:
                seen += 1
                if seen == kill[1]:
                    raise Killed

        try:
            result = cleaner.clean(plan, step)
            if self.log.apply_cleaning(result, self.synced):
                cleaner.commit(result, self.dir, step)
                self.log.cleaning_committed()
            else:
                cleaner.discard(result)
        except Killed:
            self.log.close()
            self.log = self._open()  # page cache survives a kill: nothing written is lost
            assert self.log.head == max(self.model, default=0) or not self.model

    @precondition(lambda self: bool(self.model))
    @rule(keep=st.floats(0, 1), garbage=st.binary(max_size=64), zeros=st.integers(0, 64))
    def power_loss(self, keep: float, garbage: bytes, zeros: int) -> None:
        self.log.close()
        newest = self._newest()
        size = self.log.active_end  # what was written: past it lie preallocated zeros
        durable = self.synced_size.get(newest.name, 0)
        cut = durable + int((size - durable) * keep)
        with newest.open("r+b") as f:
            f.truncate(cut)
            f.seek(cut)
            f.write(garbage + bytes(zeros))
        self.log = self._open()
        assert self.synced <= self.log.head
        for seq in [s for s in self.model if s > self.log.head]:
            del self.model[seq]
        self.sync()  # recovery fsynced what it kept

    @invariant()
    def the_log_holds_the_newest_record_of_every_key(self) -> None:
        records = read_all(self.log)
        for seq, key, env in records:
            assert self.model[seq][:2] == (key, env)
        got = newest_by_key(records)
        want = newest_by_key([(seq, key, env) for seq, (key, env, _t) in sorted(self.model.items())])
        for key, (seq, env) in want.items():
            if self.model[seq][2]:
                assert got.get(key, (seq, env)) == (seq, env)
            else:
                assert got[key] == (seq, env)
        assert set(got) <= set(want)

    @invariant()
    def the_dedup_window_answers_for_the_last_records(self) -> None:
        head = self.log.head
        for seq in self.model:
            if seq > head - WINDOW:
                assert self.log.seq_of(eid_of(self.model, seq)) == seq

    def teardown(self) -> None:
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def eid_of(model: dict[int, tuple[bytes, bytes, bool]], seq: int) -> bytes:
    _key, env, _t = model[seq]
    return eid(int(env.split(b"-")[1]))


LogMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, derandomize=True
)
test_log_matches_its_model_across_kills_in_cleaning_and_power_losses = LogMachine.TestCase
