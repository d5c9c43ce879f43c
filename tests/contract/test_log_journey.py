"""One account's journey, followed by its ids through every process's JSON log lines.

Broker, API, kube emulator and daemon run as real processes; one account is created over
JSON-RPC and waited on until `ready`, then deleted and waited on until `deleted`. Each leg
(create, then delete) is followed by the account id and the event ids:

    api     account_created | account_deleted     account_id, event_id
    api     event_published                       event_id, account_id, seq (outbox relay)
    broker  event_stored                          event_id, account_id, same seq
                                                  (debug level: per event only at debug)
    daemon  event_received                        event_id, account_id, type (stored in
                                                  its desired state, then the batch is acked)
    daemon  namespace_created | namespace_removed event_id, account_id, cluster
    daemon  outcome_published                     event_id, outcome_event_id, outcome
    broker  event_stored                          event_id = outcome_event_id
    api     cache_event_applied                   event_id (debug level: the domain's own
                                                  read-your-writes apply)
    api     event_applied                         event_id = outcome_event_id (the event
                                                  driver applies the daemon's report)

Every line of every process parses as a JSON object with a snake_case `event` and a `level`,
and each process exits 0 on SIGTERM at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.api.harness import ADMIN_KEY
from tests.api.processes import start_api_process
from tests.contract.logs import check_log_line, has_event, json_lines
from tests.support.broker import start_broker_process
from tests.support.keys import client_flags
from tests.support.kube import start_kube_emulator
from tests.support.processes import Proc, ProcessGroup
from tests.support.wait import wait_until

pytestmark = pytest.mark.processes

CLUSTER = "east"


async def rpc(url: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    async with aiohttp.ClientSession() as http, http.post(
        url + "/rpc", json=body, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    ) as response:
        reply = await response.json()
    assert "result" in reply, f"{method} failed: {reply}"
    result: dict[str, Any] = reply["result"]
    return result


async def logged(proc: Proc, event: str, **fields: object) -> dict[str, Any]:
    """The line `proc` logs as `event` with these fields; fails naming what is missing.

    Waited for: a line may follow what it describes becoming visible elsewhere (the driver
    logs `event_applied` once the batch's WAL fsync is done, while the account already reads
    `ready` at commit; on a disk that stalls, that is hundreds of milliseconds).
    """
    def found() -> dict[str, Any] | None:
        return has_event(proc, event, **fields)

    line = await wait_until(found, timeout=30, message=f"{proc.name} to log {event} {fields}")
    assert line is not None
    return line


async def wait_status(url: str, account_id: str, status: str) -> None:
    async def reached() -> bool:
        found = await rpc(url, "account.get", {"id": account_id})
        return bool(found["status"] == status)

    _ = await wait_until(reached, timeout=60, interval=0.1, message=f"account {status}")


@dataclass(frozen=True)
class Journey:
    api: Proc
    broker: Proc
    daemon: Proc
    account_id: str

    async def follow(self, api_event: str, type_: str, daemon_event: str, outcome: str) -> None:
        """One leg: the api's event, through the broker, to the daemon and back to the cache."""
        api, broker, daemon, account_id = self.api, self.broker, self.daemon, self.account_id
        event_id = (await logged(api, api_event, account_id=account_id))["event_id"]
        ids = {"event_id": event_id, "account_id": account_id}
        published = await logged(api, "event_published", **ids)
        stored = await logged(broker, "event_stored", **ids)
        assert stored["seq"] == published["seq"], (stored, published)
        await logged(daemon, "event_received", **ids, type=type_)
        await logged(daemon, daemon_event, **ids, cluster=CLUSTER)
        report = await logged(daemon, "outcome_published", **ids, outcome=outcome)
        outcome_id = report["outcome_event_id"]
        await logged(broker, "event_stored", event_id=outcome_id, account_id=account_id)
        # Read-your-writes: the domain puts its own event into the cache at once, so when the
        # event driver later receives it there is nothing left to apply (and nothing logged).
        await logged(api, "cache_event_applied", **ids)
        await logged(api, "event_applied", event_id=outcome_id, account_id=account_id,
                     type=outcome)


async def test_one_account_is_followed_by_its_ids_through_every_process_log_from_create_to_delete(
    procs: ProcessGroup, tmp_path: Path, pg_dsn: str
) -> None:
    broker, endpoints = await start_broker_process(
        procs, tmp_path / "broker", "--log-level", "debug"
    )
    kube = await start_kube_emulator(procs, tmp_path / "kube")
    api, url = await start_api_process(
        procs, dsn=pg_dsn, endpoints=endpoints, state_dir=tmp_path / "api",
        extra=("--log-level", "debug"),
    )
    daemon = await procs.start(
        "daemon", "--cluster", CLUSTER, "--kubeconfig", str(kube.kubeconfig),
        "--broker", str(endpoints), *client_flags(f"cluster-{CLUSTER}"),
        "--state-dir", str(tmp_path / "daemon"), "--resync", "2", "--heartbeat-interval", "0.2",
        "--retry-initial", "0.1", "--retry-cap", "1", name="daemon",
    )
    _ = await wait_until(lambda: has_event(daemon, "daemon_started"), timeout=30,
                         message="daemon started")

    account = await rpc(url, "account.create", {"name": "Journey", "owner_email": "j@example.com"})
    account_id = account["id"]
    await wait_status(url, account_id, "ready")
    journey = Journey(api, broker, daemon, account_id)
    await journey.follow("account_created", "account.created", "namespace_created",
                         "namespace.provisioned")
    ns = await logged(daemon, "namespace_created", account_id=account_id)
    assert ns["cluster"] == CLUSTER, ns
    assert ns["namespace"] == account["namespace"], ns

    _ = await rpc(url, "account.delete", {"id": account_id})
    await wait_status(url, account_id, "deleted")
    await journey.follow("account_deleted", "account.deleted", "namespace_removed",
                         "namespace.deleted")

    for proc in (daemon, api, kube.proc, broker):
        assert proc is not None
        code = await procs.stop(proc)
        assert code == 0, f"{proc.name} exited {code}:\n{proc.log_text()[-3000:]}"
        for line in json_lines(proc.log_text(), source=proc.name):
            check_log_line(line, source=proc.name)
