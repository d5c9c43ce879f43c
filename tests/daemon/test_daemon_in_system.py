"""The daemon inside a whole `fabric up`: SIGKILLed right after publishing its report, restarted
by the supervisor, it reports the same state again and leaves one namespace; every report in
the broker says the same thing (provisioned at generation 1), so the effect is one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.rig import EventReader
from tests.support.wait import wait_until
from tests.system.harness import FabricUp, call_ok, namespaces
from transport.curve import API, BROKER, load_client_keys, public_file, secret_file
from transport.endpoints import BrokerEndpoints

pytestmark = pytest.mark.processes


def published(log_path: Path, account_id: str) -> list[dict[str, Any]]:
    """The daemon's `outcome_published` lines about one account, across its restarts."""
    found = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "outcome_published" and entry.get("account_id") == account_id:
            found.append(entry)
    return found


async def test_a_daemon_killed_after_reporting_re_reports_the_same_state_with_one_effect(
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

        async def ready() -> dict[str, Any] | None:
            got: dict[str, Any] = await call_ok(up, "account.get", {"id": account["id"]})
            return got if got["status"] == "ready" else None

        got = await wait_until(ready, timeout=60, message="account ready")
        assert got["clusters"]["a"]["state"] == "created"
        assert got["clusters"]["a"]["observed_generation"] == 1
        log_path = up.state_dir / "logs" / "daemon-a.log"
        # The restarted daemon reconciles every account once more and re-publishes its report.
        _ = await wait_until(
            lambda: len(published(log_path, account["id"])) >= 2,
            timeout=60, message="restarted daemon re-reported",
        )
        reports = published(log_path, account["id"])
        assert up.pid("daemon-a") != first_pid
        assert {r["outcome"] for r in reports} == {"namespace.provisioned"}
        assert await namespaces(up, "a") == [account["namespace"]]

        broker = BrokerEndpoints(**up.endpoints["broker"])
        keys_dir = up.state_dir / "keys"
        keys = load_client_keys(secret_file(keys_dir, API), public_file(keys_dir, BROKER))
        async with EventReader(broker, keys) as reader:
            _ = await wait_until(
                lambda: reader.of_type("namespace.provisioned", account["id"]),
                timeout=30, message="report in the broker",
            )
            stored = reader.of_type("namespace.provisioned", account["id"])
            assert {e.payload["observed_generation"] for e in stored} == {1}
            assert {e.payload["uid"] for e in stored} == {stored[0].payload["uid"]}
    finally:
        up.close()
