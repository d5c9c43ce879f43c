"""The consumer table: one cumulative position per consumer, removal, the tombstone floor,
saved atomically and reloaded."""

from __future__ import annotations

from pathlib import Path

from actors.broker.consumers import ConsumerTable, Instant
from actors.runtime.files import write_atomic


def at(t: float) -> Instant:
    """Both clocks at t (the monotonic one offset, as it is from the wall clock)."""
    return Instant(wall=t, mono=t + 1000.0)


def test_acks_are_cumulative_capped_at_the_head_and_never_move_back() -> None:
    table = ConsumerTable()
    assert table.ack("cluster:a", 3, head=10, at=at(1.0))
    assert not table.ack("cluster:a", 2, head=10, at=at(2.0))  # old news
    assert table.ack("cluster:a", 50, head=10, at=at(3.0))
    assert table.get("cluster:a").position == 10
    table.dirty = False
    assert not table.ack("cluster:a", 10, head=12, at=at(3.0))
    assert not table.dirty
    (info,) = table.describe(head=12, at=at(3.5), offline_after=1.0)
    assert info == {
        "name": "cluster:a",
        "acked_seq": 10,
        "lag": 2,
        "last_seen": "1970-01-01T00:00:03.000Z",
        "online": True,
    }
    assert not table.describe(head=12, at=at(10.0), offline_after=1.0)[0]["online"]


def test_liveness_follows_the_monotonic_clock_whatever_the_wall_clock_does() -> None:
    table = ConsumerTable()
    table.touch("cluster:a", Instant(wall=1000.0, mono=50.0))
    # The wall clock stepped an hour either way (NTP, a resumed VM): still online, still shown
    # as seen when it was.
    for wall in (4600.0, -2600.0):
        (info,) = table.describe(head=0, at=Instant(wall=wall, mono=50.5), offline_after=1.0)
        assert info["online"]
        assert info["last_seen"] == "1970-01-01T00:16:40.000Z"
    # Silent past the timeout on the monotonic clock, with the wall clock stopped: offline.
    (info,) = table.describe(head=0, at=Instant(wall=1000.0, mono=51.5), offline_after=1.0)
    assert not info["online"]


def test_the_floor_is_the_lowest_position_and_a_removed_consumer_no_longer_counts() -> None:
    table = ConsumerTable()
    assert table.floor() is None  # nobody holds anything back
    table.ack("cache", 6, head=7, at=at(1.0))
    table.touch("cluster:slow", at(1.0))
    assert table.floor() == 0
    table.dirty = False
    assert table.remove("cluster:slow")
    assert table.dirty
    assert not table.remove("cluster:slow")
    assert table.floor() == 6
    assert table.names() == ["cache"]


def test_the_table_survives_a_save_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "consumers.json"
    table = ConsumerTable()
    table.ack("cache", 4, head=5, at=at(7.0))
    table.touch("cluster:b", at(8.0))
    write_atomic(path, table.snapshot())
    assert not table.dirty
    # Reloaded by a fresh process, whose monotonic clock starts elsewhere, 0.5 s later.
    loaded, problem = ConsumerTable.load(path, Instant(wall=8.5, mono=3.0))
    assert problem is None
    assert loaded.names() == ["cache", "cluster:b"]
    assert loaded.get("cache").position == 4
    assert loaded.get("cluster:b").last_seen == 8.0
    # Each saved time counts as that long ago on the new clock.
    online = {i["name"]: i["online"] for i in loaded.describe(5, Instant(9.0, 3.4), offline_after=1.0)}
    assert online == {"cache": False, "cluster:b": True}


def test_an_unreadable_table_is_reported_and_replaced_by_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "consumers.json"
    for text in (
        '{"consumers": {"cache": {"position": "x"',
        '{"consumers": {"c": {"position": -1, "last_seen": null}}}',
    ):
        path.write_text(text)
        table, problem = ConsumerTable.load(path, at(0.0))
        assert problem is not None
        assert table.names() == []
    missing, none = ConsumerTable.load(tmp_path / "absent.json", at(0.0))
    assert (missing.names(), none) == ([], None)
