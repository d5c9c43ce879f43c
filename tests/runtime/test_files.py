"""The one durable-write helper: replace by rename, or create once when several processes race."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from actors.api.auth import load_or_create_admin_key
from actors.runtime.files import write_atomic


def test_a_write_replaces_the_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, "one\n")
    write_atomic(target, b"two\n", mode=0o600)
    assert target.read_text() == "two\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_an_exclusive_write_keeps_a_file_already_there(tmp_path: Path) -> None:
    target = tmp_path / "admin.key"
    write_atomic(target, "first\n", exclusive=True)
    with pytest.raises(FileExistsError):
        write_atomic(target, "second\n", exclusive=True)
    assert target.read_text() == "first\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["admin.key"]


def _admin_key(state_dir: str, start: Any, out: multiprocessing.Queue[str]) -> None:
    start.wait()  # every process at the starting line, so their writes overlap
    out.put(load_or_create_admin_key(Path(state_dir)))


def test_processes_starting_at_once_on_one_state_dir_agree_on_the_admin_key(tmp_path: Path) -> None:
    # API processes started together on a fresh state dir each create the key: one wins,
    # and every one of them uses it (before, a loser's rename could fail, or its key differ).
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[str] = ctx.Queue()
    start = ctx.Barrier(6)
    procs = [ctx.Process(target=_admin_key, args=(str(tmp_path), start, out)) for _ in range(6)]
    for p in procs:
        p.start()
    keys = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(set(keys)) == 1
    assert (tmp_path / "admin.key").read_text().strip() == keys[0]
