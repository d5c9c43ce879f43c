"""Compaction of the log: newest record per key, tombstone expiry, crash safety of a round,
the dedup window across cleaning, and memory/restart bounded by live keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.broker import cleaner
from actors.broker.index import DedupWindow
from actors.broker.log import Append, EventLog
from actors.broker.segments import CLEANED, FD_CACHE, SWAP
from tests.broker.log_driver import DAY_MS, Writer, clean_round, eid, newest_by_key, open_log, read_all


def test_compaction_keeps_the_newest_record_per_key_across_restart(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    writer = Writer(log)
    writer.updates(400, keys=10)
    before = log.size
    result = clean_round(log)
    assert result is not None
    assert result.dropped > 300
    assert log.size < before / 4
    assert newest_by_key(read_all(log)) == writer.newest()
    log.close()
    log = open_log(tmp_path)
    try:
        assert newest_by_key(read_all(log)) == writer.newest()
        assert log.head == 400
    finally:
        log.close()


def test_a_late_reader_from_zero_gets_exactly_the_newest_record_of_each_live_key(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    try:
        writer = Writer(log)
        writer.updates(300, keys=12)
        writer.put("account:k3", tombstone=True)
        log.roll()
        clean_round(log)
        records = read_all(log)
        newest = writer.newest()
        assert sorted((seq, key, env) for key, (seq, env) in newest.items()) == records
        assert len(records) == 12  # every key once, the deleted one as its tombstone
    finally:
        log.close()


def test_a_tombstone_goes_only_after_its_retention_and_once_every_consumer_passed_it(
    tmp_path: Path,
) -> None:
    log = open_log(tmp_path)
    try:
        writer = Writer(log)
        writer.updates(50, keys=5, now_ms=0)
        gone = writer.put("account:k1", tombstone=True, now_ms=1000)
        log.roll()

        def keys() -> set[bytes]:
            return {key for _s, key, _e in read_all(log)}

        clean_round(log, now_ms=1000 + DAY_MS - 1)  # retention not over
        assert b"account:k1" in keys()
        clean_round(log, now_ms=1000 + DAY_MS + 1, floor=gone - 1)  # a consumer is behind it
        assert b"account:k1" in keys()
        result = clean_round(log, now_ms=1000 + DAY_MS + 1, floor=gone)
        assert result is not None
        assert result.max_dropped_tombstone == gone
        assert keys() == {b"account:k0", b"account:k2", b"account:k3", b"account:k4"}
        assert log.index.tombstones == 0
        log.close()
        log = open_log(tmp_path)
        assert b"account:k1" not in keys()
        assert log.index.keys == 4
    finally:
        log.close()


def test_a_round_whose_dropped_tombstone_a_consumer_fell_behind_is_not_applied(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    try:
        writer = Writer(log)
        writer.updates(40, keys=4)
        gone = writer.put("account:k2", tombstone=True)
        log.roll()
        EventLog.sync_fds(log.take_dirty())
        plan = log.plan_cleaning(now_ms=DAY_MS, floor=gone, retention_ms=1, durable=log.head)
        result = cleaner.clean(plan)
        assert result.max_dropped_tombstone == gone
        assert not log.apply_cleaning(result, floor=gone - 1)  # a consumer registered meanwhile
        cleaner.discard(result)
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(CLEANED)]
        assert newest_by_key(read_all(log)) == writer.newest()
        assert clean_round(log, now_ms=DAY_MS, floor=gone, retention_ms=1) is not None
    finally:
        log.close()


class Crash(BaseException):
    """Where a SIGKILL would have stopped the cleaning round (nothing catches it)."""


STEPS = ["cleaned_written", "committed", "inputs_deleted", "renamed"]


@pytest.mark.parametrize("occurrence", [1, 2])
@pytest.mark.parametrize("step", STEPS)
def test_a_round_interrupted_at_any_step_recovers_to_the_same_newest_records(
    tmp_path: Path, step: str, occurrence: int
) -> None:
    log = open_log(tmp_path, segment_bytes=300, window=50)
    writer = Writer(log)
    for n in range(3):  # several groups per round: outputs of up to 300 bytes
        writer.updates(60, keys=12)
        writer.put(f"account:k{n}", tombstone=True)
    log.roll()
    newest = writer.newest()
    recent = [eid(n) for n in range(writer.counter - 49, writer.counter + 1)]
    seen = 0

    def crash_at(name: str) -> None:
        nonlocal seen
        if name == step:
            seen += 1
            if seen == occurrence:
                raise Crash(name)

    with pytest.raises(Crash):
        clean_round(log, now_ms=DAY_MS + 1, retention_ms=DAY_MS, step=crash_at)
    assert [p for p in tmp_path.iterdir() if p.name.endswith((CLEANED, SWAP))]
    log.close()  # the process died here: nothing more happens in memory
    log = open_log(tmp_path, segment_bytes=300, window=50)
    try:
        assert log.recovery.completed
        files = [p.name for p in tmp_path.iterdir()]
        assert not [n for n in files if n.endswith((CLEANED, SWAP))]
        after = newest_by_key(read_all(log))
        for key, (seq, env) in newest.items():
            if env.endswith(b"-gone"):
                assert after.get(key, (seq, env)) == (seq, env), "an older record came back"
            else:
                assert after[key] == (seq, env)
        assert set(after) <= set(newest)
        assert all(log.seq_of(e) is not None for e in recent)  # the dedup window survived
        assert clean_round(log, now_ms=DAY_MS + 1, retention_ms=DAY_MS) is not None
        assert {key for key, (_s, env) in newest.items() if not env.endswith(b"-gone")} == set(
            newest_by_key(read_all(log))
        )
    finally:
        log.close()


@pytest.mark.parametrize("window", [DedupWindow(count=3), DedupWindow(seconds=10)])
def test_a_duplicate_is_recognised_inside_the_window_and_not_beyond(
    tmp_path: Path, window: DedupWindow
) -> None:
    log = EventLog.open(tmp_path, dedup=window)
    try:
        for n, at in enumerate([0, 2000, 4000, 13_000, 14_000], start=1):
            log.append([Append(eid(n), b"account:a%d" % n, False, b"e")], now_ms=at)
        assert log.seq_of(eid(1)) is None
        assert [log.seq_of(eid(n)) for n in (3, 4, 5)] == [3, 4, 5]
    finally:
        log.close()


def test_stubs_keep_the_dedup_window_through_cleaning_and_restart_then_expire(tmp_path: Path) -> None:
    log = open_log(tmp_path, window=10)
    writer = Writer(log)
    writer.updates(6, keys=1)
    log.roll()
    result = clean_round(log)
    assert result is not None
    assert result.stubs == 5
    log.close()
    log = open_log(tmp_path, window=10)
    try:
        assert [log.seq_of(eid(n)) for n in range(1, 7)] == [1, 2, 3, 4, 5, 6]
        assert [seq for seq, _k, _e in read_all(log)] == [6]
        writer.log = log
        writer.updates(20, keys=2)
        log.roll()
        result = clean_round(log)
        assert result is not None
        assert log.seq_of(eid(1)) is None
        assert result.stubs <= 10
    finally:
        log.close()


def test_recovery_scans_no_more_records_than_live_keys_and_the_active_segment(tmp_path: Path) -> None:
    keys, rounds = 10, 0
    log = open_log(tmp_path, segment_bytes=2000)
    writer = Writer(log)
    for _ in range(100):
        writer.updates(50, keys=keys)
        if log.cleaning_due(now_ms=0, floor=log.head, retention_ms=DAY_MS) is not None:
            assert clean_round(log) is not None
            rounds += 1
    active = log.active_records
    log.close()
    log = open_log(tmp_path, segment_bytes=2000)
    try:
        assert rounds >= 10
        assert log.recovery.records <= keys + active + 1  # + the one stub the window holds
        assert log.size < 4 * 2000
        assert newest_by_key(read_all(log)) == writer.newest()
    finally:
        log.close()


def test_only_the_active_segment_stays_open_and_sealed_ones_share_a_small_fd_cache(
    tmp_path: Path,
) -> None:
    log = open_log(tmp_path, segment_bytes=200)
    try:
        Writer(log).updates(300, keys=300)
        assert log.segments > 3 * FD_CACHE
        assert log.open_fds == 1
        assert len(read_all(log)) == 300
        assert log.open_fds <= 1 + FD_CACHE
    finally:
        log.close()


def test_small_neighbours_merge_and_a_segment_that_loses_nothing_is_left_as_it_is(
    tmp_path: Path,
) -> None:
    log = open_log(tmp_path, segment_bytes=1000)
    try:
        writer = Writer(log)
        for n in range(3):  # three small sealed segments of distinct keys: nothing to drop
            writer.put(f"account:a{n}")
            log.roll()
        writer.updates(14, keys=14)  # too big to join them, and nothing to drop
        log.roll()
        sizes = [p.stat().st_size for p in sorted(tmp_path.iterdir())][:-1]  # the sealed ones
        assert sum(sizes) > 1000 >= sum(sizes[:3])
        result = clean_round(log)
        assert result is not None
        merged, alone = result.outputs
        assert (len(merged.inputs), merged.records, result.dropped) == (3, 3, 0)
        assert alone.path is None
        assert log.segments == 3
        assert newest_by_key(read_all(log)) == writer.newest()
        log.close()
        log = open_log(tmp_path, segment_bytes=1000)
        assert newest_by_key(read_all(log)) == writer.newest()
    finally:
        log.close()
