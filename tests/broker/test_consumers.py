"""The consumer table: one cumulative position per consumer, removal, the tombstone floor,
saved atomically and reloaded."""

from __future__ import annotations

from pathlib import Path

from actors.broker.consumers import ConsumerTable
from actors.runtime.files import write_atomic


def test_acks_are_cumulative_capped_at_the_head_and_never_move_back() -> None:
    table = ConsumerTable()
    assert table.ack("cluster:a", 3, head=10, now=1.0)
    assert not table.ack("cluster:a", 2, head=10, now=2.0)  # old news
    assert table.ack("cluster:a", 50, head=10, now=3.0)
    assert table.get("cluster:a").position == 10
    table.dirty = False
    assert not table.ack("cluster:a", 10, head=12, now=3.0)
    assert not table.dirty
    (info,) = table.describe(head=12, now=3.5, offline_after=1.0)
    assert info == {
        "name": "cluster:a",
        "acked_seq": 10,
        "lag": 2,
        "last_seen": "1970-01-01T00:00:03.000Z",
        "online": True,
    }
    assert not table.describe(head=12, now=10.0, offline_after=1.0)[0]["online"]


def test_the_floor_is_the_lowest_position_and_a_removed_consumer_no_longer_counts() -> None:
    table = ConsumerTable()
    assert table.floor() is None  # nobody holds anything back
    table.ack("cache", 6, head=7, now=1.0)
    table.touch("cluster:slow", now=1.0)
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
    table.ack("cache", 4, head=5, now=7.0)
    table.touch("cluster:b", now=8.0)
    write_atomic(path, table.snapshot())
    assert not table.dirty
    loaded, problem = ConsumerTable.load(path)
    assert problem is None
    assert loaded.names() == ["cache", "cluster:b"]
    assert loaded.get("cache").position == 4
    assert loaded.get("cluster:b").last_seen == 8.0


def test_an_unreadable_table_is_reported_and_replaced_by_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "consumers.json"
    for text in (
        '{"consumers": {"cache": {"position": "x"',
        '{"consumers": {"c": {"position": -1, "last_seen": null}}}',
    ):
        path.write_text(text)
        table, problem = ConsumerTable.load(path)
        assert problem is not None
        assert table.names() == []
    missing, none = ConsumerTable.load(tmp_path / "absent.json")
    assert (missing.names(), none) == ([], None)
