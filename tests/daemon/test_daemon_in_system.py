"""The daemon inside a whole `fabric up`: SIGKILLed between publishing its report and acking,
restarted by the supervisor, it leaves one namespace and one Provisioned event in the cache."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.rig import EventReader
from tests.support.wait import wait_until
from tests.system.harness import FabricUp, call_ok, namespaces
from transport.client import BrokerEndpoints

pytestmark = pytest.mark.processes


def cache_report(state_dir: Path, account_id: str, cluster: str) -> tuple[str, list[str]] | None:
    """(report state, applied event ids among `ids`) read straight from the API's SQLite cache."""
    db = sqlite3.connect(f"file:{state_dir / 'api' / 'cache.sqlite3'}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT state FROM reports WHERE account_id = ? AND cluster = ?", (account_id, cluster)
        ).fetchone()
        applied = [r[0] for r in db.execute("SELECT event_id FROM applied")]
    finally:
        db.close()
    return None if row is None else (str(row[0]), applied)


async def test_a_daemon_killed_after_reporting_but_before_acking_leaves_one_effect_in_the_cache(
    tmp_path: Path,
) -> None:
    up = FabricUp(tmp_path / "state", tmp_path / "logs", ["a"])
    up.start(extra_env={"FABRIC_DAEMON_CRASH_AT": "after_publish"})
    try:
        await up.wait_ready()
        first_pid = up.pid("daemon-a")
        account: dict[str, Any] = await call_ok(
            up, "account.create", {"name": "Crash Test", "owner_email": "c@example.com"}
        )

        async def ready() -> bool:
            got = await call_ok(up, "account.get", {"id": account["id"]})
            return bool(got["status"] == "ready")

        _ = await wait_until(ready, timeout=60, message="account ready")
        log_path = up.state_dir / "logs" / "daemon-a.log"

        def redone_and_acked() -> bool:
            text = log_path.read_text(errors="replace")
            _, crashed, after = text.partition("crash_point_reached")
            return bool(crashed) and "event_acked" in after

        _ = await wait_until(redone_and_acked, timeout=60, message="restarted daemon acked")
        assert up.pid("daemon-a") != first_pid
        assert await namespaces(up, "a") == [account["namespace"]]

        broker = BrokerEndpoints(**up.endpoints["broker"])
        async with EventReader(broker) as reader:
            _ = await wait_until(
                lambda: reader.of_type("namespace.provisioned", account["id"]),
                timeout=30, message="report in the broker",
            )
            reports = reader.of_type("namespace.provisioned", account["id"])
        assert len(reports) == 1
        cached = cache_report(up.state_dir, account["id"], "a")
        assert cached is not None
        state, applied = cached
        assert state == "created"
        assert reports[0].event_id in applied
    finally:
        up.close()
