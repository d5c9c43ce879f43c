"""One `fabric up` with two emulated clusters, shared by these tests (they do not interfere):
accounts created over HTTP become ready everywhere, kubectl sees them, the CLI drives it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.processes import BIN
from tests.system.harness import (
    FabricUp,
    call_ok,
    eventually,
    kube_request,
    kubectl_namespaces,
    namespaces,
    rpc,
)

pytestmark = pytest.mark.processes

CLUSTERS = ["a", "b"]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, bus: str) -> Iterator[FabricUp]:
    root = tmp_path_factory.mktemp(f"two-clusters-{bus}")
    up = FabricUp(root / "state", root / "logs", CLUSTERS, bus=bus)
    up.start()
    try:
        asyncio.run(up.wait_ready())
        yield up
    finally:
        up.close()


async def ready_everywhere(up: FabricUp, slug: str) -> dict[str, Any]:
    account = await call_ok(up, "account.get", {"slug": slug})
    assert account["status"] == "ready", account
    assert {c: account["clusters"].get(c, {}).get("state") for c in CLUSTERS} == dict.fromkeys(
        CLUSTERS, "created"
    ), account
    assert isinstance(account, dict)
    return account


async def test_accounts_created_over_http_become_ready_and_kubectl_lists_their_namespaces(
    system: FabricUp,
) -> None:
    slugs = [f"two-{i}" for i in range(3)]
    for slug in slugs:
        created = await call_ok(
            system,
            "account.create",
            {"name": f"Team {slug}", "owner_email": f"{slug}@example.com", "slug": slug},
        )
        assert created["namespace"] == f"acc-{slug}"

    async def all_ready() -> bool:
        for slug in slugs:
            await ready_everywhere(system, slug)
        return True

    await eventually(all_ready, timeout=30, message="every account ready")
    for cluster in CLUSTERS:
        names = await kubectl_namespaces(system, cluster)
        assert {f"acc-{s}" for s in slugs} <= set(names), (cluster, names)


async def test_cli_creates_gets_and_lists_against_the_running_system(system: FabricUp) -> None:
    state = ["--state-dir", str(system.state_dir)]
    code, out, err = await fabric(
        "account", "create", "Cli Team", "--email", "cli@example.com", "--slug", "cli-team", "--json", *state
    )
    assert code == 0, err
    account = json.loads(out)
    assert account["slug"] == "cli-team"

    code, _, err = await fabric(
        "account", "create", "Cli Team", "--email", "cli@example.com", "--slug", "cli-team", *state
    )
    assert code == 1
    assert "-32010" in err

    await eventually(lambda: ready_everywhere(system, "cli-team"), timeout=30, message="cli-team ready")
    code, out, err = await fabric("account", "get", account["id"], *state)
    assert code == 0, err
    assert "ready" in out

    code, out, err = await fabric("--json", "cluster", "list", *state)
    assert code == 0, err
    clusters = {c["name"]: c for c in json.loads(out)}
    assert set(clusters) >= set(CLUSTERS)
    assert all(clusters[c]["status"] == "online" for c in CLUSTERS), clusters

    code, out, err = await fabric("account", "list", "--all", "--json", *state)
    assert code == 0, err
    assert "cli-team" in {a["slug"] for a in json.loads(out)["items"]}

    code, _, err = await fabric("account", "get", "--slug", "no-such-account", *state)
    assert code == 1
    assert "-32011" in err


async def test_a_daemon_stopped_for_a_while_catches_up_on_what_it_missed(system: FabricUp) -> None:
    pid = system.pid("daemon-b")
    assert pid is not None
    slugs = [f"missed-{i}" for i in range(3)]
    os.kill(pid, signal.SIGSTOP)
    try:

        async def b_offline() -> bool:
            clusters = {c["name"]: c for c in await call_ok(system, "cluster.list", {})}
            assert clusters["b"]["status"] == "offline", clusters
            return True

        await eventually(b_offline, timeout=30, message="b offline at the broker")
        for slug in slugs:
            await call_ok(
                system,
                "account.create",
                {"name": slug, "owner_email": f"{slug}@example.com", "slug": slug},
            )

        async def ready_without_b() -> bool:
            for slug in slugs:
                account = await call_ok(system, "account.get", {"slug": slug})
                assert account["status"] == "ready", account
                assert account["clusters"]["a"]["state"] == "created", account
                assert account["clusters"].get("b", {}).get("state") != "created", account
            return True

        # `ready` counts online clusters only: b, stopped, is not waited for.
        await eventually(ready_without_b, timeout=30, message="ready in a while b is stopped")
        assert not {f"acc-{s}" for s in slugs} & set(await namespaces(system, "b"))
    finally:
        os.kill(pid, signal.SIGCONT)

    async def caught_up() -> bool:
        for slug in slugs:
            await ready_everywhere(system, slug)
        assert {f"acc-{s}" for s in slugs} <= set(await namespaces(system, "b"))
        return True

    await eventually(caught_up, timeout=30, message="b caught up")
    assert system.pid("daemon-b") == pid  # the same process caught up: it was not restarted


async def test_deleted_account_loses_its_namespace_in_every_cluster(system: FabricUp) -> None:
    created = await call_ok(
        system,
        "account.create",
        {"name": "Short Lived", "owner_email": "x@example.com", "slug": "short-lived"},
    )
    await eventually(lambda: ready_everywhere(system, "short-lived"), timeout=30, message="ready")
    deleting = await call_ok(system, "account.delete", {"id": created["id"]})
    assert deleting["status"] in ("deleting", "deleted")

    async def gone() -> bool:
        account = await call_ok(system, "account.get", {"id": created["id"]})
        assert account["status"] == "deleted", account
        for cluster in CLUSTERS:
            assert "acc-short-lived" not in await namespaces(system, cluster)
        return True

    await eventually(gone, timeout=30, message="namespaces removed and status deleted")


async def test_a_namespace_deleted_by_hand_is_recreated_by_its_daemon(system: FabricUp) -> None:
    await call_ok(
        system,
        "account.create",
        {"name": "Hand Deleted", "owner_email": "hd@example.com", "slug": "hand-deleted"},
    )
    await eventually(lambda: ready_everywhere(system, "hand-deleted"), timeout=30, message="ready")
    path = "/api/v1/namespaces/acc-hand-deleted"
    status, before = await kube_request(system, "b", "GET", path)
    assert status == 200
    status, _ = await kube_request(system, "b", "DELETE", path)
    assert status in (200, 202)

    async def recreated() -> bool:
        status, now = await kube_request(system, "b", "GET", path)
        assert status == 200, now
        assert now["metadata"]["uid"] != before["metadata"]["uid"]
        assert now.get("status", {}).get("phase") == "Active", now
        return True

    # FABRIC_RESYNC_SECONDS is 2 in these tests.
    await eventually(recreated, timeout=30, message="namespace re-created in b")


def test_up_writes_pid_files_endpoints_and_a_private_admin_key(system: FabricUp) -> None:
    run = system.state_dir / "run"
    expected = {
        system.bus_child,
        "api",
        "postgres",
        *(f"daemon-{c}" for c in CLUSTERS),
        *(f"kube-{c}" for c in CLUSTERS),
    }
    assert {p.stem for p in run.glob("*.pid")} == expected
    for child in expected:
        pid = system.pid(child)
        assert pid is not None
        assert Path(f"/proc/{pid}").exists(), child
    endpoints = system.endpoints
    assert endpoints["api"] == f"http://127.0.0.1:{system.port}"
    assert endpoints["bus"] == system.bus
    if system.bus == "zmq":
        assert set(endpoints["broker"]) == {"control", "events", "acks"}
    else:
        assert [url.startswith("nats://127.0.0.1:") for url in endpoints["nats"]] == [True]
    assert endpoints["apis"] == [endpoints["api"]]
    for cluster in CLUSTERS:
        entry = endpoints["clusters"][cluster]
        assert entry["kubeconfig"] == str(system.kubeconfig(cluster))
        assert Path(entry["kubeconfig"]).exists()
        assert entry["api"].startswith("http://127.0.0.1:")
    assert stat.S_IMODE((system.state_dir / "admin.key").stat().st_mode) == 0o600


async def test_status_lists_every_child_running_and_ready(system: FabricUp) -> None:
    code, out, err = await fabric("status", "--json", "--state-dir", str(system.state_dir))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["ready"] is True
    assert all(child["alive"] for child in doc["children"].values()), doc
    assert {system.bus_child, "api", "daemon-a", "daemon-b"} <= set(doc["children"])


async def test_a_second_up_on_the_same_state_dir_is_refused(system: FabricUp) -> None:
    code, _, err = await fabric("up", "--state-dir", str(system.state_dir), "--clusters", "a,b")
    assert code == 1
    assert "another `fabric up` is running" in err


async def test_keys_rotate_restarts_the_api_with_the_new_key(system: FabricUp) -> None:
    old = system.admin_key
    code, out, err = await fabric("keys", "rotate", "--state-dir", str(system.state_dir))
    assert code == 0, err
    new = out.strip()
    assert new != old
    assert system.admin_key == new

    async def only_new_key_works() -> bool:
        async with aiohttp.ClientSession(trust_env=False) as session:
            with_new = await rpc(session, system.api_url, new, "cluster.list", {})
            with_old = await rpc(session, system.api_url, old, "cluster.list", {})
        assert with_new.kind == "ok", with_new
        assert with_old.code == -32001, with_old
        return True

    await eventually(only_new_key_works, timeout=30, message="api restarted with the new key")


async def fabric(*argv: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABRIC_")}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "fabric"),
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
