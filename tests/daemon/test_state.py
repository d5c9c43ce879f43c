"""The desired-state store: generation-guarded, durable per batch, compacted, no deleted accounts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors.daemon.state import JOURNAL_NAME, Desired, DesiredStore, Incoming, Tombstone
from core.events import AccountCreated, AccountDeleted, AccountUpdated


def put(account: str, generation: int, name: str = "S") -> Incoming:
    event = AccountCreated(account, "s", name, "o@example.com", "acc-s", "t", generation)
    return Incoming(event, f"e-{account}-{generation}", f"c-{generation}")


def update(account: str, generation: int, plan: str, suspended: bool) -> Incoming:
    event = AccountUpdated(
        account, "s", "S", "o@example.com", "acc-s", "t", generation, plan, suspended
    )
    return Incoming(event, f"u-{account}-{generation}", f"c-{generation}")


def delete(account: str, generation: int) -> Incoming:
    return Incoming(
        AccountDeleted(account, "s", "acc-s", "t", generation, "S", "s@example.com", "t0"),
        f"d-{account}-{generation}",
        "c",
    )


def snapshot(store: DesiredStore) -> tuple[dict[str, Desired], dict[str, Tombstone]]:
    return dict(store.live), dict(store.deleting)


async def test_newer_generations_replace_and_older_or_equal_ones_change_nothing(
    tmp_path: Path,
) -> None:
    store = await DesiredStore.open(tmp_path)
    try:
        changed = await store.apply([put("a", 1), put("a", 3, "New"), put("a", 2), put("a", 3)])
        assert [c.generation for c in changed] == [1, 3]
        live = store.get("a")
        assert live is not None
        assert (live.generation, live.account.name, live.event_id) == (3, "New", "e-a-3")
        assert await store.apply([delete("a", 2)]) == []  # older than what is live
        assert store.get("a") is not None
    finally:
        await store.close()


async def test_a_deletion_removes_the_account_and_a_stale_create_cannot_bring_it_back(
    tmp_path: Path,
) -> None:
    store = await DesiredStore.open(tmp_path)
    try:
        await store.apply([put("a", 1), put("b", 1)])
        [tomb] = await store.apply([delete("a", 2)])
        assert tomb == Tombstone("a", "s", "acc-s", 2, "d-a-2", "c")
        assert store.get("a") is None
        assert await store.apply([put("a", 1), put("a", 2), delete("a", 2)]) == []
        await store.forget_deletion("a", 2)
        assert store.deleting == {}
        assert [d.account_id for d in store] == ["b"]
    finally:
        await store.close()


async def test_a_tombstone_of_an_account_never_seen_is_kept_until_reported(tmp_path: Path) -> None:
    store = await DesiredStore.open(tmp_path)
    try:
        [tomb] = await store.apply([delete("z", 4)])
        assert isinstance(tomb, Tombstone)
        assert store.deleting == {"z": tomb}
        await store.forget_deletion("z", 3)  # an older report does not end a newer deletion
        assert "z" in store.deleting
    finally:
        await store.close()


async def test_the_store_reopened_equals_what_was_recorded_and_the_journal_is_compacted(
    tmp_path: Path,
) -> None:
    store = await DesiredStore.open(tmp_path)
    assert store.fresh
    await store.apply([put("a", 1), put("b", 1), put("c", 1)])
    await store.apply([put("a", 2, "Two"), delete("b", 2), delete("c", 2)])
    await store.forget_deletion("c", 2)
    recorded = snapshot(store)
    await store.close()
    assert len((tmp_path / JOURNAL_NAME).read_text().splitlines()) == 7
    again = await DesiredStore.open(tmp_path)
    try:
        assert not again.fresh
        assert snapshot(again) == recorded
        ops = [json.loads(line)["op"] for line in (tmp_path / JOURNAL_NAME).read_text().splitlines()]
        assert sorted(ops) == ["del", "put"]  # a and b's tombstone; nothing of c
    finally:
        await again.close()


async def test_an_update_replaces_the_whole_state_and_survives_a_reopen(tmp_path: Path) -> None:
    store = await DesiredStore.open(tmp_path)
    await store.apply([put("a", 1), update("a", 2, "large", True), update("a", 3, "small", False)])
    await store.apply([update("a", 2, "large", True)])  # a late, older update changes nothing
    live = store.get("a")
    assert live is not None
    assert (live.tenant.plan, live.tenant.suspended, live.generation) == ("small", False, 3)
    await store.apply([update("a", 4, "large", True)])
    await store.close()
    again = await DesiredStore.open(tmp_path)
    try:
        live = again.get("a")
        assert live is not None
        assert (live.tenant.plan, live.tenant.suspended, live.generation) == ("large", True, 4)
    finally:
        await again.close()


async def test_a_journal_line_written_before_plans_reads_as_standard_not_suspended(
    tmp_path: Path,
) -> None:
    account = {
        "account_id": "a", "slug": "s", "name": "S", "owner_email": "o@example.com",
        "namespace": "acc-s", "created_at": "t", "generation": 2,
    }
    line = {"op": "put", "account": account, "event_id": "e", "correlation_id": "c"}
    (tmp_path / JOURNAL_NAME).write_text(json.dumps(line) + "\n")
    store = await DesiredStore.open(tmp_path)
    try:
        assert store.skipped_lines == 0
        live = store.get("a")
        assert live is not None
        assert (live.tenant.plan, live.tenant.suspended, live.generation) == ("standard", False, 2)
    finally:
        await store.close()


async def test_lines_a_failed_commit_did_not_write_are_written_by_the_next_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await DesiredStore.open(tmp_path)
    write = store._append

    def full_disk(lines: list[str], sync: bool) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "_append", full_disk)
    assert [c.generation for c in store.stage([put("a", 1)])] == [1]
    with pytest.raises(OSError, match="No space left"):
        await store.commit()
    monkeypatch.setattr(store, "_append", write)
    assert await store.apply([put("a", 1)]) == []  # the redelivered batch: nothing new...
    await store.close()
    again = await DesiredStore.open(tmp_path)
    try:
        assert [d.account_id for d in again] == ["a"]  # ...yet its commit wrote the change
    finally:
        await again.close()


async def test_a_torn_journal_line_is_skipped_and_counted(tmp_path: Path) -> None:
    store = await DesiredStore.open(tmp_path)
    await store.apply([put("a", 1)])
    await store.close()
    with (tmp_path / JOURNAL_NAME).open("a") as f:
        f.write('[1, 2]\n{"op": "put", "account": {"account_id": "b"')
    again = await DesiredStore.open(tmp_path)
    try:
        assert again.skipped_lines == 2
        assert [d.account_id for d in again] == ["a"]
    finally:
        await again.close()


async def test_a_fresh_store_writes_no_journal_until_created(tmp_path: Path) -> None:
    store = await DesiredStore.open(tmp_path)
    try:
        assert store.fresh
        assert not (tmp_path / JOURNAL_NAME).exists()
        await store.create()
        assert (tmp_path / JOURNAL_NAME).read_text() == ""
    finally:
        await store.close()
    again = await DesiredStore.open(tmp_path)
    try:
        assert not again.fresh
    finally:
        await again.close()


async def test_a_journal_far_larger_than_the_live_set_is_compacted_while_running(
    tmp_path: Path,
) -> None:
    store = await DesiredStore.open(tmp_path)
    try:
        for generation in range(1, 1202):
            await store.apply([put("a", generation)])
        lines = (tmp_path / JOURNAL_NAME).read_text().splitlines()
        assert len(lines) < 1000
        assert json.loads(lines[0])["account"]["generation"] >= 1001
    finally:
        await store.close()
    again = await DesiredStore.open(tmp_path)
    try:
        live = again.get("a")
        assert live is not None
        assert live.generation == 1201
    finally:
        await again.close()
