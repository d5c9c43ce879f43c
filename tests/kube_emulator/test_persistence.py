"""The store's files: journal replay, torn tails from a SIGKILL, compaction, corruption."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.kube_emulator import persistence


def ns(name: str, rv: int) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "resourceVersion": str(rv)}}


def names(snapshot: persistence.Snapshot) -> list[str]:
    return sorted(str(o["metadata"]["name"]) for o in snapshot.objects)


def test_journal_replays_puts_and_deletes(tmp_path: Path) -> None:
    persistence.append(tmp_path, [persistence.put_record(1, ns("a", 1)),
                                  persistence.put_record(2, ns("b", 2))])
    persistence.append(tmp_path, [persistence.delete_record(3, ns("a", 1))])
    loaded = persistence.load(tmp_path)
    assert (loaded.resource_version, names(loaded), loaded.journal_records) == (3, ["b"], 3)


def test_a_torn_last_line_is_dropped_and_cut_off(tmp_path: Path) -> None:
    persistence.append(tmp_path, [persistence.put_record(1, ns("a", 1))])
    with (tmp_path / persistence.JOURNAL).open("ab") as f:
        f.write(b'{"rv":2,"put":{"apiVer')
    loaded = persistence.load(tmp_path)
    assert (loaded.resource_version, names(loaded)) == (1, ["a"])
    persistence.append(tmp_path, [persistence.put_record(2, ns("b", 2))])
    assert names(persistence.load(tmp_path)) == ["a", "b"]


def test_compaction_keeps_state_and_records_older_than_the_snapshot_are_skipped(
    tmp_path: Path,
) -> None:
    persistence.append(tmp_path, [persistence.put_record(1, ns("a", 1)),
                                  persistence.delete_record(2, ns("a", 1))])
    journal = (tmp_path / persistence.JOURNAL).read_bytes()
    persistence.compact(tmp_path, persistence.Snapshot(2, []))
    assert (tmp_path / persistence.JOURNAL).read_bytes() == b""
    # A crash between the snapshot's rename and the journal's truncation: replay must skip.
    (tmp_path / persistence.JOURNAL).write_bytes(journal)
    loaded = persistence.load(tmp_path)
    assert (loaded.resource_version, names(loaded)) == (2, [])


def test_an_unreadable_snapshot_refuses_to_load(tmp_path: Path) -> None:
    (tmp_path / persistence.SNAPSHOT).write_text('{"format": 1, "resourceVer')
    with pytest.raises(persistence.CorruptStore):
        persistence.load(tmp_path)


def test_a_garbage_complete_journal_line_refuses_to_load(tmp_path: Path) -> None:
    (tmp_path / persistence.JOURNAL).write_bytes(b"garbage\n")
    with pytest.raises(persistence.CorruptStore):
        persistence.load(tmp_path)
