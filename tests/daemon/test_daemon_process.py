"""bin/daemon as a real process against bin/broker and bin/kube-emulator, with injected faults."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from core.envelope import Envelope
from core.events import AccountCreated, AccountDeleted, to_envelope
from core.tenancy import TenancyPolicy
from tests.daemon.rig import (
    Emulator,
    EventReader,
    publish,
    start_daemon,
    start_emulator,
    write_kubeconfig,
)
from tests.support.broker import new_endpoints, start_broker, start_broker_process
from tests.support.ports import free_port
from tests.support.processes import ProcessGroup
from tests.support.wait import wait_until
from transport.client import BrokerEndpoints, Directory
from transport.sockets import close_context, new_context

pytestmark = pytest.mark.processes

POLICY = TenancyPolicy()
NS_PATH = "/api/v1/namespaces"


def account(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def created(n: int) -> Envelope:
    event = AccountCreated(account(n), f"t{n}", f"T {n}", "o@example.com", f"acc-t{n}", "now")
    return to_envelope(event, correlation_id=f"req-{n}")


def deleted(n: int) -> Envelope:
    return to_envelope(AccountDeleted(account(n), f"t{n}", f"acc-t{n}", "now"), correlation_id="d")


def payload(env: Envelope) -> dict[str, Any]:
    return dict(env.payload)


async def setup(procs: ProcessGroup, tmp_path: Path) -> tuple[BrokerEndpoints, Emulator]:
    endpoints = await start_broker(procs, tmp_path / "broker")
    kube = await start_emulator(procs, tmp_path / "kube")
    return endpoints, kube


async def test_500s_and_timeouts_are_retried_until_the_namespace_exists(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    await kube.fault("error500", count=3, method="POST", path_prefix=NS_PATH)
    await kube.fault("timeout", count=1, method="POST", path_prefix=NS_PATH, seconds=5)
    await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints,
                       "--request-timeout", "0.5")
    async with EventReader(endpoints) as reader:
        await publish(endpoints, created(1))
        [report] = await wait_until(
            lambda: reader.of_type("namespace.provisioned"), timeout=30, message="provisioned"
        )
    ns = await kube.namespace("acc-t1")
    assert ns is not None
    assert payload(report)["uid"] == ns["metadata"]["uid"]
    assert payload(report)["cluster"] == "east"
    assert await kube.pending_faults() == []
    assert len(await kube.children("acc-t1")) == 6


async def test_a_response_lost_after_the_write_applied_gives_one_namespace_and_success(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    await kube.fault("drop_after_apply", count=1, method="POST", path_prefix=NS_PATH)
    await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)
    async with EventReader(endpoints) as reader:
        await publish(endpoints, created(1))
        [report] = await wait_until(
            lambda: reader.of_type("namespace.provisioned"), timeout=30, message="provisioned"
        )
        assert reader.of_type("namespace.provision_failed") == []
    ns = await kube.namespace("acc-t1")
    assert ns is not None
    assert payload(report)["uid"] == ns["metadata"]["uid"]


async def test_a_permanent_403_reports_failed_with_the_kubernetes_reason(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    await kube.fault("status", status=403, count=1, method="POST", path_prefix=NS_PATH)
    await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)
    async with EventReader(endpoints) as reader:
        await publish(endpoints, created(1), created(2))
        [failed] = await wait_until(
            lambda: reader.of_type("namespace.provision_failed"), timeout=30, message="failed"
        )
        await wait_until(lambda: reader.of_type("namespace.provisioned"), timeout=30,
                         message="the other account provisioned")
    assert payload(failed)["reason"].startswith("403 Forbidden")
    assert await kube.namespace(payload(failed)["namespace"]) is None


async def test_a_foreign_namespace_is_not_adopted(procs: ProcessGroup, tmp_path: Path) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    before = await kube.create_namespace("acc-t1", {"team": "someone-else"})
    await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)
    async with EventReader(endpoints) as reader:
        await publish(endpoints, created(1))
        [failed] = await wait_until(
            lambda: reader.of_type("namespace.provision_failed"), timeout=30, message="failed"
        )
    assert "refusing to adopt" in payload(failed)["reason"]
    after = await kube.namespace("acc-t1")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert POLICY.account_label not in after["metadata"]["labels"]
    assert await kube.children("acc-t1") == []


async def test_sigkill_between_create_and_ack_redoes_without_a_duplicate(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    # The namespace is created, then the daemon hangs on its first child object: kill it there.
    await kube.fault("timeout", count=1, method="POST", path_prefix="/api/v1/namespaces/acc-t1/",
                     seconds=60)
    daemon = await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints,
                                "--request-timeout", "60")
    await publish(endpoints, created(1))
    first: dict[str, Any] | None = await wait_until(
        lambda: kube.namespace("acc-t1"), timeout=30, message="created"
    )
    assert first is not None
    _ = await wait_until(lambda: _no_faults(kube), timeout=10, message="daemon hung on a child")
    await procs.kill(daemon)
    await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)
    async with EventReader(endpoints) as reader:
        await wait_until(lambda: reader.of_type("namespace.provisioned"), timeout=30,
                         message="provisioned after restart")
        _ = await wait_until(lambda: _acked(endpoints, "cluster:east", 1), timeout=30, message="acked")
        provisioned = [payload(e) for e in reader.of_type("namespace.provisioned")]
    per_pair = {(p["account_id"], p["cluster"]) for p in provisioned}
    assert len(provisioned) == len(per_pair) == 1
    again = await kube.namespace("acc-t1")
    assert again is not None
    assert again["metadata"]["uid"] == first["metadata"]["uid"]
    assert provisioned[0]["uid"] == first["metadata"]["uid"]
    assert len(await kube.children("acc-t1")) == 6


@pytest.mark.parametrize("point", ["after_create", "after_publish"])
async def test_a_daemon_killed_before_its_ack_redoes_the_event_with_one_effect(
    procs: ProcessGroup, tmp_path: Path, point: str
) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    daemon = await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints,
                                "--crash-at", point)
    await publish(endpoints, created(1))
    assert await asyncio.wait_for(daemon.process.wait(), 60) == -9
    first = await kube.namespace("acc-t1")
    assert first is not None
    # Restarted as a supervisor would, same flags: the crash point fires once per state dir.
    await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints, "--crash-at", point)
    async with EventReader(endpoints) as reader:
        _ = await wait_until(lambda: _acked(endpoints, "cluster:east", 1), timeout=30,
                             message="acked after restart")
        _ = await wait_until(lambda: reader.of_type("namespace.provisioned"), timeout=30,
                             message="provisioned")
        provisioned = [payload(e) for e in reader.of_type("namespace.provisioned")]
    assert len(provisioned) == 1
    assert provisioned[0]["uid"] == first["metadata"]["uid"]
    again = await kube.namespace("acc-t1")
    assert again is not None
    assert again["metadata"]["uid"] == first["metadata"]["uid"]


async def test_resync_recreates_a_hand_deleted_namespace_and_policy_and_removes_a_deleted_one(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints, "--resync", "1")
    async with EventReader(endpoints) as reader:
        await publish(endpoints, created(1), created(2), deleted(2), created(3))
        await wait_until(lambda: reader.of_type("namespace.deleted"), timeout=30, message="deleted")
        await wait_until(lambda: reader.of_type("namespace.provisioned", account(3)), timeout=30,
                         message="third provisioned")
        first = await kube.namespace("acc-t1")
        assert first is not None
        await kube.delete_namespace("acc-t1")
        await kube.delete("/apis/networking.k8s.io/v1/namespaces/acc-t3/networkpolicies/allow-dns")
        await kube.create_namespace(
            "acc-t2", {POLICY.managed_by_label: POLICY.managed_by_value,
                       POLICY.account_label: account(2)},
        )

        async def repaired() -> bool:
            ns1, ns2 = await kube.namespace("acc-t1"), await kube.namespace("acc-t2")
            return (ns1 is not None and ns1["metadata"]["uid"] != first["metadata"]["uid"]
                    and not ns1["metadata"].get("deletionTimestamp") and ns2 is None
                    and len(await kube.children("acc-t3")) == 6)

        _ = await wait_until(repaired, timeout=20, message="resync repaired both namespaces")
        await wait_until(
            lambda: len(reader.of_type("namespace.provisioned", account(1))) == 2,
            timeout=10, message="re-creation reported",
        )
    assert len(await kube.children("acc-t1")) == 6


async def test_the_daemon_waits_for_a_broker_and_a_kube_api_that_start_later(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints = new_endpoints()
    kube_port = free_port()
    kubeconfig = write_kubeconfig(tmp_path / "late.kubeconfig", kube_port)
    daemon = await start_daemon(procs, tmp_path, "east", kubeconfig, endpoints)
    await start_broker_process(procs, tmp_path / "broker", endpoints=endpoints)
    await publish(endpoints, created(1))
    await wait_until(lambda: "kube_retry_scheduled" in daemon.log_text(), timeout=20,
                     message="daemon retrying against the absent kube API")
    assert daemon.running
    kube = await start_emulator(procs, tmp_path / "kube", port=kube_port)
    _ = await wait_until(
        lambda: kube.namespace("acc-t1"), timeout=30, message="namespace created"
    )
    _ = await wait_until(lambda: _acked(endpoints, "cluster:east", 2), timeout=30, message="acked")
    infos = await _consumers(endpoints)
    east = next(i for i in infos if i.name == "cluster:east")
    assert east.online
    assert east.lag == 0


async def test_the_daemon_verifies_a_tls_api_server_with_the_ca_from_its_kubeconfig(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints = await start_broker(procs, tmp_path / "broker")
    kube = await start_emulator(procs, tmp_path / "kube", tls=True)
    assert "certificate-authority-data" in kube.kubeconfig.read_text()
    await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)
    await publish(endpoints, created(1))
    _ = await wait_until(lambda: _acked(endpoints, "cluster:east", 1), timeout=30, message="acked")
    ns = await kube.namespace("acc-t1")
    assert ns is not None
    assert ns["metadata"]["labels"][POLICY.account_label] == account(1)


async def test_sigterm_stops_the_daemon_cleanly_and_it_shows_offline(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    daemon = await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)
    _ = await wait_until(lambda: _online(endpoints, "cluster:east", True), timeout=20,
                         message="listed online")
    assert await procs.stop(daemon) == 0
    assert "process_stopped" in daemon.log_text()
    _ = await wait_until(lambda: _online(endpoints, "cluster:east", False), timeout=20,
                         message="listed offline")


async def _online(endpoints: BrokerEndpoints, consumer: str, online: bool) -> bool:
    return any(i.name == consumer and i.online == online for i in await _consumers(endpoints))


async def test_a_second_daemon_on_the_same_state_dir_refuses_to_start(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    first = await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)
    _ = await wait_until(lambda: "daemon_started" in first.log_text(), timeout=20,
                         message="first daemon started")
    second = await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)
    assert await asyncio.wait_for(second.process.wait(), 30) == 2
    assert "another daemon is running" in second.log_text().strip().splitlines()[-1]
    assert first.running


async def _no_faults(kube: Emulator) -> bool:
    return await kube.pending_faults() == []


async def _consumers(endpoints: BrokerEndpoints) -> list[Any]:
    ctx = new_context()
    try:
        async with Directory(ctx, endpoints, timeout=2.0) as directory:
            return list(await directory.consumers())
    finally:
        close_context(ctx)


async def _acked(endpoints: BrokerEndpoints, consumer: str, seq: int) -> bool:
    infos = await _consumers(endpoints)
    return any(i.name == consumer and i.acked_seq >= seq for i in infos)

