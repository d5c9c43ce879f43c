"""`fabric up` for a person at a terminal, and its children bound to it.

On a pseudo-terminal it shows one status block (its children, then the clusters
and accounts read through the API) and no JSON; SIGHUP (the terminal closed) stops
every child and ends it with 0; and when `up` is SIGKILLed, every child goes too."""

from __future__ import annotations

import os
import pty
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from actors.cli.watch import Snapshot
from actors.runtime.logging import resolve_format
from actors.up.display import SystemView, system_lines
from actors.up.layout import read_pid
from actors.up.status import summarise
from tests.support.ports import free_port
from tests.support.postgres import PgAdmin, server_base
from tests.support.processes import BIN, ProcessGroup
from tests.support.terminal import on_terminal
from tests.support.wait import wait_until
from tests.system.harness import FAST_ENV

pytestmark = pytest.mark.processes

CHILDREN = ("broker", "kube-east", "api", "daemon-east")


@pytest.fixture
async def legacy_dsn(pg_admin: PgAdmin) -> AsyncIterator[str]:
    dsn = await pg_admin.fresh_database()
    try:
        yield dsn
    finally:
        await pg_admin.drop_database(dsn)


def up_env(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABRIC_")}
    return {**env, **FAST_ENV, "NO_PROXY": "127.0.0.1,localhost", "FABRIC_STATE_DIR": str(state),
            "FABRIC_CLUSTERS": "east", "FABRIC_UP_PORT": str(free_port()), **extra}


def child_pids(state: Path) -> dict[str, int]:
    pids = {p.stem: read_pid(p) for p in (state / "run").glob("*.pid")}
    return {name: pid for name, pid in pids.items() if pid is not None}


def gone(pid: int) -> bool:
    """No such process, or a zombie (exited; only its reaping is left to whoever adopted it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def kill_leftovers(pids: dict[str, int]) -> None:
    """Whatever a failed test leaves running must not outlive it."""
    for pid in pids.values():
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)


async def test_on_a_terminal_up_shows_a_status_block_and_sighup_stops_everything(
    tmp_path: Path, legacy_dsn: str
) -> None:
    state = tmp_path / "state"
    env = up_env(state, TERM="xterm", FABRIC_LEGACY_DSN=legacy_dsn)
    pids: dict[str, int] = {}
    try:
        async with on_terminal([str(BIN / "fabric"), "up"], env=env) as term:
            await term.wait_for("Fabric is up. API:", timeout=110)
            # The system as the API sees it, read with the admin key: the cluster and its lag.
            screen = await term.wait_for("east online lag 0")
            assert "accounts: 0" in screen
            for child in CHILDREN:
                assert f"\n{child} " in screen, child
            assert "\x1b[" in term.text  # redrawn in place
            assert not [line for line in screen.splitlines() if line.lstrip().startswith("{")]
            assert "child_started" in screen  # up's own log, for people, above the block
            pids = child_pids(state)
            assert set(pids) == set(CHILDREN)
            term.signal(signal.SIGHUP)
            assert await term.wait(timeout=60) == 0
        assert all(gone(pid) for pid in pids.values())
        assert not (state / "ready").exists()
        assert not list((state / "run").glob("*.pid"))
        # What `up` still had to say once the terminal was gone went to its log file.
        assert "child_stopped" in (state / "logs" / "up.log").read_text()
    finally:
        kill_leftovers(pids)


async def test_every_child_dies_with_up_when_it_is_killed(procs: ProcessGroup) -> None:
    # The embedded PostgreSQL too: as root it runs behind a setuid trampoline. Its data lives
    # outside pytest's temp root, which another pytest session may reset to 0700 at any time.
    with server_base() as base:
        await _kill_up_and_see_its_children_go(procs, base / "state")


async def _kill_up_and_see_its_children_go(procs: ProcessGroup, state: Path) -> None:
    up = await procs.start("fabric", "up", env=up_env(state))

    def ready() -> bool:
        assert up.running, f"fabric up exited: {up.log_text()[-3000:]}"
        return (state / "ready").exists()

    pids: dict[str, int] = {}
    try:
        _ = await wait_until(ready, timeout=110, interval=0.1, message="fabric up ready")
        pids = child_pids(state)
        assert set(pids) == {"postgres", *CHILDREN}
        assert await procs.kill(up) == -signal.SIGKILL
        _ = await wait_until(
            lambda: all(gone(pid) for pid in pids.values()), timeout=30, interval=0.1,
            message=f"every child of the killed `up` gone: {pids}",
        )
    finally:
        kill_leftovers(pids)


def test_the_status_block_shows_offline_clusters_and_accounts_by_status() -> None:
    snapshot = Snapshot(
        clusters=({"name": "a", "status": "online", "lag": 0}, {"name": "b", "status": "offline", "lag": 7}),
        accounts=({"status": "ready"}, {"status": "degraded"}, {"status": "ready"}),
        complete=False,
    )
    assert system_lines(summarise(snapshot)) == [
        "clusters: a online lag 0   b OFFLINE lag 7",
        "accounts: 3+ (2 ready, 1 degraded)",
    ]
    assert system_lines(SystemView(error="cannot reach http://api")) == ["API: cannot reach http://api"]


def test_up_logs_for_people_on_a_terminal_and_json_anywhere_else() -> None:
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as terminal, open(os.devnull, "w") as elsewhere:
        assert resolve_format(None, terminal) == "console"
        assert resolve_format("json", terminal) == "json"
        assert resolve_format(None, elsewhere) == "json"
        assert resolve_format("console", elsewhere) == "console"
    os.close(master)
