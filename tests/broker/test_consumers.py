"""The consumer table: contiguous watermark over out-of-order acks, saved atomically, reloaded."""

from __future__ import annotations

from pathlib import Path

from actors.broker.consumers import ConsumerTable


def test_out_of_order_acks_advance_the_watermark_only_over_contiguous_seqs() -> None:
    table = ConsumerTable()
    assert table.ack("cluster:a", (3, 2, 5), head=10, now=1.0) == 3
    assert table.get("cluster:a").watermark == 0
    table.ack("cluster:a", (1,), head=10, now=2.0)
    state = table.get("cluster:a")
    assert (state.watermark, state.above) == (3, {5})
    assert table.ack("cluster:a", (2, 3, 11, 0), head=10, now=3.0) == 0  # old, beyond head, zero
    (info,) = table.describe(head=10, now=3.5, offline_after=1.0)
    assert info == {
        "name": "cluster:a",
        "acked_seq": 3,
        "lag": 6,
        "last_seen": "1970-01-01T00:00:03.000Z",
        "online": True,
    }
    assert not table.describe(head=10, now=10.0, offline_after=1.0)[0]["online"]


def test_the_table_survives_a_save_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "consumers.json"
    table = ConsumerTable()
    table.ack("cache", (1, 2, 4), head=5, now=7.0)
    table.touch("cluster:b", now=8.0)
    ConsumerTable.write_atomic(path, table.snapshot())
    assert not table.dirty
    loaded, problem = ConsumerTable.load(path)
    assert problem is None
    assert loaded.names() == ["cache", "cluster:b"]
    assert (loaded.get("cache").watermark, loaded.get("cache").above) == (2, {4})
    assert loaded.get("cluster:b").last_seen == 8.0


def test_an_unreadable_table_is_reported_and_replaced_by_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "consumers.json"
    path.write_text('{"consumers": {"cache": {"watermark": "x"')
    table, problem = ConsumerTable.load(path)
    assert problem is not None
    assert table.names() == []
    missing, none = ConsumerTable.load(tmp_path / "absent.json")
    assert (missing.names(), none) == ([], None)
