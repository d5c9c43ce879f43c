"""Persistence across SIGKILL, fault injection modes, auth over http and over TLS."""

from __future__ import annotations

import asyncio
import io
import socket
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio import client, config

from tests.kube_emulator.conftest import api_client, core
from tests.support.kube import (
    KubeEndpoint,
    restart_kube_emulator,
    run_kubectl,
    start_kube_emulator,
)
from tests.support.processes import ProcessGroup
from tests.support.wait import wait_until

pytestmark = pytest.mark.processes


async def test_objects_and_versions_survive_sigkill_and_restart_on_the_same_port(
    procs: ProcessGroup, kube: KubeEndpoint
) -> None:
    async with await api_client(kube) as api:
        v1 = core(api)
        created = await v1.create_namespace({"metadata": {"name": "keep", "labels": {"a": "1"}}})
        await v1.create_namespaced_resource_quota(
            "keep", {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}}})
    kube = await restart_kube_emulator(procs, kube)
    async with await api_client(kube) as api:
        v1 = core(api)
        again = await v1.read_namespace("keep")
        assert again.metadata.uid == created.metadata.uid
        assert again.metadata.labels["a"] == "1"
        assert (await v1.read_namespaced_resource_quota("q", "keep")).spec.hard == {"pods": "1"}
        after = await v1.create_namespace({"metadata": {"name": "after"}})
        assert int(after.metadata.resource_version) > int(again.metadata.resource_version)


async def test_state_survives_sigkill_across_journal_compactions(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    kube = await start_kube_emulator(procs, tmp_path / "kube",
                                     extra_args=("--compact-after", "3"))
    for i in range(8):
        code, _ = await kube.request("POST", "/api/v1/namespaces",
                                     json={"metadata": {"name": f"n-{i}"}})
        assert code == 201
    await kube.request("PATCH", "/api/v1/namespaces/n-7", json={"metadata": {"labels": {"a": "b"}}},
                       headers={"Content-Type": "application/merge-patch+json"})
    kube = await restart_kube_emulator(procs, kube)
    code, listed = await kube.request("GET", "/api/v1/namespaces")
    assert code == 200
    assert [n["metadata"]["name"] for n in listed["items"]] == [f"n-{i}" for i in range(8)]
    assert listed["items"][7]["metadata"]["labels"]["a"] == "b"
    assert listed["metadata"]["resourceVersion"] == "9"


async def test_a_namespace_terminating_at_sigkill_is_finalized_after_restart(
    procs: ProcessGroup, kube: KubeEndpoint
) -> None:
    await kube.request("POST", "/api/v1/namespaces", json={"metadata": {"name": "dying"}})
    await kube.set_stuck("dying")
    code, body = await kube.request("DELETE", "/api/v1/namespaces/dying")
    assert code == 200
    assert body["status"]["phase"] == "Terminating"
    kube = await restart_kube_emulator(procs, kube)

    async def gone() -> bool:
        code, _ = await kube.request("GET", "/api/v1/namespaces/dying")
        return code == 404

    finalized: bool = await wait_until(gone, timeout=10, message="finalized after restart")
    assert finalized


async def test_error500_fault_fails_matching_requests_without_applying(faulty: KubeEndpoint) -> None:
    kube = faulty
    await kube.inject_fault("error500", count=2, method="POST", path_prefix="/api/v1/namespaces")
    for _ in range(2):
        code, body = await kube.request("POST", "/api/v1/namespaces",
                                        json={"metadata": {"name": "f-1"}})
        assert code == 500
        assert body["reason"] == "InternalError"
    assert (await kube.request("GET", "/api/v1/namespaces/f-1"))[0] == 404
    code, _ = await kube.request("POST", "/api/v1/namespaces", json={"metadata": {"name": "f-1"}})
    assert code == 201
    log = await kube.recent_requests()
    posts = [r.get("fault") for r in log if (r["method"], r["path"]) == ("POST", "/api/v1/namespaces")]
    assert posts[-3:] == ["error500", "error500", None]


async def test_faults_given_on_the_command_line_are_active_from_the_start(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    rule = '{"mode": "status", "status": 503, "count": 1, "match": {"method": "POST"}}'
    kube = await start_kube_emulator(procs, tmp_path / "kube", extra_args=("--fault", rule))
    code, body = await kube.request("POST", "/api/v1/namespaces", json={"metadata": {"name": "a"}})
    assert (code, body["reason"]) == (503, "ServiceUnavailable")
    code, _ = await kube.request("POST", "/api/v1/namespaces", json={"metadata": {"name": "a"}})
    assert code == 201


async def test_status_fault_answers_the_given_code_with_retry_after(faulty: KubeEndpoint) -> None:
    kube = faulty
    await kube.inject_fault("status", status=429)
    async with aiohttp.ClientSession() as session, session.get(
        f"{kube.url}/api/v1/namespaces", headers={"Authorization": f"Bearer {kube.token}"}
    ) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "1"
        assert (await resp.json())["reason"] == "TooManyRequests"


async def test_drop_after_apply_applies_the_write_but_never_answers(faulty: KubeEndpoint) -> None:
    kube = faulty
    await kube.inject_fault("drop_after_apply", method="POST")
    with pytest.raises(aiohttp.ClientError):
        await kube.request("POST", "/api/v1/namespaces", json={"metadata": {"name": "dropped"}})
    code, body = await kube.request("GET", "/api/v1/namespaces/dropped")
    assert code == 200
    assert body["status"]["phase"] == "Active"


async def test_timeout_fault_holds_the_request_past_the_client_timeout_without_applying(
    faulty: KubeEndpoint,
) -> None:
    kube = faulty
    await kube.inject_fault("timeout", method="POST", seconds=5)
    async with await api_client(kube) as api:
        with pytest.raises(asyncio.TimeoutError):
            await core(api).create_namespace({"metadata": {"name": "slow"}},
                                             _request_timeout=0.5)
    assert (await kube.request("GET", "/api/v1/namespaces/slow"))[0] == 404


async def test_bad_fault_rules_are_refused_with_a_clear_error(faulty: KubeEndpoint) -> None:
    kube = faulty
    code, body = await kube.request("POST", "/_emulator/faults", json={"mode": "explode"})
    assert code == 400
    assert "mode must be one of" in body["message"]
    code, body = await kube.request("POST", "/_emulator/faults", data=b"{not json",
                                    headers={"Content-Type": "application/json"})
    assert code == 400


async def test_garbage_bodies_get_400_and_the_emulator_keeps_serving(faulty: KubeEndpoint) -> None:
    kube = faulty
    for payload, ctype in ((b"{nope", "application/json"), (b"[1,2]", "application/json"),
                           (b"k8s\x00\xff\xff", "application/vnd.kubernetes.protobuf"),
                           (b"x", "text/plain"),
                           (b'{"metadata": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                            "application/json")):
        code, body = await kube.request("POST", "/api/v1/namespaces", data=payload,
                                        headers={"Content-Type": ctype})
        assert code in (400, 415), (payload, body)
        assert body["kind"] == "Status"
    async with aiohttp.ClientSession() as session, session.post(
        f"{kube.url}/api/v1/namespaces", data=io.BytesIO(b" " * (5 * 1024 * 1024)),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {kube.token}"},
    ) as resp:
        assert resp.status == 413
        assert (await resp.json())["reason"] == "RequestEntityTooLarge"
    assert (await kube.request("GET", "/version"))[0] == 200


async def test_wrong_token_is_401_over_http(faulty: KubeEndpoint) -> None:
    kube = faulty
    code, body = await kube.request("GET", "/api/v1/namespaces", token="wrong")
    assert code == 401
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    async with await api_client(kube) as api:
        assert isinstance((await core(api).list_namespace()).items, list)


async def test_tls_emulator_requires_the_token_from_kubectl_and_the_client(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    kube = await start_kube_emulator(procs, tmp_path / "kube", tls=True)
    assert kube.url.startswith("https://")
    async with await api_client(kube) as api:
        created = await core(api).create_namespace({"metadata": {"name": "secure"}})
        assert created.metadata.name == "secure"
    rc, out, err = await run_kubectl(kube, "get", "ns", "secure", "-o", "name",
                                     cache_dir=tmp_path / "kc")
    assert (rc, out) == (0, "namespace/secure\n"), err
    bad = tmp_path / "bad.kubeconfig"
    bad.write_text(kube.kubeconfig.read_text().replace(kube.token, "wrong-token"))
    bad_kube = KubeEndpoint(kube.url, kube.port, bad, "wrong-token", kube.data_dir, kube.proc,
                            kube.args, tls=True)
    rc, _, err = await run_kubectl(bad_kube, "get", "ns", cache_dir=tmp_path / "kc2")
    assert rc == 1
    assert "You must be logged in to the server" in err
    async with aiohttp.ClientSession() as session, session.get(
        f"{kube.url}/api/v1/namespaces", ssl=kube.ssl_context() or True
    ) as resp:
        assert resp.status == 401


async def test_read_only_token_reads_but_gets_rbac_403_on_writes(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    kube = await start_kube_emulator(procs, tmp_path / "kube",
                                     extra_args=("--read-only-token", "viewer"))
    assert (await kube.request("POST", "/api/v1/namespaces",
                               json={"metadata": {"name": "ro"}}))[0] == 201
    assert (await kube.request("GET", "/api/v1/namespaces/ro", token="viewer"))[0] == 200
    code, body = await kube.request("POST", "/api/v1/namespaces", token="viewer",
                                    json={"metadata": {"name": "ro-2"}})
    assert code == 403
    assert body["message"] == (
        'namespaces is forbidden: User "system:serviceaccount:default:viewer" cannot create '
        'resource "namespaces" in API group "" at the cluster scope')
    code, body = await kube.request("DELETE", "/apis/rbac.authorization.k8s.io/v1/namespaces/ro/"
                                    "rolebindings/rb", token="viewer")
    assert code == 403
    assert body["message"].startswith(
        'rolebindings.rbac.authorization.k8s.io "rb" is forbidden: User')
    assert body["message"].endswith('in API group "rbac.authorization.k8s.io" in the namespace "ro"')
    assert body["details"] == {"name": "rb", "group": "rbac.authorization.k8s.io",
                               "kind": "rolebindings"}


async def test_in_cluster_configuration_works_against_the_tls_emulator(
    procs: ProcessGroup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube = await start_kube_emulator(procs, tmp_path / "kube", tls=True)
    token_file = tmp_path / "token"
    token_file.write_text(kube.token)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(kube.port))
    cfg = client.Configuration()
    config.load_incluster_config(  # type: ignore[no-untyped-call]
        client_configuration=cfg, token_filename=str(token_file),
        cert_filename=str(kube.ca_file))
    async with client.ApiClient(cfg) as api:
        assert (await core(api).list_namespace()).items == []


async def test_sigterm_stops_the_emulator_cleanly(procs: ProcessGroup, kube: KubeEndpoint) -> None:
    assert kube.proc is not None
    assert await procs.stop(kube.proc) == 0
    assert "process_stopped" in kube.proc.log_text()


async def test_bad_settings_exit_with_one_clear_line(procs: ProcessGroup, tmp_path: Path) -> None:
    proc = await procs.start("kube-emulator", "--data-dir", str(tmp_path), "--listen", "nope")
    assert await proc.process.wait() == 2
    assert "expected HOST:PORT" in proc.log_text()
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "objects.json").write_text("{half")
    proc = await procs.start("kube-emulator", "--data-dir", str(tmp_path / "store"))
    assert await proc.process.wait() == 2
    assert proc.log_text().strip().startswith("kube-emulator: cannot read")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await procs.start("kube-emulator", "--data-dir", str(tmp_path / "other"),
                                 "--listen", f"127.0.0.1:{port}")
        assert await proc.process.wait() == 2
    assert proc.log_text().strip() == (
        f"kube-emulator: cannot listen on 127.0.0.1:{port}: Address already in use")
